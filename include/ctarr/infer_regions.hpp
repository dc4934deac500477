// ctarr — regions inferred from labelled cases (the paper's section 3.4): every case is fitted to the atlas, the
// region's labels are carried into the atlas grid and averaged into a heatmap, the heatmap is thresholded and
// every connected component becomes one box (atlas mm).
#pragma once

#include "ctarr/image.hpp"
#include "ctarr/pipeline.hpp"
#include "ctarr/regions.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace ctarr {

// One labelled case, already fitted to the atlas.
struct RegionCase {
  std::string name;                         // case id, e.g. the file stem
  Image<std::uint8_t> mask;                 // 1 inside the region's labels, 0 elsewhere; its grid is the case's
                                            // field of view (voxels outside it do not count in the heatmap)
  Affine<Scanner, Atlas> scanner_to_atlas;  // the case's fit
};

struct InferRegionsOptions {
  double threshold = 0.1;                 // a voxel is in the region when the mean label fraction over the cases
                                          // whose field of view covers it is >= threshold (and > 0)
  double min_fraction_kept = 0.0;         // > 0: while some case keeps less than this fraction of its label inside
                                          // the boxes grown by margin_mm, the threshold is lowered (by 20 % a step,
                                          // down to min_threshold); 0: the threshold is used as given
  double min_threshold = 0.02;            // lowest threshold tried when min_fraction_kept is set
  double margin_mm = 10.0;                // stored as the region's margin, added on every side at crop time
  std::int64_t min_component_voxels = 4;  // smaller connected components are dropped (unless none is larger)
  int supersampling = 3;                  // label look-ups per atlas voxel and axis (area-average of the labels)
};

// How much of one case's label the inferred boxes keep.
struct RegionCaseOutcome {
  std::string name;
  std::int64_t label_voxels = 0;  // voxels of the case's mask
  double label_ml = 0.0;
  double fraction_kept = 0.0;              // of those voxels (centres mapped by the fit), inside the tight boxes
  double fraction_kept_with_margin = 0.0;  // inside the boxes grown by margin_mm (what a crop holds)
};

struct InferRegionsResult {
  Region region;                         // tight boxes (atlas mm, whole atlas voxels) and margin_mm
  Image<float, Atlas> heatmap;           // mean label fraction over the covering cases, on the atlas grid
  Image<std::uint16_t, Atlas> coverage;  // number of cases whose field of view covers each atlas voxel
  std::vector<RegionCaseOutcome> cases;
  double threshold = 0.0;                      // the threshold used (options.threshold unless lowered)
  std::vector<double> thresholds_tried;        // in order, the last one is `threshold`
  bool kept_target_met = true;                 // every case keeps min_fraction_kept (true when that is 0)
  int components = 0;                          // connected components above the threshold (26-neighbourhood)
  int dropped_components = 0;                  // of those, dropped for size
  std::vector<std::int64_t> component_voxels;  // size of every component kept, before merging
};

// Heatmap -> threshold -> connected components -> one box per component -> merge_overlapping (-> a lower threshold
// while a case keeps too little of its label, when options.min_fraction_kept is set). Throws FitFailed when no
// atlas voxel reaches the (lowest) threshold, Usage for invalid options or no cases. The result's provenance_json
// is "{}": run_infer_regions fills it.
InferRegionsResult infer_regions(const std::string& region_name, const std::vector<RegionCase>& cases,
                                 const Grid<Atlas>& atlas_grid, const InferRegionsOptions& options = {});

// Leave-one-out check of how well a region generalises: for every case, the boxes inferred from the other cases
// (same options and threshold rule) and how much of the held-out case's label they keep.
struct LeaveOneOutCase {
  std::string name;
  bool inferred = true;                    // false: nothing in the other cases' heatmap reached the threshold
  double threshold = 0.0;                  // threshold used for the other cases
  std::vector<Box<Atlas>> boxes;           // tight boxes inferred from the other cases (atlas mm)
  std::int64_t label_voxels = 0;           // voxels of the held-out case's mask
  double fraction_kept = 0.0;              // of those (centres mapped by the case's fit), inside the tight boxes
  double fraction_kept_with_margin = 0.0;  // inside the boxes grown by margin_mm (what a crop holds)
};

