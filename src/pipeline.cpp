// ctarr — the stages composed, as numbered steps.
#include "ctarr/pipeline.hpp"

#include "ctarr/classes.hpp"
#include "ctarr/error.hpp"
#include "ctarr/log.hpp"
#include "ctarr/preview.hpp"
#include "ctarr/qa_page.hpp"
#include "ctarr/record.hpp"

#include "ctarr/version.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <set>
#include <sstream>

#include <unistd.h>

namespace ctarr {

namespace fs = std::filesystem;

namespace {

// Reads the next case's scan on another thread while the program does something else: the first while the atlas
// loads, each further one while the case before is fitted, cropped and written (after its network stage, so that
// two scans are never held beside the network's working memory). Reading is gunzip and conversion on one core. A
// read error surfaces when the scan is taken, in that case's own error handling.
class ReadAhead {
 public:
  explicit ReadAhead(std::vector<std::string> paths) : paths_(std::move(paths)) {}  // the scans the run takes, in order
  ReadAhead(const ReadAhead&) = delete;
  ReadAhead& operator=(const ReadAhead&) = delete;
  ~ReadAhead() { drop(); }

  // Starts reading the scan after the last one taken (the first one before any), unless one is being read.
  void start_next() {
    if (next_.valid() || next_index_ >= paths_.size()) return;
    const std::string path = paths_[next_index_];
    path_ = path;
    next_ = std::async(std::launch::async, [path] { return read_scan(path); });
  }
  // The scan at `path`: the one read ahead when it is that file, else read now.
  Scan take(const std::string& path) {
    const auto it = std::find(paths_.begin() + static_cast<std::ptrdiff_t>(std::min(next_index_, paths_.size())),
                              paths_.end(), path);
    if (it != paths_.end()) next_index_ = static_cast<std::size_t>(it - paths_.begin()) + 1;
    if (next_.valid() && path_ == path) {
      std::future<Scan> f = std::move(next_);
      return f.get();
    }
    drop();
    return read_scan(path);
  }

 private:
  void drop() {
    if (!next_.valid()) return;
    try {
      next_.get();  // waits for the thread; a scan nobody takes, or its error, is dropped
    } catch (...) {
    }
  }
  std::vector<std::string> paths_;
  std::size_t next_index_ = 0;
  std::string path_;
  std::future<Scan> next_;
};


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

void add_warning(std::vector<std::string>& warnings, std::vector<std::string>& codes, const char* code,
                 const std::string& message) {
  warnings.push_back(message);
  if (std::find(codes.begin(), codes.end(), code) == codes.end()) codes.push_back(code);
}

std::string relative_to(const std::string& file, const std::string& folder) {
  return fs::path(file).lexically_relative(fs::path(folder)).generic_string();
}

bool same_grid(const Grid<Scanner>& a, const Grid<Scanner>& b) {
  return a.size == b.size && (a.origin - b.origin).norm() < 1e-3 && (a.spacing - b.spacing).cwiseAbs().maxCoeff() < 1e-4 &&
         (a.direction - b.direction).cwiseAbs().maxCoeff() < 1e-4;
}

// Where a case's outputs go (see CropRun).
struct CaseLayout {
  const CropRequest& request;
  bool dataset;
  bool several_regions;

