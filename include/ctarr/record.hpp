// ctarr — the JSON record written beside every crop: enough to find, check and undo it exactly.
#pragma once

#include "ctarr/crop.hpp"
#include "ctarr/dataset.hpp"
#include "ctarr/io.hpp"
#include "ctarr/landmarks.hpp"
#include "ctarr/preprocess.hpp"
#include "ctarr/refine.hpp"
#include "ctarr/turns.hpp"

#include <optional>
#include <string>
#include <vector>

namespace ctarr {

struct CropRecordBox {
  MappedBox box;
  std::string file;             // crop written for this box ("" when it missed the scan), relative to the record
  Grid<Scanner> output_grid;    // geometry of the written crop
  std::vector<std::string> channel_files;  // dataset mode: every channel's crop (file is the first), relative
  std::string label_file;                  // dataset mode: the label map's crop, relative to the record
};

// Kinds of warning a user can act on ("warning_codes" in records and summaries).
namespace warning_code {
inline constexpr const char* kInput = "input";                    // read-time notes (tilt resampled, missing slice)
inline constexpr const char* kHeaderOrientation = "header_orientation";  // content rotated/flipped vs its header
inline constexpr const char* kFewAnatomies = "few_anatomies";     // orientation not searched: translation only
inline constexpr const char* kClassLeftOut = "class_left_out";   // a seen class disagreed with the others: not used
inline constexpr const char* kLowFitDice = "low_fit_dice";        // fit Dice < kLowFitDice
inline constexpr const char* kBoxClipped = "box_clipped";         // a box was clipped at the scan border
inline constexpr const char* kBoxMostlyOutside = "box_mostly_outside";  // fraction inside the scan < 0.5
inline constexpr const char* kRegionMissed = "region_missed_scan";  // no box met the scan
inline constexpr const char* kLabelTouchesFace = "label_touches_box_face";  // dataset mode: a label is cut by a box
}  // namespace warning_code

// The --preview picture (preview.hpp) and where its views lie, in pixels (columns from the left, rows from the top),
// for tools that read it. Display pixels are pixel_mm squares of the scan's canonical grid.
struct PreviewRecord {
  std::string file;  // relative to the record's folder
  double pixel_mm = 0.0;
  int views_top = 0, coronal_left = 0, sagittal_left = 0;
  struct Axial {
    std::string label;
    int left = 0, top = 0;
    std::int64_t display_k = 0;  // the slice of the display grid shown
  };
  std::vector<Axial> axial;
};

// The version of the record's JSON layout ("record_version"): 2 since the record reads back whole
// (parse_crop_record); 1 for records without the field.
constexpr int kCropRecordVersion = 2;

// What a crop did, written beside its crops as JSON (crop_record_json) and read back (parse_crop_record): the one
// record type. The summary rows of a batch (CropSummary) are a view of it (crop_summary).
struct CropRecord {
  std::string case_id;        // batch case ("" for a single crop: the input's stem)
  std::string input;
  std::vector<std::string> channel_inputs;  // dataset mode: every channel cropped with these boxes
  ScanInfo scan_info;
  Grid<Scanner> input_grid;
  Reorientation reorientation;
  std::string region;
  std::string region_provenance_json = "{}";
  CropOptions options;
  std::vector<CropRecordBox> boxes;
  InitialFit initial;
  RefineResult refined;
  std::vector<NetworkPass> network_passes;  // network fits: every pass tried (turns.hpp); empty for --seg
  std::string segmentation_source;
  std::string model_id;
  std::string atlas_id;
  std::vector<std::string> warnings;
  std::vector<std::string> warning_codes;  // distinct warning_code values, in order of first appearance
  std::string label_input;                 // dataset mode: the case's label map ("" when none)
  std::vector<LabelKept> labels;           // dataset mode: per label value, kept by the written boxes
  std::optional<PreviewRecord> preview;    // --preview

  // The voxel range [start, end) of the input grid that box `b`'s crop covers: the whole box with pad, else its part
  // inside the scan.
  const IndexBox& written_range(std::size_t b) const {
    return options.pad ? boxes.at(b).box.requested : boxes.at(b).box.clipped;
  }
};

// The record as JSON: geometry in LPS mm, index boxes [start, end) in the input grid, transforms with their
// frames (scanner -> atlas and back, 4x4, mm), fit, options, provenance, warnings.
std::string crop_record_json(const CropRecord& record);

// ---- summaries ----------------------------------------------------------------------------------------------

// One row of a batch summary (summary.csv / summary.json): a case and region. Rows of cases done by an earlier run
// are read back from their records (parse_crop_summary).
struct CropSummary {
  std::string case_id;
  std::string region;
  std::string input;
  std::string status = "ok";   // "ok", "skipped" (done by an earlier run), "failed"
  std::string error;           // failed: the message
  int error_code = 0;          // failed: the ErrorCode (exit code) of the failure
  std::string record;          // record path ("" when failed before it was written)
  double fit_dice = 0.0;
  std::string orientation;     // orientation found by the search ("identity": the header was right)
  bool orientation_searched = false;
  struct Box {
    IndexBox written;          // [start, end) in the input grid (may extend outside when padded)
    ctarr::Box<Atlas> atlas_box;  // with margin, atlas mm
    double fraction_inside = 0.0;
    std::string file;          // "" when the box missed the scan
  };
  std::vector<Box> boxes;
  std::int64_t input_voxels = 0;
  std::int64_t crop_voxels = 0;  // voxels of the written crops (their own grids)
  double voxel_reduction() const {
    return input_voxels ? static_cast<double>(crop_voxels) / static_cast<double>(input_voxels) : 0.0;
  }
  std::vector<LabelKept> labels;  // dataset mode with labels
  std::vector<std::string> warnings;
  std::vector<std::string> warning_codes;
  // --preview: the picture, relative to the record's folder; for a case whose fit was refused, the path written
  std::string preview;
};

// The summary row of a record as written (status "ok").
CropSummary crop_summary(const CropRecord& record, const std::string& record_path);
// The summary row of a record read back (crop_summary of parse_crop_record; status "ok": the caller sets "skipped").
// A record without a "summary" object (written by an older ctarr) is UnreadableInput, so that resume redoes it.
CropSummary parse_crop_summary(const std::string& path, const std::string& text);

// summary.json: {"cases": [...], "counts": {...}}; summary.csv: one line per case and region (label columns
// "kept_<value>" and "lost_faces_<value>" for every label value met in any row).
std::string summary_json(const std::vector<CropSummary>& rows);
std::string summary_csv(const std::vector<CropSummary>& rows);
// One JSON object per row, as `ctarr crop --json` prints them: the record (when one exists) plus "status", "case",
// "summary"; failed rows: case, region, input, status, error, error_code.
std::string records_json_array(const std::vector<CropSummary>& rows);

// Reads a record back: every field crop_record_json writes (so that writing the result gives the same text), for
// uncrop, resume and the dataset.json of a cropped dataset. Records of an earlier version (no "record_version": 1)
// are read as far as they go; only the input, its grid, the region's name, the options and each box's written range
// and file are required. A newer version is refused. `text` is the record's contents; `path` names it in errors
// (UnreadableInput).
CropRecord parse_crop_record(const std::string& path, const std::string& text);

}  // namespace ctarr
