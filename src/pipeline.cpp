// ctarr — the stages composed, as numbered steps.
#include "ctarr/pipeline.hpp"

#include "ctarr/classes.hpp"
#include "ctarr/error.hpp"
#include "ctarr/log.hpp"
#include "ctarr/record.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include <unistd.h>

namespace ctarr {

namespace fs = std::filesystem;

std::string default_data_dir() {
  if (const char* env = std::getenv("CTARR_DATA_DIR")) return env;
#ifdef CTARR_INSTALL_DATA_DIR
  if (fs::is_directory(fs::path(CTARR_INSTALL_DATA_DIR) / "atlas")) return CTARR_INSTALL_DATA_DIR;
#endif
  return CTARR_SOURCE_DATA_DIR;
}

namespace {

std::string or_default(const std::string& value, const std::string& sub) {
  return value.empty() ? (fs::path(default_data_dir()) / sub).string() : value;
}

std::string fmt_mm(const Eigen::Vector3d& v) {
  std::ostringstream os;
  os.precision(1);
  os << std::fixed << '(' << v.x() << ", " << v.y() << ", " << v.z() << ')';
  return os.str();
}

// Maps a label map of any supported label set onto the 19 classes.
Image<std::uint8_t> to_ctarr_labels(const Image<std::uint16_t>& labels, const std::string& path, std::string* set_name) {
  std::uint16_t max_label = 0;
  for (std::uint16_t v : labels.voxels) max_label = std::max(max_label, v);
  const std::optional<LabelSet> set = guess_label_set(max_label);
  if (!set)
    throw Error(ErrorCode::UnreadableInput,
                "segmentation " + path + " has labels up to " + std::to_string(max_label) +
                    ": expected ctarr's 19 classes or a TotalSegmentator v1 (104) / v2 (117) multilabel file");
  *set_name = *set == LabelSet::Ctarr19 ? "ctarr19" : *set == LabelSet::TotalSegV1 ? "totalsegmentator-v1" : "totalsegmentator-v2";
  const std::vector<std::uint8_t> lut = label_lookup(*set);
  Image<std::uint8_t> out(labels.grid, 0);
  for (std::size_t n = 0; n < labels.voxels.size(); ++n) {
    const std::uint16_t v = labels.voxels[n];
    out.voxels[n] = v < lut.size() ? lut[v] : 0;
  }
  return out;
}

// A folder of per-structure masks (TotalSegmentator without --ml): <structure>.nii.gz each.
Image<std::uint8_t> labels_from_mask_folder(const std::string& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && has_image_extension(e.path().string())) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  Image<std::uint8_t> out;
  int used = 0;
  for (const fs::path& f : files) {
    const std::optional<int> label = ctarr_label_for_totalseg_name(image_stem(f.string()));
    if (!label) continue;
    const Image<std::uint16_t> mask = read_label_map(f.string());
    if (out.voxels.empty()) out = Image<std::uint8_t>(mask.grid, 0);
    if (mask.grid.size != out.grid.size || (mask.grid.origin - out.grid.origin).norm() > 1e-3)
      throw Error(ErrorCode::UnreadableInput, "mask " + f.string() + " is on a different grid than the other masks in " + dir);
    for (std::size_t n = 0; n < mask.voxels.size(); ++n)
      if (mask.voxels[n] != 0) out.voxels[n] = static_cast<std::uint8_t>(*label);
    ++used;
  }
  if (used == 0)
    throw Error(ErrorCode::UnreadableInput,
                "folder " + dir + " holds no TotalSegmentator masks of ctarr's 19 groups (e.g. liver.nii.gz, rib_left_1.nii.gz)");
  return out;
}

std::string orientation_warning(const InitialFit& init) {
  if (init.orientation == "identity") return {};
  return "the image content is oriented '" + init.orientation +
         "' relative to what its header states (the header may be wrong); the crop follows the anatomy";
}

}  // namespace