  std::string record_path(const DatasetCase& c, const Region& r) const {
    if (!dataset) return (fs::path(request.out_dir) / (image_stem(c.images.front()) + "_" + r.name + ".json")).string();
    return (fs::path(request.out_dir) / "records" / (c.id + "_" + r.name + ".json")).string();
  }
  fs::path root(const Region& r) const {
    return several_regions ? fs::path(request.out_dir) / r.name : fs::path(request.out_dir);
  }
  std::string out_id(const DatasetCase& c, const Region& r, std::size_t box) const {
    return r.boxes.size() > 1 ? c.id + "_" + std::to_string(box + 1) : c.id;
  }
  std::string image_path(const DatasetCase& c, const Region& r, std::size_t box, std::size_t channel) const {
    if (!dataset)
      return (fs::path(request.out_dir) / (image_stem(c.images.front()) + "_" + r.name +
                                           (r.boxes.size() > 1 ? "_" + std::to_string(box + 1) : "") + request.extension))
          .string();
    return (root(r) / c.subset / (out_id(c, r, box) + c.channel_suffixes[channel] + request.extension)).string();
  }
  std::string label_path(const DatasetCase& c, const Region& r, std::size_t box) const {
    return (root(r) / label_subset(c.subset) / (out_id(c, r, box) + request.extension)).string();
  }
};

// What an earlier run left for a case and region.
struct EarlierRun {
  std::optional<CropSummary> done;  // record with a summary, every file it names exists, same options
  std::string other_options;        // the record was made from another input or with other options: what differs
};

// How the options of an earlier record differ from `now` ("" when they agree).
std::string options_differ(const CropOptions& before, const CropOptions& now) {
  std::string d;
  auto add = [&](const std::string& what) { d += (d.empty() ? "" : ", ") + what; };
  if (std::abs(before.margin_mm.value_or(0.0) - now.margin_mm.value_or(0.0)) > 1e-6)
    add("margin " + std::to_string(before.margin_mm.value_or(0.0)) + " mm, now " + std::to_string(now.margin_mm.value_or(0.0)));
  if (before.pad != now.pad) add(std::string("pad ") + (before.pad ? "on" : "off") + ", now " + (now.pad ? "on" : "off"));
  if (now.pad && now.pad_value && before.pad_value && *before.pad_value != *now.pad_value) add("pad value");
  if (before.target_spacing_mm.has_value() != now.target_spacing_mm.has_value() ||
      (now.target_spacing_mm && (*now.target_spacing_mm - *before.target_spacing_mm).cwiseAbs().maxCoeff() > 1e-6))
    add("target spacing");
  if (before.z_only != now.z_only) add("z-only");
  return d;
}

EarlierRun earlier_run(const std::string& record_path, const std::string& input, const CropOptions& options) {
  EarlierRun e;
  std::error_code ec;
  if (!fs::is_regular_file(record_path, ec)) return e;
  try {
    const std::string text = read_text_file(record_path);
    const ParsedCropRecord rec = parse_crop_record(record_path, text);
    e.other_options = rec.input != input ? "input " + rec.input + ", now " + input : options_differ(rec.options, options);
    if (!e.other_options.empty()) return e;
    const fs::path folder = fs::path(record_path).parent_path();
    for (std::size_t b = 0; b < rec.boxes.size(); ++b) {
      if (!rec.boxes[b].second.empty() && !fs::is_regular_file(folder / rec.boxes[b].second, ec)) return e;
      if (!rec.label_files[b].empty() && !fs::is_regular_file(folder / rec.label_files[b], ec)) return e;
    }
    CropSummary s = parse_crop_summary(record_path, text);
    s.status = "skipped";
    e.done = s;
  } catch (const Error&) {
    // unreadable record: redo the case (existing files are still never overwritten without --overwrite)
  }
  return e;
}

// Files written for the case being processed; removed again when the case fails or is stopped.
class CaseFiles {
 public:
  explicit CaseFiles(bool overwrite) : overwrite_(overwrite) {}
  // Call before writing `path`.
  void claim(const std::string& path) {
    std::error_code ec;
    if (!overwrite_ && fs::exists(path, ec) && std::find(written_.begin(), written_.end(), path) == written_.end())
      throw Error(ErrorCode::OutputNotWritable, path + " exists (from another run or another case?); it is kept: "
                                                       "rerun with --overwrite to replace it");
    fs::create_directories(fs::path(path).parent_path(), ec);
    written_.push_back(path);
  }
  void remove_all() {
    std::error_code ec;
    for (const std::string& f : written_) fs::remove(f, ec);
    written_.clear();
  }
  void keep() { written_.clear(); }
  // The picture of a refused fit: written when the case fails, and kept (remove_all leaves it).
  void keep_on_failure(const std::string& path) { failure_picture_ = path; }
  const std::string& failure_picture() const { return failure_picture_; }
  // A file the case rewrites on every run (the preview): removed with the case when it fails, never refused when it
  // exists (a rerun that resumes a case writes it again).
  void adopt(const std::string& path) {
    if (std::find(written_.begin(), written_.end(), path) == written_.end()) written_.push_back(path);
  }

