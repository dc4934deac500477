// ctarr — the Pipeline class: the data folder's defaults, segment a scan (network or label map), fit it to the atlas,
// with the network's turned passes for lying headers (turns.hpp).
#include "ctarr/pipeline.hpp"

#include "ctarr/classes.hpp"
#include "ctarr/error.hpp"
#include "ctarr/log.hpp"
#include "ctarr/mirror.hpp"
#include "ctarr/turns.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <sstream>

namespace ctarr {

namespace fs = std::filesystem;

std::string default_data_dir() {
  if (const char* env = std::getenv("CTARR_DATA_DIR")) return env;
  std::error_code ec;
#ifdef CTARR_DATA_DIR_FROM_BINDIR
  // an installed ctarr: <prefix>/share/ctarr beside <prefix>/bin/ctarr, wherever the prefix was moved
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec && fs::is_directory(exe.parent_path() / CTARR_DATA_DIR_FROM_BINDIR / "atlas", ec))
    return (exe.parent_path() / CTARR_DATA_DIR_FROM_BINDIR).lexically_normal().string();
#endif
#ifdef CTARR_INSTALL_DATA_DIR
  if (fs::is_directory(fs::path(CTARR_INSTALL_DATA_DIR) / "atlas", ec)) return CTARR_INSTALL_DATA_DIR;
#endif
  return CTARR_SOURCE_DATA_DIR;
}

namespace {

std::string or_default(const std::string& value, const std::string& sub) {
  return value.empty() ? (fs::path(default_data_dir()) / sub).string() : value;
}

}  // namespace

PipelineOptions with_default_paths(PipelineOptions o) {
  o.model_path = or_default(o.model_path, "models/ctarr-unet.safetensors");
  o.atlas_dir = or_default(o.atlas_dir, "atlas");
  o.regions_dir = or_default(o.regions_dir, "regions");
  return o;
}