Pipeline::Pipeline(PipelineOptions options) : options_(std::move(options)) {
  options_.model_path = or_default(options_.model_path, "models/ctarr-unet.safetensors");
  options_.atlas_dir = or_default(options_.atlas_dir, "atlas");
  options_.regions_dir = or_default(options_.regions_dir, "regions");
  atlas_ = load_atlas(options_.atlas_dir);
  // The Dice refinement compares against a sharpened atlas: 0 below a mean of 0.25, 1 above 0.75, linear between.
  // Against the plain soft mean, a crisp scan mask swells over the mean's fringe (Dice gains where the mean exceeds
  // Dice / 2, about 0.35): measured 2-3 % too large a scale. A hard 0.5 threshold removes the bias but leaves the
  // descent too few gradients (landmark errors up to 5 mm on the synthetic scans).
  fit_target_ = atlas_.masks;
  for (float& v : fit_target_.data) v = std::clamp(1.5f * v - 0.25f, 0.0f, 1.0f);
  options_.refine.device = resolve_device(options_.device);
}

Pipeline::~Pipeline() = default;

std::string Pipeline::model_id() {
  if (!network_) network_ = std::make_unique<Network>(options_.model_path, options_.device);
  return network_->card().id;
}

Segmentation Pipeline::segment(const Scan& scan) {
  require_body(scan);  // an all-air scan: say so before loading and running the network
  model_id();  // loads the network once
  // 1. canonical orientation, 3 mm, windows
  PreprocessOptions pre;
  pre.spacing_mm = network_->card().spacing_mm;
  pre.windows_hu = network_->card().windows_hu;
  const PreprocessResult input = preprocess(scan.image, pre);
  // 2. sliding-window network
  SlidingWindowOptions sw;
  sw.patch_size = network_->card().patch_size;
  const MultiChannelImage<Scanner> prob = network_->predict(input.network_input, sw);
  // 3. drop the background channel
  Segmentation s;
  s.reorientation = input.reorientation;
  s.source = "network:" + network_->card().id;
  s.soft_masks = MultiChannelImage<Scanner>(prob.grid, kNumClasses);
  const std::size_t n = static_cast<std::size_t>(prob.grid.voxels());
  std::copy(prob.data.begin() + static_cast<std::ptrdiff_t>(n), prob.data.end(), s.soft_masks.data.begin());
  return s;
}

Segmentation Pipeline::segmentation_from_labels(const std::string& path) const {
  std::string set_name = "ctarr19";
  Image<std::uint8_t> labels;
  if (fs::is_directory(path)) {
    labels = labels_from_mask_folder(path);
    set_name = "totalsegmentator-masks";
  } else {
    labels = to_ctarr_labels(read_label_map(path), path, &set_name);
  }
  Segmentation s;
  s.reorientation = canonical_reorientation(labels.grid.direction);
  const Grid<Scanner> grid = isotropic_grid(reorient_grid(labels.grid, s.reorientation), atlas_.masks.grid.spacing.x());
  s.soft_masks = label_fractions(labels, grid, kNumClasses);
  s.source = "labels:" + path + " (" + set_name + ")";
  return s;
}

Fit Pipeline::fit(const Segmentation& segmentation) const {
  Fit f;
  // 1. landmarks and the orientation search
  const Landmarks<Scanner> scan_lm = extract_landmarks(segmentation.soft_masks);
  try {
    f.initial = initial_fit(scan_lm, atlas_.landmarks, options_.landmarks);
  } catch (const Error& e) {  // name where the (missing) anatomy came from
    if (e.code() != ErrorCode::FitFailed) throw;
    throw Error(ErrorCode::FitFailed, std::string(e.what()) + " (segmentation: " + segmentation.source + ")");
  }
  // 2. Dice refinement of scale and translation
  f.refined = refine_transform(segmentation.soft_masks, fit_target_, f.initial, options_.refine);
  f.scanner_to_atlas = f.refined.scanner_to_atlas();
  // 3. warnings a user can act on
  if (const std::string w = orientation_warning(f.initial); !w.empty()) f.warnings.push_back(w);
  if (!f.initial.searched)
    f.warnings.push_back("only " + std::to_string(f.initial.classes_seen.size()) +
                         " anatomies seen: orientation not searched, header orientation trusted (translation only)");
  // A fit this poor means the segmentation found no usable anatomy (or not a CT): refuse rather than crop blindly.
  if (f.refined.dice < kMinFitDice)
    throw Error(ErrorCode::FitFailed, "the atlas fit failed (Dice " + std::to_string(f.refined.dice) + " < " +
                                          std::to_string(kMinFitDice) + " over " +
                                          std::to_string(f.initial.classes_seen.size()) +
                                          " classes): no usable anatomy found (" + segmentation.source + ")");
  if (f.refined.dice < 0.5)
    f.warnings.push_back("low fit Dice " + std::to_string(f.refined.dice) + ": check the crop");
  log_info("fit: orientation " + f.initial.orientation + ", scale " + fmt_mm(f.refined.scale) + ", translation " +
           fmt_mm(f.refined.translation_mm) + " mm, Dice " + std::to_string(f.refined.initial_dice) + " -> " +
           std::to_string(f.refined.dice) + ", " + std::to_string(f.initial.classes_seen.size()) + " classes seen");
  return f;
}

