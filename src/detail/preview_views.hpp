// ctarr — what the previews draw, computed per view (private to preview.cpp): projections of a volume on the
// canonical grid, resampled to square display pixels; the segmentation's class per ray; the fitted atlas' mean masks
// per ray, interpolated so that their 0.5 lines are smooth.
#pragma once

#include "ctarr/classes.hpp"
#include "ctarr/image.hpp"
#include "ctarr/preprocess.hpp"
#include "parallel.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <vector>

namespace ctarr::detail {

// ---- projections ----------------------------------------------------------------------------------------------
// Projections of a volume along the canonical j (coronal) and i (sagittal) axes, at the volume's own resolution.
struct NativeProjections {
  Reorientation reorientation;
  Grid<Scanner> canonical;      // the volume's grid, canonical axis order
  std::vector<float> coronal;   // [k][i]
  std::vector<float> sagittal;  // [k][j]
};

// `value` maps a voxel to the projected quantity; `max` selects a maximum instead of a mean.
template <class T, class Frame, class Value>
NativeProjections project_native(const Image<T, Frame>& volume, bool max, const Value& value) {
  NativeProjections p;
  const Grid<Scanner> grid = with_frame<Scanner>(volume.grid);  // the views need axes only, not the frame
  p.reorientation = canonical_reorientation(grid.direction);
  p.canonical = reorient_grid(grid, p.reorientation);
  const Index3 n = p.canonical.size;
  const auto ni = static_cast<std::size_t>(n[0]), nj = static_cast<std::size_t>(n[1]);
  const float init = max ? -std::numeric_limits<float>::infinity() : 0.0f;
  p.coronal.assign(ni * static_cast<std::size_t>(n[2]), init);
  p.sagittal.assign(nj * static_cast<std::size_t>(n[2]), init);
  parallel_for(n[2], [&](std::int64_t k) {
    float* cor = p.coronal.data() + ni * static_cast<std::size_t>(k);
    float* sag = p.sagittal.data() + nj * static_cast<std::size_t>(k);
    for (std::int64_t j = 0; j < n[1]; ++j)
      for (std::int64_t i = 0; i < n[0]; ++i) {
        const float v =
            value(volume.voxels[grid.linear(reoriented_to_original(Index3{{i, j, k}}, grid, p.reorientation))]);
        float& c = cor[i];
        float& s = sag[j];
        if (max) {
          c = std::max(c, v);
          s = std::max(s, v);
        } else {
          c += v;
          s += v;
        }
      }
    if (!max) {
      for (std::size_t i = 0; i < ni; ++i) cor[i] /= static_cast<float>(n[1]);
      for (std::size_t j = 0; j < nj; ++j) sag[j] /= static_cast<float>(n[0]);
    }
  });
  return p;
}

// Resamples a [rows][columns] picture with pixel size (sx, sz) mm onto square pixels of side s sharing its first
// corner: box filter (area average of bilinear samples) when shrinking, bilinear when enlarging. Output rows
// follow the input's (k upwards).
std::vector<float> resample_view(const std::vector<float>& in, std::int64_t w, std::int64_t h, double sx, double sz,
                                 std::int64_t out_w, std::int64_t out_h, double s);

// Views on the display grid: values per display pixel, [k][i] and [k][j], k upwards.
struct DisplayViews {
  Grid<Scanner> grid;  // canonical, isotropic
  std::vector<float> coronal, sagittal;
};

template <class T, class Frame, class Value>
DisplayViews display_views(const Image<T, Frame>& volume, double pixel_mm, bool max, const Value& value) {
  const NativeProjections p = project_native(volume, max, value);
  DisplayViews d;
  d.grid = isotropic_grid(p.canonical, pixel_mm);
  const Index3 n = p.canonical.size, m = d.grid.size;
  const Eigen::Vector3d& sp = p.canonical.spacing;
  d.coronal = resample_view(p.coronal, n[0], n[2], sp[0], sp[2], m[0], m[2], pixel_mm);
  d.sagittal = resample_view(p.sagittal, n[1], n[2], sp[1], sp[2], m[1], m[2], pixel_mm);
  return d;
}

// ---- the segmentation, per view ---------------------------------------------------------------------------------
// The soft masks on their canonical grid, one class per voxel: the most likely where it reaches 0.5, else -1.
struct ClassVolume {
  Grid<Scanner> grid;  // canonical
  std::vector<std::int8_t> cls;
  std::int8_t at_world(const Point<Scanner>& p) const {
    const Index3 q = grid.nearest_index(p);
    return grid.contains(q) ? cls[grid.linear(q)] : std::int8_t{-1};
  }
};

ClassVolume class_volume(const MultiChannelImage<Scanner>& seg);

// Per pixel of the class volume's coronal [k][i] and sagittal [k][j] projections: the class most voxels along the
// ray belong to (-1: none), and the classes present: those with at least kPresentMinMm3 (a few stray voxels of a
// network's segmentation are filled but not named in the legend).
constexpr double kPresentMinMm3 = 1000.0;

struct ClassViews {
  std::vector<std::int8_t> coronal, sagittal;
  std::set<int> present;
};

ClassViews class_views(const ClassVolume& vol);

// ---- the atlas, per view --------------------------------------------------------------------------------------
// Trilinear look-ups of the atlas' mean masks at scanner points mapped by the fit.
struct AtlasSampler {
  const MultiChannelImage<Atlas>& masks;
  Eigen::Matrix3d a;  // scanner mm -> atlas continuous index: a * x + b
  Eigen::Vector3d b;

