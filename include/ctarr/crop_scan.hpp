// ctarr — one scan cropped in memory: segment (or take a segmentation), fit, plan, cut. No file is written; the
// crops come back as images with their grids, and each region's record as the crop command writes it (without file
// names). The Python API (python/ctarr) calls this; the crop command composes the same units (pipeline.cpp) and
// writes files.
#pragma once

#include "ctarr/crop_plan.hpp"
#include "ctarr/pipeline.hpp"

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace ctarr {

struct RegionCrops {
  std::string region;
  std::vector<Image<float>> crops;  // one per box that meets the scan, in the region's box order; voxels unchanged
                                    // (resampled only with a target spacing), each grid keeps world positions
  CropRecord record;                // as the crop command writes it; its boxes' file names are empty
};

struct ScanCrops {
  Segmentation segmentation;  // what the fit used
  Fit fit;
  std::vector<RegionCrops> regions;  // in the order given
};

// `segmentation`: a label map's (Pipeline::segmentation_from_labels / segmentation_from_label_map) instead of the
// network's, as `crop --seg`. `case_id` goes into the records. `between_steps` runs between the heavy steps (a stop
// check: it may throw). Throws FitFailed when the fit is refused.
ScanCrops crop_scan(Pipeline& pipeline, const Scan& scan, const std::vector<Region>& regions,
                    const CropOptions& options, const std::optional<Segmentation>& segmentation = {},
                    const std::string& case_id = "", const std::function<void()>& between_steps = {});

}  // namespace ctarr