Image<std::uint8_t> hard_labels(const MultiChannelImage<Scanner>& prob) {
  Image<std::uint8_t> out(prob.grid, 0);
  const std::size_t n = static_cast<std::size_t>(prob.grid.voxels());
  for (std::size_t v = 0; v < n; ++v) {
    float best = prob.data[v];
    for (int c = 1; c < prob.channels; ++c) {
      const float p = prob.data[static_cast<std::size_t>(c) * n + v];
      if (p > best) {
        best = p;
        out.voxels[v] = static_cast<std::uint8_t>(c);
      }
    }
  }
  return out;
}

namespace {

Region resolve_region(const std::string& name_or_path, const std::string& regions_dir) {
  if (name_or_path.size() > 5 && name_or_path.substr(name_or_path.size() - 5) == ".json" && fs::is_regular_file(name_or_path))
    return load_region(name_or_path);
  return find_region(regions_dir, name_or_path);
}

void check_output_dir(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) fs::create_directories(dir, ec);
  if (!fs::is_directory(dir, ec))
    throw Error(ErrorCode::OutputNotWritable, "output folder " + dir + " does not exist and cannot be created");
  const fs::path probe = fs::path(dir) / (".ctarr-write-test-" + std::to_string(::getpid()));
  try {
    write_text_file(probe.string(), "");
  } catch (const Error&) {
    throw Error(ErrorCode::OutputNotWritable, "output folder " + dir + " is not writable");
  }
  fs::remove(probe, ec);
}

}  // namespace

std::vector<CropOutcome> crop_regions(const Scan& scan, const Fit& fit, const std::vector<Region>& regions,
                                      const CropRequest& request, const std::string& model_id,
                                      const std::string& atlas_id, const std::string& segmentation_source) {
  std::vector<CropOutcome> outcomes;
  const Affine<Atlas, Scanner> atlas_to_scanner = fit.scanner_to_atlas.inverse();
  const std::string stem = image_stem(scan.info.path);
  float scan_min = 0.0f;
  if (!scan.image.voxels.empty()) scan_min = *std::min_element(scan.image.voxels.begin(), scan.image.voxels.end());

  for (const Region& region : regions) {
    CropOutcome outcome;
    outcome.input = scan.info.path;
    outcome.region = region.name;
    CropOptions options = request.crop;
    if (!options.margin_mm) options.margin_mm = region.margin_mm;
    const float pad_value = options.pad_value.value_or(scan_min);

    CropRecord record;
    record.input = scan.info.path;
    record.scan_info = scan.info;
    record.input_grid = scan.image.grid;
    record.region = region.name;
    record.region_provenance_json = region.provenance_json;
    record.options = options;
    record.options.pad_value = pad_value;
    record.segmentation_source = segmentation_source;
    record.model_id = model_id;
    record.atlas_id = atlas_id;
    record.warnings = scan.info.warnings;
    record.warnings.insert(record.warnings.end(), fit.warnings.begin(), fit.warnings.end());

    int written = 0;
    const bool several = region.boxes.size() > 1;
    for (std::size_t b = 0; b < region.boxes.size(); ++b) {
      CropRecordBox rb;
      rb.box = map_box(region.boxes[b], atlas_to_scanner, scan.image.grid, options);
      if (rb.box.misses_scan) {
        record.warnings.push_back("box " + std::to_string(b + 1) + " of region " + region.name + " lies outside the scan");
      } else {
        if (rb.box.was_clipped)
          record.warnings.push_back("box " + std::to_string(b + 1) + " of region " + region.name + " was clipped at the scan border (" +
                                    std::to_string(static_cast<int>(100.0 * rb.box.fraction_inside + 0.5)) + "% inside)");
        if (rb.box.fraction_inside < 0.5)
          record.warnings.push_back("box " + std::to_string(b + 1) + " is mostly outside the scan: the region may be cut off");
        const Image<float> crop = crop_image(scan.image, rb.box, options, pad_value);
        const std::string name = stem + "_" + region.name + (several ? "_" + std::to_string(b + 1) : "") +
                                 request.extension;
        const std::string path = (fs::path(request.out_dir) / name).string();
        write_image(crop, path, options.target_spacing_mm ? PixelType::Float32 : scan.info.stored_type);
        rb.file = name;
        rb.output_grid = crop.grid;
        outcome.files.push_back(path);
        ++written;
      }
      record.boxes.push_back(rb);
    }
    outcome.missed = written == 0;
    if (outcome.missed) record.warnings.push_back("region " + region.name + " misses the scan: no crop written");
    outcome.record_path = (fs::path(request.out_dir) / (stem + "_" + region.name + ".json")).string();
    write_text_file(outcome.record_path, crop_record_json(record));
    outcome.warnings = record.warnings;
    outcomes.push_back(outcome);
  }
  return outcomes;
}