  AtlasSampler(const MultiChannelImage<Atlas>& m, const Affine<Scanner, Atlas>& scanner_to_atlas) : masks(m) {
    const Eigen::Matrix3d to_index = m.grid.spacing.cwiseInverse().asDiagonal() * m.grid.direction.transpose();
    a = to_index * scanner_to_atlas.matrix().linear();
    b = to_index * (scanner_to_atlas.matrix().translation() - m.grid.origin);
  }
  // The 8 neighbours and weights of scanner point x; false outside the atlas grid.
  bool corners(const Eigen::Vector3d& x, std::array<std::size_t, 8>& at, std::array<double, 8>& w) const {
    const Eigen::Vector3d ci = a * x + b;
    const Index3& n = masks.grid.size;
    std::array<std::int64_t, 3> i0{};
    std::array<double, 3> f{};
    for (int ax = 0; ax < 3; ++ax) {
      if (!(ci[ax] > -0.5 && ci[ax] < static_cast<double>(n[ax]) - 0.5)) return false;
      const double c = std::clamp(ci[ax], 0.0, static_cast<double>(n[ax] - 1));
      i0[static_cast<std::size_t>(ax)] = std::min<std::int64_t>(static_cast<std::int64_t>(c), std::max<std::int64_t>(n[ax] - 2, 0));
      f[static_cast<std::size_t>(ax)] = std::clamp(c - static_cast<double>(i0[static_cast<std::size_t>(ax)]), 0.0, 1.0);
    }
    for (int q = 0; q < 8; ++q) {
      Index3 idx;
      double weight = 1.0;
      for (int ax = 0; ax < 3; ++ax) {
        const bool up = (q >> ax) & 1;
        const auto axs = static_cast<std::size_t>(ax);
        idx[ax] = std::min(i0[axs] + (up ? 1 : 0), n[ax] - 1);
        weight *= up ? f[axs] : 1.0 - f[axs];
      }
      at[static_cast<std::size_t>(q)] = masks.grid.linear(idx);
      w[static_cast<std::size_t>(q)] = weight;
    }
    return true;
  }
  float value(int c, const std::array<std::size_t, 8>& at, const std::array<double, 8>& w) const {
    const float* ch = masks.channel(c);
    double v = 0.0;
    for (std::size_t q = 0; q < 8; ++q) v += w[q] * ch[at[q]];
    return static_cast<float>(v);
  }
};

std::vector<int> outlined_classes(const MultiChannelImage<Atlas>& atlas, const std::vector<int>& wanted);

// Per class, the maximum along each ray of the mapped mean mask, on the display pixels: sampled on a grid no finer
// than the atlas (a finer one shows nothing new of a 3 mm atlas), then interpolated bilinearly onto the display
// pixels, so that the 0.5 line is smooth at the display's resolution.
struct AtlasViews {
  std::vector<int> classes;
  std::vector<std::vector<float>> coronal, sagittal;  // [class][k][i], [class][k][j] on the display grid
};

AtlasViews atlas_views(const Grid<Scanner>& display, const MultiChannelImage<Atlas>& atlas,
                       const Affine<Scanner, Atlas>& scanner_to_atlas, const std::vector<int>& classes);

// Pixels of a [rows][w] field at or above 0.5 with a 4-neighbour below it (inside the view).
template <class Put>
void trace_half_line(const std::vector<float>& field, std::int64_t w, std::int64_t h, const Put& put) {
  auto at = [&](std::int64_t x, std::int64_t y) { return field[static_cast<std::size_t>(y * w + x)]; };
  for (std::int64_t y = 0; y < h; ++y)
    for (std::int64_t x = 0; x < w; ++x) {
      if (at(x, y) < 0.5f) continue;
      const bool edge = (x > 0 && at(x - 1, y) < 0.5f) || (x + 1 < w && at(x + 1, y) < 0.5f) ||
                        (y > 0 && at(x, y - 1) < 0.5f) || (y + 1 < h && at(x, y + 1) < 0.5f);
      if (edge) put(x, y);
    }
}

}  // namespace ctarr::detail
