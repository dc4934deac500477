// ctarr — a crop planned before anything is read or written beyond the scan and its fit: for each region, its boxes
// mapped into the scan with the options in effect, and the warnings the mapping gives. Pure (no files): the crop
// command writes what the plan says (pipeline.cpp), and the preview draws the same boxes (preview.hpp).
#pragma once

#include "ctarr/crop.hpp"
#include "ctarr/fit.hpp"
#include "ctarr/io.hpp"
#include "ctarr/record.hpp"
#include "ctarr/regions.hpp"

#include <string>
#include <vector>

namespace ctarr {

// A warning a user can act on: its warning_code (record.hpp) and the message.
struct PlanWarning {
  std::string code;
  std::string message;
};

// One region's crop of one scan.
struct RegionPlan {
  Region region;
  CropOptions options;                // in effect (effective_crop_options), pad_value resolved
  std::vector<MappedBox> boxes;       // one per region box, in the region's order
  std::vector<PlanWarning> warnings;  // per box in order: missed, clipped, mostly outside; then the region missed

  // Boxes that meet the scan: each gives one crop per channel.
  std::size_t boxes_written() const;
  // The voxel range [start, end) of the scan's grid that box `b`'s crop covers: the whole box with --pad, else its
  // part inside the scan.
  const IndexBox& written_range(std::size_t b) const;
};

struct CropPlan {
  Grid<Scanner> scan_grid;
  Affine<Atlas, Scanner> atlas_to_scanner;  // the fit's inverse
  std::vector<RegionPlan> regions;          // in the order given
};

// The options a region is cropped with: `requested`, with the region's own margin where the request gives none.
// The one place this rule lives (the crop, its record, the preview and resume all take it from here).
CropOptions effective_crop_options(const CropOptions& requested, const Region& region);

// Maps every box of every region into `scan_grid` through the inverse of `scanner_to_atlas`. Padding takes
// requested.pad_value, else `scan_minimum` (the scan's lowest voxel value, e.g. air).
CropPlan plan_crop(const Grid<Scanner>& scan_grid, const Affine<Scanner, Atlas>& scanner_to_atlas,
                   const std::vector<Region>& regions, const CropOptions& requested, float scan_minimum);
// The same for a scan in memory: its grid, and its lowest voxel value (0 for an empty image).
CropPlan plan_crop(const Image<float>& scan, const Affine<Scanner, Atlas>& scanner_to_atlas,
                   const std::vector<Region>& regions, const CropOptions& requested);
// The same for a scan as read: its lowest value from read_scan's check (ScanInfo::intensities) where it has one.
CropPlan plan_crop(const Scan& scan, const Affine<Scanner, Atlas>& scanner_to_atlas,
                   const std::vector<Region>& regions, const CropOptions& requested);

// The part of `grid`'s space that the voxels [range.start, range.end) cover, their outer faces included: the
// axis-aligned bounding box in scanner mm (exact for grids whose axes are the world's).
Box<Scanner> voxel_range_extent(const Grid<Scanner>& grid, const IndexBox& range);

// A crop record before its boxes are written: the case and its inputs, the scan, the fit, the region's plan
// (options), the model and atlas, and the warnings so far (the input's, the fit's, then the plan's). The crop command
// adds each box and its files as it writes them.
struct RecordContext {
  std::string case_id;
  std::vector<std::string> inputs;  // the case's channels; inputs.front() is the scan
  const Scan* scan = nullptr;
  const Segmentation* segmentation = nullptr;
  const Fit* fit = nullptr;
  std::string model_id;  // "none (--seg)" for a given segmentation
  std::string atlas_id;
};
CropRecord start_crop_record(const RecordContext& context, const RegionPlan& plan);

// Appends `message` and, when not there yet, `code` (the record's and the summary's distinct codes).
void add_warning(std::vector<std::string>& warnings, std::vector<std::string>& codes, const std::string& code,
                 const std::string& message);

}  // namespace ctarr
