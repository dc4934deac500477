// ctarr — the infer-region command and its report: list the labelled cases (a dataset, or image and label folders), fit each
// (network or given segmentation), carry its labels into the atlas grid, and write the region, its report and its
// pictures (see infer_regions.hpp).
#include "ctarr/infer_regions.hpp"

#include "detail/json_geometry.hpp"
#include "detail/json_text.hpp"
#include "detail/percent.hpp"

#include "ctarr/dataset.hpp"
#include "ctarr/error.hpp"
#include "ctarr/io.hpp"
#include "ctarr/log.hpp"
#include "ctarr/preview.hpp"
#include "ctarr/version.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>
#include <sstream>

namespace ctarr {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;  // keys in the order written

using detail::fmt_pct;

// ---- the report ------------------------------------------------------------------------------------------------

RegionReportPaths region_report_paths(const std::string& region_file) {
  fs::path base(region_file);
  if (base.extension() == ".json") base.replace_extension();
  const std::string b = base.string();
  return RegionReportPaths{b + "_report.png", b + "_report.json", b + "_report.md"};
}

void write_region_report(const InferRegionsResult& result, const std::vector<LeaveOneOutCase>& loo,
                         const RegionReportPaths& paths, const MultiChannelImage<Atlas>* atlas_masks) {
  const Region& region = result.region;
  // 1. picture
  std::ostringstream line;
  line.precision(3);
  line << region.name << ": " << result.cases.size() << " cases, threshold " << result.threshold << ", "
       << region.boxes.size() << (region.boxes.size() == 1 ? " box" : " boxes");
  write_png(render_heatmap_preview(result.heatmap, region.boxes, {line.str(), "max projections of the heatmap"}, 400,
                                   atlas_masks)
                .image,
            paths.png);

  // 2. numbers
  auto summary = [](std::vector<double> v) {
    json s;
    if (v.empty()) return s;
    std::sort(v.begin(), v.end());
    s["lowest"] = v.front();
    s["median"] = v[v.size() / 2];
    double sum = 0.0;
    for (double x : v) sum += x;
    s["mean"] = sum / static_cast<double>(v.size());
    return s;
  };
  json j;
  j["region"] = region.name;
  j["threshold"] = result.threshold;
  j["margin_mm"] = region.margin_mm;
  j["boxes"] = json::array();
  auto mm = [](const Eigen::Vector3d& v) { return json::array({v.x(), v.y(), v.z()}); };
  for (const Box<Atlas>& b : region.boxes)
    j["boxes"].push_back({{"lower_mm", mm(b.lower.mm)}, {"upper_mm", mm(b.upper.mm)}});
  j["fraction_kept_means"] =
      "fraction of a case's label voxels (centres mapped into the atlas by its fit) inside the boxes; in_sample: the "
      "boxes inferred from all cases; leave_one_out: the boxes inferred from the other cases";
  j["cases"] = json::array();
  std::vector<double> in_tight, in_margin, out_tight, out_margin;
  for (std::size_t k = 0; k < result.cases.size(); ++k) {
    const RegionCaseOutcome& o = result.cases[k];
    json c = {{"name", o.name},
              {"label_ml", o.label_ml},
              {"in_sample",
               {{"fraction_kept", o.fraction_kept}, {"fraction_kept_with_margin", o.fraction_kept_with_margin}}}};
    in_tight.push_back(o.fraction_kept);
    in_margin.push_back(o.fraction_kept_with_margin);
    for (const LeaveOneOutCase& l : loo)
      if (l.name == o.name) {
        c["leave_one_out"] = {{"inferred", l.inferred},
                              {"threshold", l.threshold},
                              {"boxes", l.boxes.size()},
                              {"fraction_kept", l.fraction_kept},
                              {"fraction_kept_with_margin", l.fraction_kept_with_margin}};
        out_tight.push_back(l.fraction_kept);
        out_margin.push_back(l.fraction_kept_with_margin);
      }
    j["cases"].push_back(c);
  }
  j["summary"] = {
      {"in_sample", {{"fraction_kept", summary(in_tight)}, {"fraction_kept_with_margin", summary(in_margin)}}}};
  if (!loo.empty())
    j["summary"]["leave_one_out"] = {{"fraction_kept", summary(out_tight)},
                                     {"fraction_kept_with_margin", summary(out_margin)}};
  else
    j["summary"]["leave_one_out"] = "not computed: a single case";
  j["picture"] = fs::path(paths.png).filename().string();
  write_text_file(paths.json, detail::json_text(j, 2) + "\n");

  // 3. the same as a table
  std::ostringstream md;
  md << "# Region " << region.name << "\n\n"
     << "Threshold " << result.threshold << ", margin " << region.margin_mm << " mm, " << region.boxes.size()
     << (region.boxes.size() == 1 ? " box" : " boxes") << ", " << result.cases.size() << " cases.\n\n"
     << "![heatmap](" << fs::path(paths.png).filename().string() << ")\n\n"
     << "Fraction of each case's label inside the boxes: in-sample (boxes from all cases) and leave-one-out (boxes "
        "from the other cases), tight and with the margin.\n\n"
     << "| case | label ml | in-sample | in-sample + margin | left out | left out + margin |\n"
     << "|---|---:|---:|---:|---:|---:|\n";
  for (std::size_t k = 0; k < result.cases.size(); ++k) {
    const RegionCaseOutcome& o = result.cases[k];
    md << "| " << o.name << " | " << std::fixed << std::setprecision(1) << o.label_ml << " | "
       << fmt_pct(o.fraction_kept) << " | " << fmt_pct(o.fraction_kept_with_margin) << " | ";
    const auto l = std::find_if(loo.begin(), loo.end(), [&](const LeaveOneOutCase& x) { return x.name == o.name; });
    if (l == loo.end())
      md << "- | - |\n";
    else if (!l->inferred)
      md << "no box | no box |\n";
    else
      md << fmt_pct(l->fraction_kept) << " | " << fmt_pct(l->fraction_kept_with_margin) << " |\n";
  }
  if (!out_margin.empty())
    md << "\nLeave-one-out, lowest with the margin: "
       << fmt_pct(*std::min_element(out_margin.begin(), out_margin.end()))
       << "; median: " << fmt_pct(summary(out_margin)["median"].get<double>()) << ".\n";
  write_text_file(paths.markdown, md.str());
}

// ---- the infer-region command -------------------------------------------------------------------------------

std::vector<RegionCaseFiles> list_region_cases(const InferRegionRequest& req, std::vector<std::string>* unpaired) {
  std::vector<RegionCaseFiles> cases;
  if (!req.dataset_dir.empty()) {
    const std::vector<DatasetCase> found = find_dataset_cases(req.dataset_dir);
    const bool several_subsets = found.front().subset != found.back().subset;  // sorted by subset
    for (const DatasetCase& c : found) {
      const std::string name = several_subsets ? c.subset + "/" + c.id : c.id;
      if (!c.label) {
        unpaired->push_back(name);
        continue;
      }
      cases.push_back(RegionCaseFiles{name, c.images.front(), "", *c.label});
    }
    return cases;
  }
  const std::string labels_dir = req.labels_dir.empty() ? req.seg_dir : req.labels_dir;
  std::error_code ec;
  const bool same = fs::weakly_canonical(labels_dir, ec) == fs::weakly_canonical(req.seg_dir, ec);
  const auto segs = image_entries_by_id(req.seg_dir, !same);
  const auto labels = same ? segs : image_entries_by_id(labels_dir, false);
  for (const auto& [id, path] : segs) {
    const auto l = labels.find(id);
    if (l == labels.end()) {
      unpaired->push_back(id);
      continue;
    }
    cases.push_back(RegionCaseFiles{id, "", path, l->second});
  }
  return cases;
}

InferRegionsResult run_infer_regions(const InferRegionRequest& req) {
  // 1. the request
  if (req.name.empty() || req.name.find('/') != std::string::npos)
    throw Error(ErrorCode::Usage, "a region needs a plain name (--name liver)");
  if (req.label_values.empty()) throw Error(ErrorCode::Usage, "no label value given (--label N, repeatable)");
  for (int v : req.label_values)
    if (v <= 0 || v > 65535)
      throw Error(ErrorCode::Usage, "label value " + std::to_string(v) + " is out of range 1..65535");
  if (req.dataset_dir.empty() == req.seg_dir.empty())
    throw Error(ErrorCode::Usage, "give either --dataset DIR (images*/ + labels*/) or --seg-dir DIR (segmentations)");
  if (!req.labels_dir.empty() && req.seg_dir.empty()) throw Error(ErrorCode::Usage, "--labels-dir goes with --seg-dir");
  if (req.output.empty()) throw Error(ErrorCode::Usage, "no output file given (-o regions/NAME.json)");
  std::vector<std::string> unpaired;
  const std::vector<RegionCaseFiles> files = list_region_cases(req, &unpaired);
  for (const std::string& u : unpaired) log_warn("case " + u + " has no label map with the same name: left out");
  if (files.empty() && req.dataset_dir.empty())
    throw Error(ErrorCode::Usage,
                "no case found in " + req.seg_dir + " (segmentation and label map with equal file names)");
  if (files.empty())
    throw Error(ErrorCode::Usage, "dataset folder " + req.dataset_dir +
                                      ": no image has a label map of its name in the matching labels*/ folder "
                                      "(imagesTr/a.nii.gz -> labelsTr/a.nii.gz)");

  // 2. fit every case that holds the region's labels
  Pipeline pipeline(req.pipeline);
  std::vector<RegionCase> cases;
  json case_info = json::array(), skipped = json::array();
  for (const std::string& u : unpaired) skipped.push_back({{"name", u}, {"reason", "no label map with the same name"}});
  for (std::size_t n = 0; n < files.size(); ++n) {
    const RegionCaseFiles& f = files[n];
    log_info("[" + std::to_string(n + 1) + "/" + std::to_string(files.size()) + "] " + f.name);
    RegionCase c;
    c.name = f.name;
    c.mask = region_mask(read_label_map(f.labels), req.label_values);
    if (std::none_of(c.mask.voxels.begin(), c.mask.voxels.end(), [](std::uint8_t v) { return v != 0; })) {
      if (req.skip_cases_without_label) {
        log_warn("case " + f.name + ": " + f.labels + " holds none of the region's labels: left out");
        skipped.push_back({{"name", f.name}, {"reason", "none of the label values in " + f.labels}});
        continue;
      }
    }
    NetworkFit fitted;
    if (f.image.empty()) {
      fitted.segmentation = pipeline.segmentation_from_labels(f.seg);
      fitted.fit = pipeline.fit(fitted.segmentation);
    } else {
      fitted = pipeline.segment_and_fit(read_scan(f.image));
    }
    const Segmentation& seg = fitted.segmentation;
    const Fit& fit = fitted.fit;
    for (const std::string& w : fit.warnings) log_warn("case " + f.name + ": " + w);
    c.scanner_to_atlas = fit.scanner_to_atlas;
    json classes = json::array();
    for (int cls : fit.initial.classes_seen) classes.push_back(class_names()[static_cast<std::size_t>(cls)]);
    json info = {{"name", f.name},
                 {"segmentation", seg.source},
                 {"labels", f.labels},
                 {"fit_dice", fit.refined.dice},
                 {"initial_dice", fit.refined.initial_dice},
                 {"orientation", fit.initial.orientation},
                 {"scale", detail::vec3_json(fit.refined.scale)},
                 {"classes_seen", classes},
                 {"warnings", fit.warnings}};
    if (!f.image.empty()) info["image"] = f.image;
    case_info.push_back(info);
    cases.push_back(std::move(c));
  }
  if (cases.empty()) throw Error(ErrorCode::Usage, "no case holds any of the label values of region " + req.name);

  // 3. infer
  InferRegionsResult result = infer_regions(req.name, cases, pipeline.atlas().masks.grid, req.options);
  for (std::size_t n = 0; n < result.cases.size(); ++n) {
    const RegionCaseOutcome& o = result.cases[n];
    case_info[n]["label_ml"] = o.label_ml;
    case_info[n]["fraction_kept"] = o.fraction_kept;
    case_info[n]["fraction_kept_with_margin"] = o.fraction_kept_with_margin;
  }

  // 4. provenance
  json p;
  p["command"] = req.command;
  p["created_utc"] = detail::utc_now();
  p["ctarr_version"] = kVersion;
  p["atlas_id"] = pipeline.atlas().id;
  if (!req.dataset_dir.empty()) {
    p["mode"] = "dataset (network segmentation)";
    p["dataset_dir"] = req.dataset_dir;
    p["model_id"] = pipeline.model_id();
  } else {
    p["mode"] = "label maps";
    p["seg_dir"] = req.seg_dir;
    p["labels_dir"] = req.labels_dir.empty() ? req.seg_dir : req.labels_dir;
  }
  p["label_values"] = req.label_values;
  p["threshold"] = result.threshold;
  p["threshold_requested"] = req.options.threshold;
  if (req.options.min_fraction_kept > 0.0) {
    p["min_fraction_kept"] = req.options.min_fraction_kept;
    p["min_threshold"] = req.options.min_threshold;
    p["threshold_rule"] =
        "the threshold is lowered by 20 % a step (down to min_threshold) while some case keeps less than "
        "min_fraction_kept of its label inside the boxes grown by margin_mm";
    p["thresholds_tried"] = result.thresholds_tried;
    p["kept_target_met"] = result.kept_target_met;
  }
  p["threshold_meaning"] =
      "an atlas voxel is in the region when the mean fraction of it labelled, over the cases whose field of view "
      "covers it, is >= threshold";
  p["min_component_voxels"] = req.options.min_component_voxels;
  p["supersampling"] = req.options.supersampling;
  p["margin_mm"] = req.options.margin_mm;
  p["boxes_are"] = "tight boxes of whole atlas voxels; margin_mm is added on every side at crop time";
  p["components"] = result.components;
  p["dropped_components"] = result.dropped_components;
  p["component_voxels"] = result.component_voxels;
  p["heatmap_max"] = result.heatmap.voxels.empty()
                         ? 0.0f
                         : *std::max_element(result.heatmap.voxels.begin(), result.heatmap.voxels.end());
  p["cases"] = case_info;
  p["skipped_cases"] = skipped;
  double worst = 1.0, worst_margin = 1.0;
  for (const RegionCaseOutcome& o : result.cases) {
    worst = std::min(worst, o.fraction_kept);
    worst_margin = std::min(worst_margin, o.fraction_kept_with_margin);
  }
  p["lowest_fraction_kept"] = worst;
  p["lowest_fraction_kept_with_margin"] = worst_margin;
  if (!req.note.empty()) p["note"] = req.note;
  result.region.provenance_json = detail::json_text(p);

  // 5. write
  save_region(result.region, req.output);
  log_info("wrote " + req.output + ": " + std::to_string(result.region.boxes.size()) + " box(es), " +
           std::to_string(cases.size()) + " cases, threshold " + std::to_string(result.threshold) +
           ", lowest fraction of a case's label kept " + fmt_pct(worst) + " (" + fmt_pct(worst_margin) +
           " with the margin)");
  if (!req.heatmap_output.empty()) {
    write_image(with_frame<Scanner>(result.heatmap), req.heatmap_output);  // files are frame-less
    log_info("wrote " + req.heatmap_output);
  }
  if (req.report) {
    std::vector<LeaveOneOutCase> loo;
    if (cases.size() >= 2)
      loo = leave_one_out(req.name, cases, pipeline.atlas().masks.grid, req.options);
    else
      log_warn("region " + req.name + ": a single case, no leave-one-out in the report");
    const RegionReportPaths paths = region_report_paths(req.output);
    write_region_report(result, loo, paths, &pipeline.atlas().masks);
    log_info("wrote " + paths.markdown + ", " + paths.json + ", " + paths.png);
  }
  return result;
}

}  // namespace ctarr