// Throws Usage for fewer than two cases (and what infer_regions throws for invalid options). Costs about two
// heatmap passes per case.
std::vector<LeaveOneOutCase> leave_one_out(const std::string& region_name, const std::vector<RegionCase>& cases,
                                           const Grid<Atlas>& atlas_grid, const InferRegionsOptions& options = {});

// The files `infer-region --report` writes beside the region file REGION.json: REGION_report.png (coronal and
// sagittal maximum projections of the heatmap, the boxes outlined), REGION_report.json and REGION_report.md (per
// case: fraction of its label kept in-sample and leave-one-out, with and without the margin).
struct RegionReportPaths {
  std::string png, json, markdown;
};
// REGION.json -> REGION_report.{png,json,md} in the same folder.
RegionReportPaths region_report_paths(const std::string& region_file);

// Writes the three report files (atomically, file by file). `loo` may be empty (a single case: no leave-one-out).
// `atlas_masks` (optional, on the heatmap's grid) are outlined in the picture for orientation. Throws
// OutputNotWritable naming the file.
void write_region_report(const InferRegionsResult& result, const std::vector<LeaveOneOutCase>& loo,
                         const RegionReportPaths& paths, const MultiChannelImage<Atlas>* atlas_masks = nullptr);

// 1 where `labels` holds one of `values`, 0 elsewhere (same grid).
Image<std::uint8_t> region_mask(const Image<std::uint16_t>& labels, const std::vector<int>& values);

// ---- the infer-region command -------------------------------------------------------------------------------

// Where the cases come from; exactly one of dataset_dir and seg_dir.
//  * dataset_dir: an MSD / nnU-Net dataset folder, listed as `crop --dataset` lists it (dataset.hpp,
//    find_dataset_cases: every images*/ folder, channel suffixes _NNNN, hidden files skipped), each case with its
//    label map in the matching labels*/ folder; the network segments each case's first channel for the fit.
//  * seg_dir: one segmentation per case (ctarr 19 classes, TotalSegmentator v1/v2 multilabel files, or folders of
//    TotalSegmentator masks), used for the fit; labels_dir (default: seg_dir, i.e. the labels are in the same
//    files) holds the label maps with the region's labels, with equal stems ("a.nii.gz" pairs with "a.nii").
struct InferRegionRequest {
  std::string name;               // region name, stored in the file
  std::vector<int> label_values;  // label values forming the region (in the label maps)
  std::string dataset_dir;
  std::string seg_dir;
  std::string labels_dir;
  std::string output;                    // region JSON to write
  std::string heatmap_output;            // optional: the heatmap (float NIfTI on the atlas grid)
  bool report = false;                   // also write the report files beside `output` (region_report_paths)
  std::string command;                   // recorded in the provenance
  std::string note;                      // recorded in the provenance (e.g. what the label values mean)
  bool skip_cases_without_label = true;  // a case without any of the labels is left out (it cannot show where the
                                         // region is; counting it would dilute the heatmap), with a warning
  InferRegionsOptions options;
  PipelineOptions pipeline;
};

// The files of one case of an infer-region request.
struct RegionCaseFiles {
  std::string name;    // the case id; "<subset>/<id>" where several images*/ folders hold cases
  std::string image;   // dataset_dir: the image the network segments (the case's first channel)
  std::string seg;     // seg_dir: the segmentation the fit uses
  std::string labels;  // the label map holding the region's labels
};

// The cases of `request`, sorted (dataset: by subset, then id); the ids without a label map (or, with seg_dir,
// without a segmentation's label map) go to `unpaired`. Throws UnreadableInput for a missing folder or a dataset
// folder without images*/, Usage for two files of one case.
std::vector<RegionCaseFiles> list_region_cases(const InferRegionRequest& request, std::vector<std::string>* unpaired);

// Reads and fits every case, infers the region, writes it (and the heatmap and the report when asked). Progress
// through log.hpp.
InferRegionsResult run_infer_regions(const InferRegionRequest& request);

}  // namespace ctarr
