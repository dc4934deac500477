#include "commands.hpp"
#include "common.hpp"

#include "ctarr/infer_regions.hpp"

#include <memory>
#include <string>

namespace ctarr::cli {

void register_infer_region(CLI::App& app) {
  auto req = std::make_shared<InferRegionRequest>();
  auto keep_empty = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand(
      "infer-region", "Infer a region (boxes in atlas mm) from labelled cases: fit, average the labels, threshold");
  cmd->add_option("-n,--name", req->name, "Region name")->required();
  cmd->add_option("-l,--label", req->label_values, "Label value forming the region (repeatable)")
      ->required()
      ->allow_extra_args(false);
  auto* dataset = cmd->add_option("--dataset", req->dataset_dir,
                                  "Dataset folder with images*/ and labels*/ sub-folders (equal file names); the "
                                  "network segments the images for the fit")
                      ->check(CLI::ExistingDirectory);
  auto* seg = cmd->add_option("--seg-dir", req->seg_dir,
                              "Segmentations used for the fit, one per case (ctarr 19 classes or TotalSegmentator)")
                  ->check(CLI::ExistingDirectory);
  cmd->add_option("--labels-dir", req->labels_dir,
                  "Label maps holding the region's labels, same stems as in --seg-dir [default: --seg-dir]")
      ->check(CLI::ExistingDirectory)
      ->needs(seg);
  dataset->excludes(seg);
  cmd->add_option("-o,--out", req->output, "Region file to write (regions/NAME.json)")->required();
  cmd->add_option("--threshold", req->options.threshold,
                  "Fraction of the covering cases that must label a voxel for it to be in the region")
      ->capture_default_str();
  cmd->add_option("--min-fraction-kept", req->options.min_fraction_kept,
                  "Lower the threshold while some case keeps less than this fraction of its label inside the boxes "
                  "grown by the margin (0: keep the threshold)")
      ->capture_default_str();
  cmd->add_option("--min-threshold", req->options.min_threshold, "Lowest threshold tried by --min-fraction-kept")
      ->capture_default_str();
  cmd->add_option("--margin", req->options.margin_mm, "Margin stored with the region (added at crop time), mm")
      ->capture_default_str();
  cmd->add_option("--min-component-voxels", req->options.min_component_voxels,
                  "Connected components with fewer atlas voxels are dropped")
      ->capture_default_str();
  cmd->add_option("--supersampling", req->options.supersampling, "Label look-ups per atlas voxel and axis")
      ->capture_default_str();
  cmd->add_option("--heatmap", req->heatmap_output, "Also write the heatmap (atlas grid) to this image file");
  cmd->add_flag("--report", req->report,
                "Also write REGION_report.png (heatmap projections, boxes), REGION_report.json and REGION_report.md "
                "(fraction of each case's label kept, in-sample and leave-one-out) beside the region file");
  cmd->add_option("--note", req->note, "Free text recorded in the provenance (e.g. what the label values mean)");
  cmd->add_flag("--keep-cases-without-label", *keep_empty,
                "Count cases that hold none of the labels (default: leave them out)");
  add_pipeline_options(*cmd, req->pipeline);
  add_turned_passes_option(*cmd, req->pipeline);
  cmd->callback([req, keep_empty, cmd] {
    req->skip_cases_without_label = !*keep_empty;
    req->command = command_line(*cmd);
    run_infer_regions(*req);
  });
}

}  // namespace ctarr::cli