namespace {

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

Pipeline::Pipeline(PipelineOptions options) : options_(with_default_paths(std::move(options))) {
  atlas_ = load_atlas(options_.atlas_dir);
  // The Dice refinement compares against a sharpened atlas (kFitSharpness), made in refine_transform from the few
  // atlas channels it needs, so no sharpened copy of the whole atlas is held here.
  if (options_.refine.target_sharpness == RefineOptions{}.target_sharpness)
    options_.refine.target_sharpness = {kFitSharpness.begin(), kFitSharpness.end()};
  options_.refine.device = resolve_device(options_.device);
}

Pipeline::~Pipeline() = default;

std::string Pipeline::model_id() {
  if (!network_) network_ = std::make_unique<Network>(options_.model_path, options_.device);
  return network_->card().id;
}

PreprocessResult Pipeline::network_input(const Scan& scan) {
  require_body(scan);  // an all-air scan: say so before loading and running the network
  model_id();          // loads the network once
  PreprocessOptions pre;
  pre.spacing_mm = network_->card().spacing_mm;
  pre.windows_hu = network_->card().windows_hu;
  return preprocess(scan.image, pre);
}

Segmentation Pipeline::network_pass(const PreprocessResult& input, const OrientationCandidate& turn, bool mirror) {
  // 1. the canonical grid turned as the candidate says (identity: as stored; turns.hpp)
  const bool turned = turn.name != "identity";
  const Reorientation r = turned ? turn_for_orientation(turn.rotation) : Reorientation{};
  // 2. the network (the fast path unless the reference is asked for; docs/PERFORMANCE.md)
  const PredictOptions predict = options_.reference_inference
                                     ? reference_predict_options(network_->card())
                                     : fast_predict_options(network_->card(), network_->device());
  // the network over an image as shown to it, and, with `mirror`, again over its left-right mirror image
  auto run = [&](const MultiChannelImage<Scanner>& shown) {
    MultiChannelImage<Scanner> p = network_->predict(shown, predict);
    if (mirror) {
      const Reorientation m = left_right_mirror();
      combine_mirrored_pass(p, unturn_channels(network_->predict(turn_channels(shown, m), predict), shown.grid, m));
    }
    return p;
  };
  MultiChannelImage<Scanner> prob = turned ? unturn_channels(run(turn_channels(input.network_input, r)),
                                                             input.network_input.grid, r)
                                           : run(input.network_input);
  // 3. drop the background channel
  Segmentation s;
  s.reorientation = input.reorientation;
  s.source = "network:" + network_->card().id + (options_.reference_inference ? " (reference)" : " (fast)") +
             (turned ? ", scan turned " + turn.name : "") + (mirror ? ", with its mirror image" : "");
  s.from_network = true;
  s.turn = turn.name;
  s.turn_rotation = turn.rotation;
  // (in place: a second 19-channel buffer would be the largest allocation of a big scan's network path)
  if (prob.channels != kNumClasses + 1)
    throw Error(ErrorCode::Internal, "network pass: " + std::to_string(prob.channels) + " output channels, expected " +
                                         std::to_string(kNumClasses + 1));
  const std::size_t n = static_cast<std::size_t>(prob.grid.voxels());
  prob.data.erase(prob.data.begin(), prob.data.begin() + static_cast<std::ptrdiff_t>(n));
  s.soft_masks.grid = prob.grid;
  s.soft_masks.channels = kNumClasses;
  s.soft_masks.data = std::move(prob.data);
  return s;
}

Segmentation Pipeline::segment(const Scan& scan, bool mirror_pass) {
  return network_pass(network_input(scan), OrientationCandidate{"identity", Eigen::Matrix3d::Identity(), 0.0},
                      mirror_pass);
}

NetworkFit Pipeline::segment_and_fit(const Scan& scan, const std::function<void()>& between_passes,
                                     bool keep_refused) {
  const PreprocessResult input = network_input(scan);
  const std::vector<OrientationCandidate> turns = orientation_candidates(options_.landmarks.search_xy_flips);
  std::optional<NetworkFit> best;
  double best_score = 0.0;
  std::optional<NetworkFit> stored_refused;  // the as-stored pass when its fit is refused: thrown (or returned)
  std::vector<NetworkPass> passes;
  for (const OrientationCandidate& turn : turns) {
    const bool as_stored = turn.name == "identity";  // orientation_candidates lists it first
    if (!as_stored) {
      const double dice = best ? best->fit.refined.dice : 0.0;
      // A translation-only fit (too few classes to search the orientation: a head, a heart-only CTA) trusts the
      // header whatever its Dice: only the turned passes can check it.
      const bool searched = best && best->fit.initial.searched;
      if (options_.turned_passes_below_dice <= 0.0 || (dice >= options_.turned_passes_below_dice && searched)) break;
      if (passes.size() == 1)
        log_info((searched ? "fit Dice " + std::to_string(dice) + " < " + std::to_string(options_.turned_passes_below_dice)
                           : std::string("orientation not searched (too few classes)")) +
                 ": running the network on the scan turned by each of the other " + std::to_string(turns.size() - 1) +
                 " orientation candidates (a lying header?)");
      if (between_passes) between_passes();
    }
    NetworkFit candidate;
    candidate.segmentation = network_pass(input, turn, false);
    candidate.fit = fit_or_refusal(candidate.segmentation);
    NetworkPass pass;
    pass.turn = turn.name;
    pass.error = candidate.fit.refusal;
    if (pass.error.empty()) {
      pass.dice = candidate.fit.refined.dice;
      pass.classes = static_cast<int>(candidate.fit.initial.classes_seen.size());
      pass.orientation = candidate.fit.initial.orientation;
      pass.score = pass_score(pass.dice, pass.classes);
    }
    passes.push_back(pass);
    if (!pass.error.empty()) {
      if (as_stored) stored_refused = std::move(candidate);
      continue;
    }
    // A turned pass replaces the best one only when clearly better: the header gets the benefit of the doubt.
    if (!best || pass_replaces(pass.score, pass.classes, best_score, best->segmentation.turn == "identity",
                               kTurnedPassMargin)) {
      best = std::move(candidate);
      best_score = pass.score;
    }
  }
  if (!best) {
    if (!keep_refused) throw Error(ErrorCode::FitFailed, stored_refused->fit.refusal);
    best = std::move(stored_refused);
  }
  for (NetworkPass& p : passes) p.kept = p.turn == best->segmentation.turn && best->fit.refusal.empty();
  best->fit.network_passes = passes;
  if (passes.size() > 1 && best->fit.refusal.empty())
    log_info("turned passes: kept " + best->segmentation.turn + " (fit Dice " + std::to_string(best->fit.refined.dice) +
             ") of " + std::to_string(passes.size()) + " passes");
  return std::move(*best);
}

Segmentation Pipeline::segmentation_from_labels(const std::string& path) const {
  if (fs::is_directory(path))
    return segmentation_from_ctarr_labels(labels_from_mask_folder(path), path, "totalsegmentator-masks");
  return segmentation_from_label_map(read_label_map(path), path);
}

Segmentation Pipeline::segmentation_from_label_map(const Image<std::uint16_t>& labels, const std::string& name) const {
  std::string set_name;
  const Image<std::uint8_t> ctarr_labels = to_ctarr_labels(labels, name, &set_name);
  return segmentation_from_ctarr_labels(ctarr_labels, name, set_name);
}

Segmentation Pipeline::segmentation_from_ctarr_labels(const Image<std::uint8_t>& labels, const std::string& name,
                                                      const std::string& set_name) const {
  Segmentation s;
  s.reorientation = canonical_reorientation(labels.grid.direction);
  const Grid<Scanner> grid = isotropic_grid(reorient_grid(labels.grid, s.reorientation), atlas_.masks.grid.spacing.x());
  s.soft_masks = label_fractions(labels, grid, kNumClasses);
  s.source = "labels:" + name + " (" + set_name + ")";
  return s;
}

Fit Pipeline::fit(const Segmentation& segmentation) const {
  Fit f = fit_or_refusal(segmentation);
  if (!f.refusal.empty()) throw Error(ErrorCode::FitFailed, f.refusal);
  return f;
}

Fit Pipeline::fit_or_refusal(const Segmentation& segmentation) const {
  Fit f;
  // 1. landmarks and the orientation search; a turned pass that sees too few classes for the search keeps the
  // orientation it was shown the scan as
  const Landmarks<Scanner> scan_lm = extract_landmarks(
      segmentation.soft_masks, segmentation.from_network ? options_.landmarks.min_network_probability : 0.0f);
  LandmarkOptions landmarks = options_.landmarks;
  landmarks.translation_only_orientation = {segmentation.turn, segmentation.turn_rotation, 0.0};
  try {
    f.initial = initial_fit(scan_lm, atlas_.landmarks, landmarks);
    // 2. Dice refinement of scale and translation
    f.refined = refine_transform(segmentation.soft_masks, atlas_.masks, f.initial, options_.refine);
  } catch (const Error& e) {  // name where the (missing) anatomy came from
    if (e.code() != ErrorCode::FitFailed) throw;
    f.refusal = std::string(e.what()) + " (segmentation: " + segmentation.source + ")";
    f.has_transform = false;
    return f;
  }
  f.scanner_to_atlas = f.refined.transform();
  // 3. warnings a user can act on
  if (const std::string w = orientation_warning(f.initial); !w.empty()) {
    f.warnings.push_back(w);
    f.warning_codes.push_back(warning_code::kHeaderOrientation);
  }
  if (!f.initial.classes_left_out.empty()) {
    std::string names;
    for (int c : f.initial.classes_left_out) names += (names.empty() ? "" : ", ") + class_names()[static_cast<std::size_t>(c)];
    f.warnings.push_back("left out of the fit: " + names + " (where the segmentation puts it disagrees by more than " +
                         std::to_string(std::lround(options_.landmarks.agree_mm)) +
                         " mm with the other anatomies; mis-segmented?); check the crop");
    f.warning_codes.push_back(warning_code::kClassLeftOut);
  }
  if (!f.initial.searched) {
    f.warnings.push_back("only " + std::to_string(f.initial.classes_seen.size()) +
                         " anatomies seen: orientation not searched, header orientation trusted (translation only); "
                         "check the crop, or give a segmentation with more anatomies (--seg)");
    f.warning_codes.push_back(warning_code::kFewAnatomies);
  }
  // A fit this poor means the segmentation found no usable anatomy (or not a CT): refuse rather than crop blindly.
  if (f.refined.dice < options_.min_fit_dice) {
    f.refusal = "the atlas fit failed (Dice " + std::to_string(f.refined.dice) + " < " +
                std::to_string(options_.min_fit_dice) + " over " + std::to_string(f.initial.classes_seen.size()) +
                " classes): no usable anatomy found (" + segmentation.source + ")";
    return f;
  }
  if (f.refined.dice < kLowFitDice) {
    f.warnings.push_back("low fit Dice " + std::to_string(f.refined.dice) + " (< " + std::to_string(kLowFitDice) +
                         "): check the crop; a better segmentation (--seg) helps");
    f.warning_codes.push_back(warning_code::kLowFitDice);
  }
  log_info("fit: orientation " + f.initial.orientation + ", scale " + fmt_mm(f.refined.scale) + ", translation " +
           fmt_mm(f.refined.translation_mm) + " mm, Dice " + std::to_string(f.refined.initial_dice) + " -> " +
           std::to_string(f.refined.dice) + ", " + std::to_string(f.initial.classes_seen.size()) + " classes seen");
  return f;
}

}  // namespace ctarr