std::vector<CropOutcome> run_crop(const CropRequest& request) {
  if (request.inputs.empty()) throw Error(ErrorCode::Usage, "no input given");
  if (request.seg && request.inputs.size() != 1)
    throw Error(ErrorCode::Usage, "--seg goes with exactly one input (" + std::to_string(request.inputs.size()) + " given)");
  // 1. options, regions, output folder: fail before any heavy work
  Pipeline pipeline(request.pipeline);
  std::vector<Region> regions;
  for (const std::string& r : request.regions) regions.push_back(resolve_region(r, pipeline.options().regions_dir));
  if (regions.empty()) throw Error(ErrorCode::Usage, "no region given (--region NAME; `ctarr regions` lists them)");
  check_output_dir(request.out_dir);

  std::vector<CropOutcome> all;
  for (std::size_t n = 0; n < request.inputs.size(); ++n) {
    const std::string& input = request.inputs[n];
    log_info("[" + std::to_string(n + 1) + "/" + std::to_string(request.inputs.size()) + "] " + input);
    // 2. read
    const Scan scan = read_scan(input);
    for (const std::string& w : scan.info.warnings) log_warn(input + ": " + w);
    // 3. segment (network or given labels) and fit
    const Segmentation seg = request.seg ? pipeline.segmentation_from_labels(*request.seg) : pipeline.segment(scan);
    const Fit fit = pipeline.fit(seg);
    for (const std::string& w : fit.warnings) log_warn(input + ": " + w);
    // 4. crop and record
    const std::string model = request.seg ? std::string("none (--seg)") : pipeline.model_id();
    auto outcomes = crop_regions(scan, fit, regions, request, model, pipeline.atlas().id, seg.source);
    for (const CropOutcome& o : outcomes) {
      if (o.missed) log_warn(input + ": region " + o.region + " misses the scan; no crop written (record: " + o.record_path + ")");
      for (const std::string& f : o.files) log_info("wrote " + f);
    }
    all.insert(all.end(), outcomes.begin(), outcomes.end());
  }
  return all;
}

void run_segment(const SegmentRequest& request) {
  Pipeline pipeline(request.pipeline);
  const Scan scan = read_scan(request.input);
  const Segmentation seg = pipeline.segment(scan);
  MultiChannelImage<Scanner> with_bg(seg.soft_masks.grid, kNumClasses + 1);
  const std::size_t n = static_cast<std::size_t>(seg.soft_masks.grid.voxels());
  for (std::size_t v = 0; v < n; ++v) {
    float sum = 0.0f;
    for (int c = 0; c < kNumClasses; ++c) sum += seg.soft_masks.data[static_cast<std::size_t>(c) * n + v];
    with_bg.data[v] = std::max(0.0f, 1.0f - sum);
  }
  std::copy(seg.soft_masks.data.begin(), seg.soft_masks.data.end(), with_bg.data.begin() + static_cast<std::ptrdiff_t>(n));
  write_image(hard_labels(with_bg), request.output);
}

}  // namespace ctarr
