// ctarr — map atlas boxes into a scan and crop its original voxels.
#pragma once

#include "ctarr/image.hpp"
#include "ctarr/regions.hpp"

#include <optional>
#include <string>
#include <vector>

namespace ctarr {

struct CropOptions {
  std::optional<double> margin_mm;                   // overrides the region's margin (atlas mm, every side)
  bool pad = false;                                  // pad to the whole box instead of clipping to the scan
  std::optional<float> pad_value;                    // value for padding; unset: the scan's minimum
  std::optional<Eigen::Vector3d> target_spacing_mm;  // resample the crop (linear) when set
  bool z_only = false;                               // crop along the scan's superior-inferior axis only
};

// One atlas box mapped into the scan's voxel grid.
struct MappedBox {
  Box<Atlas> atlas_box;     // with margin
  Box<Scanner> scanner_box; // bounding box of the mapped atlas box, scanner mm
  IndexBox requested;       // [start, end) voxel range of the whole box (may extend outside the scan)
  IndexBox clipped;         // requested ∩ scan
  bool was_clipped = false;
  bool misses_scan = false;
  double fraction_inside = 0.0;  // clipped voxels / requested voxels
};

// Grows `atlas_box` (atlas mm) by options.margin_mm (atlas mm, every side; none when unset), maps its corners
// into scanner mm and then into `scan_grid`'s continuous index: the requested range holds the voxels whose centres
// lie inside (exact when the scan axes are parallel to the mapped box, a superset otherwise). options.z_only keeps
// whole slices along the scan's superior-inferior axis.
MappedBox map_box(const Box<Atlas>& atlas_box, const Affine<Atlas, Scanner>& atlas_to_scanner,
                  const Grid<Scanner>& scan_grid, const CropOptions& options);

// Grid of the voxels [range.start, range.end) of `grid` (may extend outside it): same direction and spacing,
// origin at the world position of range.start. Every voxel keeps its world position.
Grid<Scanner> subgrid(const Grid<Scanner>& grid, const IndexBox& range);

// Crops the original voxels (no interpolation); pads when options.pad, resamples when target spacing is set.
template <class T>
Image<T> crop_image(const Image<T>& scan, const MappedBox& box, const CropOptions& options, T pad_value);

// Pastes a crop back into a grid (inverse of crop_image without resampling); voxels outside the crop keep `canvas`.
template <class T>
void paste_image(const Image<T>& crop, const IndexBox& range, Image<T>& canvas);

// Crops a label map: like crop_image (original voxels, pad with `pad_value`), but a target spacing resamples with
// nearest neighbour, so every value stays a label.
Image<float> crop_labels(const Image<float>& labels, const MappedBox& box, const CropOptions& options, float pad_value = 0.0f);

// How a resampled crop goes back onto its input grid.
enum class UncropInterpolation { Nearest, Linear };

// Inverse of crop_image / crop_labels: writes the crop into the voxels `written` (its index range in canvas.grid,
// the record's index_box_written) of `canvas`, leaving the others alone. A crop on exactly that sub-grid (no
// --target-spacing) is copied voxel for voxel, so crop followed by uncrop gives back the input exactly inside the
// box. A resampled crop is sampled at each canvas voxel centre inside `written` (nearest neighbour: labels; linear:
// images); centres beyond the crop's outermost voxel centres take the nearest edge value. Throws
// UnsupportedGeometry when the crop's direction differs from the canvas's (not a crop of that grid).
void uncrop_into(const Image<float>& crop, const IndexBox& written, UncropInterpolation interpolation,
                 Image<float>& canvas);

}  // namespace ctarr
