// ctarr — the stages composed, as numbered steps: the crop command (run_crop, one case: crop_case), uncrop, segment.
// The parts live in their units: the plan of a case's crops (crop_plan), its files and resume (case_output), reading
// ahead and stop requests (batch).
#include "ctarr/pipeline.hpp"

#include "ctarr/case_output.hpp"
#include "ctarr/classes.hpp"
#include "ctarr/components.hpp"
#include "ctarr/crop_plan.hpp"
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
#include <filesystem>
#include <set>

namespace ctarr {

namespace fs = std::filesystem;

namespace {

std::string relative_to(const std::string& file, const std::string& folder) {
  return fs::path(file).lexically_relative(fs::path(folder)).generic_string();
}

bool same_grid(const Grid<Scanner>& a, const Grid<Scanner>& b) {
  return a.size == b.size && (a.origin - b.origin).norm() < 1e-3 && (a.spacing - b.spacing).cwiseAbs().maxCoeff() < 1e-4 &&
         (a.direction - b.direction).cwiseAbs().maxCoeff() < 1e-4;
}

// The image read from `path` for case input `input`, on its grid (another channel, or the label map).
Scan read_on_grid(const std::string& path, const Scan& scan, const std::string& what) {
  Scan s = read_scan(path);
  if (!same_grid(s.image.grid, scan.image.grid))
    throw Error(ErrorCode::UnsupportedGeometry, path + ": " + what + " grid differs from " + scan.info.path +
                                                    "'s (size, origin, spacing or direction); all images of a case "
                                                    "must share one grid");
  return s;
}

PreviewRecord preview_record(const CropPicture& picture, const std::string& record_dir) {
  PreviewRecord pr;
  pr.file = relative_to(picture.path, record_dir);
  pr.pixel_mm = picture.preview.display_grid.spacing.x();
  pr.views_top = picture.preview.views_top;
  pr.coronal_left = picture.preview.coronal_left;
  pr.sagittal_left = picture.preview.sagittal_left;
  for (const AxialPanel& a : picture.preview.axial) pr.axial.push_back({a.label, a.left, a.top, a.k});
  return pr;
}

// Dataset mode: what the written boxes keep of each label, with a warning for each label a box face cuts.
void record_labels(CropRecord& record, const Scan& labels, const std::string& label_input,
                   const std::vector<IndexBox>& written_ranges) {
  record.label_input = label_input;
  record.labels = labels_kept(labels.image, written_ranges);
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

// Every region of one case: read, segment (or take its segmentation), fit, plan, crop, write crops and records.
// Every file goes through `files`: the caller commits it when this returns.
// Only the regions `pending` (indices into `regions`) are cropped; the preview shows them all.
std::vector<CropSummary> crop_case(Pipeline& pipeline, const DatasetCase& c, const std::vector<Region>& regions,
                                   const std::vector<std::size_t>& pending, const CropRequest& request, const CaseLayout& layout, CaseTransaction& files,
                                   ReadAhead& reads, const std::function<void(const std::string&)>& step) {
  const std::string& input = c.images.front();
  // 1. read
  step("reading");
  const Scan scan = reads.take(input);
  for (const std::string& w : scan.info.warnings) log_warn(input + ": " + w);
  throw_if_stop_requested();
  // 2. segment (network or given labels) and fit
  NetworkFit fitted;
  if (c.seg) {
    step("reading its segmentation");
    fitted.segmentation = pipeline.segmentation_from_labels(*c.seg);
    reads.start_next();
    throw_if_stop_requested();
    step("fitting");
    fitted.fit = pipeline.fit_or_refusal(fitted.segmentation);
  } else {
    step("segmenting and fitting");
    fitted = pipeline.segment_and_fit(scan, throw_if_stop_requested, /*keep_refused=*/true);
    reads.start_next();
  }
  const Segmentation& seg = fitted.segmentation;
  const Fit& fit = fitted.fit;
  for (const std::string& w : fit.warnings) log_warn(input + ": " + w);
  const std::string picture_path = (fs::path(request.out_dir) / preview_file_name(input)).string();
  if (!fit.refusal.empty()) {
    if (!request.preview) throw Error(ErrorCode::FitFailed, fit.refusal);
    // the case where the picture matters most: written, kept, and named in the summary
    try {
      files.write_failure_picture(render_crop_preview(scan, seg, fit, nullptr, pipeline.atlas()).image, picture_path);
    } catch (const Error& e) {  // the case fails for its fit, not for its picture
      log_warn(input + ": " + e.what());
      throw Error(ErrorCode::FitFailed, fit.refusal);
    }
    throw Error(ErrorCode::FitFailed, fit.refusal + "; the picture of the refused fit: " + picture_path);
  }
  throw_if_stop_requested();

  // 3. the plan: every region's boxes mapped into the scan, the options in effect, the warnings
  const CropPlan plan = plan_crop(scan, fit.scanner_to_atlas, regions, request.crop);
  std::optional<Preview<Scanner>> picture;
  if (request.preview) picture = render_crop_preview(scan, seg, fit, &plan, pipeline.atlas());

  // 4. the other channels and the label map, on the same grid
  step("cropping");
  std::vector<Scan> channels{};
  for (std::size_t ch = 1; ch < c.images.size(); ++ch) channels.push_back(read_on_grid(c.images[ch], scan, "channel"));
  std::optional<Scan> labels;
  if (c.label) labels = read_on_grid(*c.label, scan, "label map");

  // 5. crop and record, region by region
  const RecordContext context{c.id, c.images, &scan, &seg, &fit,
                              c.seg ? std::string("none (--seg)") : pipeline.model_id(), pipeline.atlas().id};
  std::vector<CropSummary> rows;
  for (const std::size_t ri : pending) {
    const RegionPlan& rp = plan.regions[ri];
    const std::string record_path = layout.record_path(c, rp.region);
    const std::string record_dir = fs::path(record_path).parent_path().string();
    CropRecord record = start_crop_record(context, rp);
    if (picture) record.preview = preview_record(CropPicture{*picture, picture_path}, record_dir);
    std::vector<IndexBox> written_ranges;
    for (std::size_t b = 0; b < rp.boxes.size(); ++b) {
      CropRecordBox rb;
      rb.box = rp.boxes[b];
      if (!rb.box.misses_scan) {
        for (std::size_t ch = 0; ch < c.images.size(); ++ch) {
          const Scan& src = ch == 0 ? scan : channels[ch - 1];
          const Image<float> crop = crop_image(src.image, rb.box, rp.options, *rp.options.pad_value);
          const std::string path = layout.image_path(c, rp.region, b, ch);
          files.write_image(crop, path, rp.options.target_spacing_mm ? PixelType::Float32 : src.info.stored_type);
          if (ch == 0) {
            rb.file = relative_to(path, record_dir);
            rb.output_grid = crop.grid;
          }
          if (c.images.size() > 1) rb.channel_files.push_back(relative_to(path, record_dir));
        }
        if (labels) {
          const std::string path = layout.label_path(c, rp.region, b);
          files.write_image(crop_labels(labels->image, rb.box, rp.options, 0.0f), path, labels->info.stored_type);
          rb.label_file = relative_to(path, record_dir);
        }
        written_ranges.push_back(rp.written_range(b));
      }
      record.boxes.push_back(rb);
    }
    if (labels) record_labels(record, *labels, *c.label, written_ranges);
    files.write_text(record_path, crop_record_json(record));
    if (written_ranges.empty())
      log_warn(input + ": region " + rp.region.name + " misses the scan; no crop written (record: " + record_path + ")");
    rows.push_back(crop_summary(record, record_path));
  }
  // 6. per-scan extras last, inside the case's files: a case that fails on the way leaves no picture behind
  if (picture) {
    files.write_preview(picture->image, picture_path);
    log_info("wrote " + picture_path);
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

// Usage errors of a crop request, before anything is read.
void check_crop_request(const CropRequest& request) {
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
}

// Throws when a case cannot start: no segmentation in --seg-dir, or records made with other options.
void check_case_can_start(const CropRequest& request, const DatasetCase& c, const std::string& stale) {
  if (request.seg_dir && !c.seg)
    throw Error(ErrorCode::UnreadableInput, "no segmentation for case " + c.id + " in " + *request.seg_dir + " (looked for " +
                                            c.id + ".nii.gz, " + image_stem(c.images.front()) +
                                            ".nii.gz or other image extensions, or a folder " + c.id + "/)");
  if (!stale.empty())
    throw Error(ErrorCode::OutputNotWritable, "an earlier run wrote case " + c.id + " from another input or with other options: " +
                                              stale + "; its files are kept: rerun with --overwrite to redo it, or use "
                                                      "another output folder");
}

}  // namespace

CropRun run_crop(const CropRequest& request) {
  check_crop_request(request);
  const bool dataset = request.dataset_dir.has_value();

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
  const CaseLayout layout{request.out_dir, request.extension, dataset, regions.size() > 1};

  // 2. resume: regions whose record and files exist are skipped (unless --overwrite)
  std::vector<CaseResume> resume;
  std::vector<std::string> to_read;
  for (const DatasetCase& c : cases) {
    resume.push_back(resume_case(c, regions, layout, request.crop, request.overwrite));
    if (!resume.back().pending.empty() && resume.back().stale.empty()) to_read.push_back(c.images.front());
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

  // 3. the summaries, rewritten as cases finish
  CropRun run;
  const bool write_summary = dataset || all_cases.size() > 1 || request.shard.count > 1;
  if (write_summary) {
    const std::string stem = (fs::path(request.out_dir) / ("summary" + shard_suffix(request.shard))).string();
    run.summary_json = stem + ".json";
    run.summary_csv = stem + ".csv";
    run.summary_html = stem + ".html";
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

  // 4. the cases, one transaction each
  std::size_t failed_cases = 0;
  bool any_missed = false;
  int single_case_code = 0;
  for (std::size_t n = 0; n < cases.size() && !run.stop_signal; ++n) {
    const DatasetCase& c = cases[n];
    const std::string tag = "[" + std::to_string(n + 1) + "/" + std::to_string(cases.size()) + "] " + c.id;
    std::vector<CropSummary> case_rows = resume[n].done_rows;
    const std::vector<std::size_t>& pending = resume[n].pending;
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
    CaseTransaction files(request.overwrite);  // rolls back unless committed
    auto fail = [&](int code, const std::string& message) {
      files.roll_back();
      ++failed_cases;
      ++progress.failed;
      single_case_code = code;
      for (std::size_t r : pending)
        case_rows.push_back(failed_row(c, regions[r], message, code, files.failure_picture()));
    };
    try {
      check_case_can_start(request, c, resume[n].stale);
      throw_if_stop_requested();
      const std::vector<CropSummary> rows = crop_case(pipeline, c, regions, pending, request, layout, files, reads,
                                                      [&](const std::string& step) { report(c.id + ": " + step); });
      files.commit();
      for (const CropSummary& r : rows) any_missed = any_missed || r.crop_voxels == 0;
      case_rows.insert(case_rows.end(), rows.begin(), rows.end());
      log_info(tag + ": ok (" + format_duration(std::chrono::duration<double>(Clock::now() - tc).count()) + ")");
    } catch (const Error& e) {
      if (e.code() == ErrorCode::Interrupted || e.code() == ErrorCode::Terminated) {
        files.roll_back();
        run.stop_signal = e.code() == ErrorCode::Terminated ? SIGTERM : SIGINT;
        log_warn(tag + ": " + e.what() + "; its files were removed, the summary covers the cases finished; a rerun resumes");
        break;
      }
      log(LogLevel::Error, tag + ": " + e.what());
      fail(static_cast<int>(e.code()), e.what());
      if (e.code() == ErrorCode::ModelFailure) {  // every further case would fail the same way
        run.rows.insert(run.rows.end(), case_rows.begin(), case_rows.end());
        save_summary();
        throw;
      }
    } catch (const std::exception& e) {
      log(LogLevel::Error, tag + ": internal error: " + e.what() + " (please report)");
      fail(static_cast<int>(ErrorCode::Internal), std::string("internal error: ") + e.what());
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
  if (dataset)
    write_cropped_dataset_json(*request.dataset_dir, layout, all_cases, regions,
                               "ctarr " + std::string(kVersion));
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

Image<std::uint8_t> segment_labels(Pipeline& pipeline, const Scan& scan, const LabelMapOptions& options) {
  const Segmentation seg = pipeline.segment(scan, options.mirror_pass);
  MultiChannelImage<Scanner> with_bg(seg.soft_masks.grid, kNumClasses + 1);
  const std::size_t n = static_cast<std::size_t>(seg.soft_masks.grid.voxels());
  for (std::size_t v = 0; v < n; ++v) {
    float sum = 0.0f;
    for (int c = 0; c < kNumClasses; ++c) sum += seg.soft_masks.data[static_cast<std::size_t>(c) * n + v];
    with_bg.data[v] = std::max(0.0f, 1.0f - sum);
  }
  std::copy(seg.soft_masks.data.begin(), seg.soft_masks.data.end(), with_bg.data.begin() + static_cast<std::ptrdiff_t>(n));
  Image<std::uint8_t> labels =
      options.grid == LabelGrid::Scan ? hard_labels_on_grid(with_bg, scan.image.grid) : hard_labels(with_bg);
  if (options.all_components) return labels;
  for (int value : one_piece_labels()) {
    const PiecesRemoved removed = keep_largest_component(labels, static_cast<std::uint8_t>(value));
    if (removed.pieces > 0)
      log_info("segment: " + class_names()[static_cast<std::size_t>(value - 1)] + ": kept its largest piece, " +
               std::to_string(removed.pieces) + " other piece(s) of " + std::to_string(removed.voxels) +
               " voxels set to background");
  }
  return labels;
}

void run_segment(const SegmentRequest& request) {
  Pipeline pipeline(request.pipeline);
  const Scan scan = read_scan(request.input);
  for (const std::string& w : scan.info.warnings) log_warn(request.input + ": " + w);  // as crop prints them
  write_image(segment_labels(pipeline, scan, request.label_map), request.output);
}

}  // namespace ctarr
