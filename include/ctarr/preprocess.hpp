// ctarr — canonical orientation, resampling and intensity windows.
#pragma once

#include "ctarr/classes.hpp"
#include "ctarr/image.hpp"

#include <array>
#include <utility>
#include <vector>

namespace ctarr {

// Axis permutation and flips that bring a grid closest to the identity direction (LPS-aligned axes).
// Canonical axis a reads input axis `axis[a]`, reversed when `flip[a]`. No interpolation is involved:
// every voxel keeps its world position.
struct Reorientation {
  std::array<int, 3> axis{0, 1, 2};
  std::array<bool, 3> flip{false, false, false};
  bool is_identity() const { return axis == std::array<int, 3>{0, 1, 2} && flip == std::array<bool, 3>{false, false, false}; }
};

// The reorientation that makes `grid`'s direction closest to identity.
Reorientation canonical_reorientation(const Eigen::Matrix3d& direction);

// Grid of the reoriented image (same world positions, permuted/flipped index axes).
Grid<Scanner> reorient_grid(const Grid<Scanner>& grid, const Reorientation& r);

// Reorients voxels; out.grid == reorient_grid(in.grid, r).
template <class T>
Image<T> reorient(const Image<T>& image, const Reorientation& r);

// Index in the reoriented grid -> index in the original grid.
Index3 reoriented_to_original(const Index3& idx, const Grid<Scanner>& original, const Reorientation& r);

// A grid with `spacing_mm` isotropic voxels covering `grid`'s extent, same direction and same first-voxel
// corner (the boundary of voxel 0's cell).
Grid<Scanner> isotropic_grid(const Grid<Scanner>& grid, double spacing_mm);

// Trilinear resampling of `image` onto `target` (same frame). When a target voxel is coarser than the source
// along an axis, the source is first smoothed with a Gaussian (anti-aliasing). Outside the source: `outside`.
// When target's axes run along source axes (a signed permutation, e.g. a scan -> its canonical isotropic grid), this
// takes a separable path (blur and interpolation folded into three 1D passes that shrink one axis each), equal to
// resample_linear_general up to float rounding.
Image<float> resample_linear(const Image<float>& image, const Grid<Scanner>& target, float outside, bool antialias = true);
// The general path (any pair of directions): blur the full-resolution copy, then trilinear interpolation.
Image<float> resample_linear_general(const Image<float>& image, const Grid<Scanner>& target, float outside,
                                     bool antialias = true);

// Nearest-neighbour resampling (labels).
template <class T>
Image<T> resample_nearest(const Image<T>& image, const Grid<Scanner>& target, T outside);

// One intensity window [lower, upper] HU, scaled to [0, 1] and clamped (WindowHU, classes.hpp). The default
// windows and spacing are the contract's (share/classes.json).
inline const std::vector<WindowHU>& default_windows_hu() { return contract_windows_hu(); }

// Fraction of each label 1..classes inside every `target` voxel (area-weighted downsampling of a label map; each
// source voxel counts towards the target voxel its centre falls in). Channel c holds label c + 1. A target voxel
// that no source centre falls in (the source is coarser along some axis) takes the label of the source voxel its
// own centre lies in; target voxels outside the label map are 0.
MultiChannelImage<Scanner> label_fractions(const Image<std::uint8_t>& labels, const Grid<Scanner>& target, int classes);

struct PreprocessOptions {
  double spacing_mm = contract_spacing_mm();
  std::vector<WindowHU> windows_hu = default_windows_hu();
};

struct PreprocessResult {
  Reorientation reorientation;         // input grid -> canonical grid
  Grid<Scanner> canonical_grid;        // input voxels, canonical axis order
  MultiChannelImage<Scanner> network_input;  // one channel per window, on the isotropic canonical grid
};

// Input scan (HU) -> canonical orientation -> isotropic resampling -> windows.
PreprocessResult preprocess(const Image<float>& scan_hu, const PreprocessOptions& options = {});

}  // namespace ctarr