 private:
  bool overwrite_;
  std::vector<std::string> written_;
  std::string failure_picture_;
};

void check_stop() {
  if (const int sig = stop_signal())
    throw Error(sig == SIGTERM ? ErrorCode::Terminated : ErrorCode::Interrupted,
                std::string("stopped by ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT"));
}

// Every region of one case: read, segment (or take its segmentation), fit, crop, write crops and records.
std::vector<CropSummary> crop_case(Pipeline& pipeline, const DatasetCase& c, const std::vector<Region>& regions,
                                   const std::vector<std::size_t>& pending, const CropRequest& request,
                                   const CaseLayout& layout, CaseFiles& files, ReadAhead& reads,
                                   const std::function<void(const std::string&)>& step) {
  const std::string& input = c.images.front();
  // 1. read
  step("reading");
  const Scan scan = reads.take(input);
  for (const std::string& w : scan.info.warnings) log_warn(input + ": " + w);
  check_stop();
  // 2. segment (network or given labels) and fit
  NetworkFit fitted;
  if (c.seg) {
    step("reading its segmentation");
    fitted.segmentation = pipeline.segmentation_from_labels(*c.seg);
    reads.start_next();
    check_stop();
    step("fitting");
    fitted.fit = pipeline.fit_or_refusal(fitted.segmentation);
  } else {
    step("segmenting and fitting");
    fitted = pipeline.segment_and_fit(scan, check_stop, /*keep_refused=*/true);
    reads.start_next();
  }
  const Segmentation& seg = fitted.segmentation;
  const Fit& fit = fitted.fit;
  for (const std::string& w : fit.warnings) log_warn(input + ": " + w);
  if (!fit.refusal.empty()) {
    if (!request.preview) throw Error(ErrorCode::FitFailed, fit.refusal);
    // the case where the picture matters most: written, kept, and named in the summary
    const CropPicture picture = render_crop_preview(scan, seg, fit, regions, request, pipeline.atlas());
    std::error_code ec;
    fs::create_directories(fs::path(picture.path).parent_path(), ec);
    try {
      write_png(picture.preview.image, picture.path);
    } catch (const Error& e) {  // the case fails for its fit, not for its picture
      log_warn(input + ": " + e.what());
      throw Error(ErrorCode::FitFailed, fit.refusal);
    }
    files.keep_on_failure(picture.path);
    throw Error(ErrorCode::FitFailed, fit.refusal + "; the picture of the refused fit: " + picture.path);
  }
  check_stop();
  std::optional<CropPicture> picture;
  if (request.preview) picture = render_crop_preview(scan, seg, fit, regions, request, pipeline.atlas());
  const std::string model = c.seg ? std::string("none (--seg)") : pipeline.model_id();
  const Affine<Atlas, Scanner> atlas_to_scanner = fit.scanner_to_atlas.inverse();

  // 3. the other channels and the label map, on the same grid
  step("cropping");
  std::vector<Scan> channels;
  for (std::size_t ch = 1; ch < c.images.size(); ++ch) {
    channels.push_back(read_scan(c.images[ch]));
    if (!same_grid(channels.back().image.grid, scan.image.grid))
      throw Error(ErrorCode::UnsupportedGeometry, c.images[ch] + ": channel grid differs from " + input +
                                                      "'s; all channels of a case must share one grid");
  }
  std::optional<Scan> labels;
  if (c.label) {
    labels = read_scan(*c.label);
    if (!same_grid(labels->image.grid, scan.image.grid))
      throw Error(ErrorCode::UnsupportedGeometry, *c.label + ": label map grid differs from its image " + input +
                                                      "'s (size, origin, spacing or direction)");
  }
  float scan_min = 0.0f;
  if (!scan.image.voxels.empty()) scan_min = *std::min_element(scan.image.voxels.begin(), scan.image.voxels.end());

  // 4. crop and record, region by region
  std::vector<CropSummary> rows;
  for (std::size_t ri : pending) {
    const Region& region = regions[ri];
    CropOptions options = request.crop;
    if (!options.margin_mm) options.margin_mm = region.margin_mm;
    const float pad_value = options.pad_value.value_or(scan_min);
    const std::string record_path = layout.record_path(c, region);
    const std::string record_dir = fs::path(record_path).parent_path().string();

    CropRecord record;
    record.case_id = c.id;
    record.input = input;
    if (c.images.size() > 1) record.channel_inputs = c.images;
    record.scan_info = scan.info;
    record.input_grid = scan.image.grid;
    record.reorientation = seg.reorientation;
    record.region = region.name;
    record.region_provenance_json = region.provenance_json;
    record.options = options;
    record.options.pad_value = pad_value;
    record.initial = fit.initial;
    record.refined = fit.refined;
    record.network_passes = fit.network_passes;
    if (picture) {
      PreviewRecord pr;
      pr.file = relative_to(picture->path, record_dir);
      pr.pixel_mm = picture->preview.display_grid.spacing.x();
      pr.views_top = picture->preview.views_top;
      pr.coronal_left = picture->preview.coronal_left;
      pr.sagittal_left = picture->preview.sagittal_left;
      for (const AxialPanel& a : picture->preview.axial) pr.axial.push_back({a.label, a.left, a.top, a.k});
      record.preview = pr;
    }
    record.segmentation_source = seg.source;
    record.model_id = model;
    record.atlas_id = pipeline.atlas().id;
    for (const std::string& w : scan.info.warnings) add_warning(record.warnings, record.warning_codes, warning_code::kInput, w);
    record.warnings.insert(record.warnings.end(), fit.warnings.begin(), fit.warnings.end());
    for (const std::string& code : fit.warning_codes)
      if (std::find(record.warning_codes.begin(), record.warning_codes.end(), code) == record.warning_codes.end())
        record.warning_codes.push_back(code);

    int written = 0;
    std::vector<IndexBox> written_ranges;
    for (std::size_t b = 0; b < region.boxes.size(); ++b) {
      CropRecordBox rb;
      rb.box = map_box(region.boxes[b], atlas_to_scanner, scan.image.grid, options);
      const std::string box_name = "box " + std::to_string(b + 1) + " of region " + region.name;
      if (rb.box.misses_scan) {
        add_warning(record.warnings, record.warning_codes, warning_code::kRegionMissed, box_name + " lies outside the scan");
        record.boxes.push_back(rb);
        continue;
      }
      if (rb.box.was_clipped)
        add_warning(record.warnings, record.warning_codes, warning_code::kBoxClipped,
                    box_name + " was clipped at the scan border (" +
                        std::to_string(static_cast<int>(100.0 * rb.box.fraction_inside + 0.5)) + "% inside)");
      if (rb.box.fraction_inside < 0.5)
        add_warning(record.warnings, record.warning_codes, warning_code::kBoxMostlyOutside,
                    box_name + " is mostly outside the scan: the region may be cut off (does the scan cover it?)");
      for (std::size_t ch = 0; ch < c.images.size(); ++ch) {
        const Scan& src = ch == 0 ? scan : channels[ch - 1];
        const Image<float> crop = crop_image(src.image, rb.box, options, pad_value);
        const std::string path = layout.image_path(c, region, b, ch);
        files.claim(path);
        write_image(crop, path, options.target_spacing_mm ? PixelType::Float32 : src.info.stored_type);
        if (ch == 0) {
          rb.file = relative_to(path, record_dir);
          rb.output_grid = crop.grid;
        }
        if (c.images.size() > 1) rb.channel_files.push_back(relative_to(path, record_dir));
      }
      if (labels) {
        const Image<float> crop = crop_labels(labels->image, rb.box, options, 0.0f);
        const std::string path = layout.label_path(c, region, b);
        files.claim(path);
        write_image(crop, path, labels->info.stored_type);
        rb.label_file = relative_to(path, record_dir);
      }
      written_ranges.push_back(options.pad ? rb.box.requested : rb.box.clipped);
      record.boxes.push_back(rb);
      ++written;
    }
    if (written == 0)
      add_warning(record.warnings, record.warning_codes, warning_code::kRegionMissed,
                  "region " + region.name + " misses the scan: no crop written");
    if (labels) {
      record.label_input = *c.label;
      record.labels = labels_kept(labels->image, written_ranges);
      for (const LabelKept& l : record.labels) {
        std::string on;
        for (std::size_t f = 0; f < 6; ++f)
          if (l.touching[f]) on += std::string(on.empty() ? "" : ", ") + kFaceNames[f] + " (" + std::to_string(l.touching[f]) + " voxels)";
        if (!on.empty())
          add_warning(record.warnings, record.warning_codes, warning_code::kLabelTouchesFace,
                      "label " + std::to_string(l.value) + " touches the crop border inside the scan at " + on + "; " +
                          std::to_string(l.voxels - l.kept) + " of its " + std::to_string(l.voxels) +
                          " voxels are outside the crop: a larger --margin keeps it whole");
      }
    }
    files.claim(record_path);
    write_text_file(record_path, crop_record_json(record));
    CropSummary row = crop_summary(record, record_path);
    if (written == 0) log_warn(input + ": region " + region.name + " misses the scan; no crop written (record: " + record_path + ")");
    rows.push_back(row);
  }
  // per-scan extras last, inside the case's files: a case that fails on the way leaves no picture behind
  if (picture) {
    files.adopt(picture->path);
    write_png(picture->preview.image, picture->path);
    log_info("wrote " + picture->path);
  }
  return rows;
}

CropSummary failed_row(const DatasetCase& c, const Region& r, const std::string& message, int code,
                       const std::string& preview = "") {
  CropSummary s;
  s.preview = preview;
  s.case_id = c.id;
  s.region = r.name;
  s.input = c.images.empty() ? std::string() : c.images.front();
  s.status = "failed";
  s.error = message;
  s.error_code = code;
  return s;
}

std::string shard_suffix(const Shard& s) {
  return s.count > 1 ? "_shard-" + std::to_string(s.index) + "-of-" + std::to_string(s.count) : std::string();
}

// Rewrites ROOT/dataset.json from the input's and the cases whose records exist now (every shard's).
void write_dataset_json(const CropRequest& request, const CaseLayout& layout, const std::vector<DatasetCase>& all_cases,
                        const std::vector<Region>& regions) {
  const fs::path source = fs::path(*request.dataset_dir) / "dataset.json";
  std::error_code ec;
  if (!fs::is_regular_file(source, ec)) return;
  const std::string text = read_text_file(source.string());
  for (const Region& r : regions) {
    std::vector<DatasetEntry> entries;
    for (const DatasetCase& c : all_cases) {
      const std::string rec_path = layout.record_path(c, r);
      if (!fs::is_regular_file(rec_path, ec)) continue;
      ParsedCropRecord rec;
      try {
        rec = parse_crop_record(rec_path, read_text_file(rec_path));
      } catch (const Error&) {
        continue;
      }
      for (std::size_t b = 0; b < rec.boxes.size(); ++b) {
        if (rec.boxes[b].second.empty()) continue;
        DatasetEntry e{c.subset, layout.out_id(c, r, b), std::nullopt};
        if (!rec.label_files[b].empty()) e.label = "./" + label_subset(c.subset) + "/" + e.id + request.extension;
        entries.push_back(e);
      }
    }
    const fs::path target = layout.root(r) / "dataset.json";
    fs::create_directories(target.parent_path(), ec);
    write_text_file(target.string(),
                    updated_dataset_json(source.string(), text, entries, request.extension,
                                         "cropped to region " + r.name + " by ctarr " + std::string(kVersion)));
  }
}

// The QA page's heading, command and previews: a case's preview is linked where its file exists (this run's, or an
// earlier run's for a case skipped as done).
QaPageInfo qa_page_info(const CropRequest& request, const std::vector<CropSummary>& rows,
                        const std::vector<Region>& regions) {
  QaPageInfo info;
  std::set<std::string> cases;
  for (const CropSummary& r : rows) cases.insert(r.case_id);
  std::string names;
  for (const Region& r : regions) names += (names.empty() ? "" : ", ") + r.name;
  info.title = "ctarr crop: " + std::to_string(cases.size()) + (cases.size() == 1 ? " case, " : " cases, ") +
               (regions.size() == 1 ? "region " : "regions ") + names;
  info.command = request.command;
  for (const CropSummary& r : rows) {
    if (info.previews.count(r.case_id) || r.input.empty()) continue;
    const fs::path preview = fs::path(request.out_dir) / preview_file_name(r.input);
    std::error_code ec;
    if (fs::is_regular_file(preview, ec)) info.previews[r.case_id] = preview.string();
  }
  return info;
}

}  // namespace

CropRun run_crop(const CropRequest& request) {
  const bool dataset = request.dataset_dir.has_value();
  if (dataset && !request.inputs.empty())
    throw Error(ErrorCode::Usage, "give either input files or --dataset, not both");
  if (!dataset && request.inputs.empty()) throw Error(ErrorCode::Usage, "no input given (input files or --dataset DIR)");
  if (request.seg && (dataset || request.inputs.size() != 1))
    throw Error(ErrorCode::Usage, "--seg goes with exactly one input (use --seg-dir for several)");
  if (request.seg && request.seg_dir) throw Error(ErrorCode::Usage, "give --seg or --seg-dir, not both");
  if (request.crop.margin_mm &&
      !(std::isfinite(*request.crop.margin_mm) && *request.crop.margin_mm >= 0.0 && *request.crop.margin_mm <= 1000.0))
    throw Error(ErrorCode::Usage, "--margin " + std::to_string(*request.crop.margin_mm) + " mm: it must be in [0, 1000]");
  if (request.shard.count < 1 || request.shard.index < 0 || request.shard.index >= request.shard.count)
    throw Error(ErrorCode::Usage, "invalid shard " + std::to_string(request.shard.index) + "/" + std::to_string(request.shard.count));
  if (request.seg_dir && !fs::is_directory(*request.seg_dir))
    throw Error(ErrorCode::UnreadableInput, "--seg-dir " + *request.seg_dir + " is not a folder");

  // 1. cases, options, regions, output folder: fail before any heavy work
  const std::vector<DatasetCase> all_cases = dataset ? find_dataset_cases(*request.dataset_dir) : cases_from_inputs(request.inputs);
  std::vector<DatasetCase> cases = select_shard(all_cases, request.shard);
  for (DatasetCase& c : cases) {
    if (request.seg) c.seg = request.seg;
    if (request.seg_dir) c.seg = find_segmentation(*request.seg_dir, c);
  }
  const PipelineOptions pipeline_options = with_default_paths(request.pipeline);
  std::vector<Region> regions;
  for (const std::string& r : request.regions) regions.push_back(resolve_region(r, pipeline_options.regions_dir));
  if (regions.empty()) throw Error(ErrorCode::Usage, "no region given (--region NAME; `ctarr regions` lists them)");
  check_output_dir(request.out_dir);
  const CaseLayout layout{request, dataset, regions.size() > 1};

  // 2. resume: regions whose record and files exist are skipped (unless --overwrite)
  struct Resume {
    std::vector<CropSummary> done_rows;
    std::vector<std::size_t> pending;
    std::string stale;  // records of this case made from another input or with other options
  };
  std::vector<Resume> resume(cases.size());
  std::vector<std::string> to_read;
  for (std::size_t n = 0; n < cases.size(); ++n) {
    for (std::size_t r = 0; r < regions.size(); ++r) {
      EarlierRun before;
      if (!request.overwrite) {
        CropOptions options = request.crop;
        if (!options.margin_mm) options.margin_mm = regions[r].margin_mm;
        before = earlier_run(layout.record_path(cases[n], regions[r]), cases[n].images.front(), options);
      }
      if (before.done) {
        resume[n].done_rows.push_back(*before.done);
      } else {
        resume[n].pending.push_back(r);
        if (!before.other_options.empty())
          resume[n].stale += (resume[n].stale.empty() ? "" : "; ") + layout.record_path(cases[n], regions[r]) + " (" +
                             before.other_options + ")";
      }
    }
    if (!resume[n].pending.empty() && resume[n].stale.empty()) to_read.push_back(cases[n].images.front());
  }
  ReadAhead reads(std::move(to_read));
  reads.start_next();  // the first scan is read while the atlas loads
  Pipeline pipeline(pipeline_options);
  for (const Region& r : regions)
    if (!check_region_atlas(r, pipeline.atlas().id, pipeline_options.atlas_dir))
      log_warn("region " + r.name + (r.file.empty() ? "" : " (" + r.file + ")") +
               " does not name the atlas its boxes were made on (provenance.atlas_id): they are taken as millimetres "
               "of " + pipeline.atlas().id);
  if (request.shard.count > 1)
    log_info("shard " + std::to_string(request.shard.index) + "/" + std::to_string(request.shard.count) + ": " +
             std::to_string(cases.size()) + " of " + std::to_string(all_cases.size()) + " cases");

  std::optional<StopOnSignals> signals;
  if (request.stop_on_signals) signals.emplace();

  CropRun run;
  const bool write_summary = dataset || all_cases.size() > 1 || request.shard.count > 1;
  if (write_summary) {
    const std::string suffix = shard_suffix(request.shard);
    run.summary_json = (fs::path(request.out_dir) / ("summary" + suffix + ".json")).string();
    run.summary_csv = (fs::path(request.out_dir) / ("summary" + suffix + ".csv")).string();
    run.summary_html = (fs::path(request.out_dir) / ("summary" + suffix + ".html")).string();
  }
  auto save_summary = [&] {
    if (!write_summary) return;
    write_text_file(run.summary_json, summary_json(run.rows));
    write_text_file(run.summary_csv, summary_csv(run.rows));
    write_text_file(run.summary_html, qa_page_html(run.rows, run.summary_html, qa_page_info(request, run.rows, regions)));
  };

  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  BatchProgress progress;
  progress.total = cases.size();
  double processed_seconds = 0.0;
  std::size_t processed = 0;
  auto report = [&](const std::string& current) {
    progress.elapsed_s = std::chrono::duration<double>(Clock::now() - t0).count();
    const std::size_t left = progress.total - progress.done;
    progress.eta_s = processed ? processed_seconds / static_cast<double>(processed) * static_cast<double>(left)
                               : (left ? -1.0 : 0.0);
    progress.current = current;
    if (request.progress) request.progress(progress);
  };

  std::size_t failed_cases = 0;
  bool any_missed = false;
  int single_case_code = 0;
  for (std::size_t n = 0; n < cases.size() && !run.stop_signal; ++n) {
    const DatasetCase& c = cases[n];
    const std::string tag = "[" + std::to_string(n + 1) + "/" + std::to_string(cases.size()) + "] " + c.id;
    std::vector<CropSummary> case_rows = resume[n].done_rows;
    const std::vector<std::size_t>& pending = resume[n].pending;
    const std::string& stale = resume[n].stale;
    if (pending.empty()) {
      log_info(tag + ": done by an earlier run, skipped (--overwrite redoes it)");
      ++progress.done;
      ++progress.skipped;
      run.rows.insert(run.rows.end(), case_rows.begin(), case_rows.end());
      report("");
      continue;
    }
    report(c.id);
    log_info(tag + (c.images.size() > 1 ? " (" + std::to_string(c.images.size()) + " channels)" : std::string()) + ": " +
             c.images.front());
    const auto tc = Clock::now();
    CaseFiles files(request.overwrite);
    try {
      if (request.seg_dir && !c.seg)
        throw Error(ErrorCode::UnreadableInput, "no segmentation for case " + c.id + " in " + *request.seg_dir +
                                                    " (looked for " + c.id + ".nii.gz, " + image_stem(c.images.front()) +
                                                    ".nii.gz or other image extensions, or a folder " + c.id + "/)");
      if (!stale.empty())
        throw Error(ErrorCode::OutputNotWritable, "an earlier run wrote case " + c.id + " from another input or with other options: " + stale +
                                                      "; its files are kept: rerun with --overwrite to redo it, or use "
                                                      "another output folder");
      check_stop();
      std::vector<CropSummary> rows = crop_case(pipeline, c, regions, pending, request, layout, files, reads,
                                                [&](const std::string& step) { report(c.id + ": " + step); });
      files.keep();
      for (const CropSummary& r : rows) {
        if (r.crop_voxels == 0) any_missed = true;
        case_rows.push_back(r);
      }
      log_info(tag + ": ok (" + format_duration(std::chrono::duration<double>(Clock::now() - tc).count()) + ")");
    } catch (const Error& e) {
      files.remove_all();
      if (e.code() == ErrorCode::Interrupted || e.code() == ErrorCode::Terminated) {
        run.stop_signal = e.code() == ErrorCode::Terminated ? SIGTERM : SIGINT;
        log_warn(tag + ": " + e.what() + "; its files were removed, the summary covers the cases finished; a rerun resumes");
        break;
      }
      log(LogLevel::Error, tag + ": " + e.what());
      ++failed_cases;
      ++progress.failed;
      single_case_code = static_cast<int>(e.code());
      for (std::size_t r : pending)
        case_rows.push_back(failed_row(c, regions[r], e.what(), static_cast<int>(e.code()), files.failure_picture()));
      if (e.code() == ErrorCode::ModelFailure) {  // every further case would fail the same way
        run.rows.insert(run.rows.end(), case_rows.begin(), case_rows.end());
        save_summary();
        throw;
      }
    } catch (const std::exception& e) {
      files.remove_all();
      log(LogLevel::Error, tag + ": internal error: " + e.what() + " (please report)");
      ++failed_cases;
      ++progress.failed;
      single_case_code = static_cast<int>(ErrorCode::Internal);
      for (std::size_t r : pending)
        case_rows.push_back(failed_row(c, regions[r], std::string("internal error: ") + e.what(), single_case_code));
    }
    processed_seconds += std::chrono::duration<double>(Clock::now() - tc).count();
    ++processed;
    ++progress.done;
    run.rows.insert(run.rows.end(), case_rows.begin(), case_rows.end());
    report("");
  }
  if (!run.stop_signal && stop_signal()) run.stop_signal = stop_signal();

  // 5. summary, dataset.json, exit code
  save_summary();
  if (dataset) write_dataset_json(request, layout, all_cases, regions);
  if (write_summary) log_info("summary: " + run.summary_csv + ", " + run.summary_json + "; QA page " + run.summary_html);
  if (run.stop_signal)
    run.exit_code = static_cast<int>(run.stop_signal == SIGTERM ? ErrorCode::Terminated : ErrorCode::Interrupted);
  else if (failed_cases > 0)
    run.exit_code = cases.size() == 1 ? single_case_code : static_cast<int>(ErrorCode::SomeCasesFailed);
  else if (any_missed)
    run.exit_code = static_cast<int>(ErrorCode::NoOverlap);
  if (cases.size() > 1 || run.stop_signal)
    log_info(std::to_string(progress.done - progress.failed - progress.skipped) + " cases cropped, " +
             std::to_string(progress.skipped) + " skipped (done before), " + std::to_string(progress.failed) +
             " failed, " + std::to_string(cases.size() - progress.done) + " not run");
  return run;
}

UncropResult run_uncrop(const UncropRequest& request) {
  const ParsedCropRecord rec = parse_crop_record(request.record, read_text_file(request.record));
  const fs::path folder = fs::path(request.record).parent_path();
  UncropResult result;
  result.output = request.output;
  // 1. which crops: given, or the record's (its label crops with --labels when it has them)
  std::vector<std::pair<IndexBox, std::string>> boxes;
  bool label_crops = false;
  if (request.crops.empty()) {
    const bool has_labels = std::any_of(rec.label_files.begin(), rec.label_files.end(), [](const std::string& f) { return !f.empty(); });
    label_crops = has_labels && request.labels.value_or(false);
    for (std::size_t b = 0; b < rec.boxes.size(); ++b) {
      const std::string& f = label_crops ? rec.label_files[b] : rec.boxes[b].second;
      if (!f.empty()) boxes.emplace_back(rec.boxes[b].first, (folder / f).string());
    }
  } else {
    std::vector<std::size_t> written;
    for (std::size_t b = 0; b < rec.boxes.size(); ++b)
      if (!rec.boxes[b].second.empty()) written.push_back(b);
    if (request.crops.size() != written.size())
      throw Error(ErrorCode::Usage, "record " + request.record + " has " + std::to_string(written.size()) +
                                        " written box(es); give one crop per box in the record's order (" +
                                        std::to_string(request.crops.size()) + " given)");
    for (std::size_t n = 0; n < written.size(); ++n) {
      boxes.emplace_back(rec.boxes[written[n]].first, request.crops[n]);
      const std::string& lf = rec.label_files[written[n]];
      if (!lf.empty() && fs::weakly_canonical(folder / lf) == fs::weakly_canonical(request.crops[n])) label_crops = true;
    }
  }
  if (boxes.empty()) throw Error(ErrorCode::UnreadableInput, "record " + request.record + " lists no crop (its region missed the scan)");
  // 2. read them; labels or image
  std::vector<Scan> crops;
  for (const auto& [range, path] : boxes) {
    crops.push_back(read_scan(path));
    result.crops.push_back(path);
  }
  const PixelType type = crops.front().info.stored_type;
  const bool integer = type != PixelType::Float32 && type != PixelType::Float64;
  result.labels = request.labels.value_or(label_crops || (integer && to_string(type) != rec.stored_type));
  result.fill = request.fill.value_or(result.labels ? 0.0f : rec.pad_value.value_or(0.0f));
  // 3. paste every box onto the input grid
  Image<float> canvas(rec.input_grid, result.fill);
  for (std::size_t n = 0; n < crops.size(); ++n) {
    try {
      uncrop_into(crops[n].image, boxes[n].first, result.labels ? UncropInterpolation::Nearest : UncropInterpolation::Linear,
                  canvas);
    } catch (const Error& e) {
      throw Error(e.code(), boxes[n].second + ": " + e.what() + " (record " + request.record + ")");
    }
  }
  write_image(canvas, request.output, type);
  return result;
}

void run_segment(const SegmentRequest& request) {
  Pipeline pipeline(request.pipeline);
  const Scan scan = read_scan(request.input);
  for (const std::string& w : scan.info.warnings) log_warn(request.input + ": " + w);  // as crop prints them
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
