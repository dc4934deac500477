// ctarr — map atlas boxes into a scan and crop its original voxels.
#include "ctarr/crop.hpp"

#include "ctarr/error.hpp"
#include "ctarr/preprocess.hpp"

#include "parallel.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace ctarr {

namespace {

// Index of the scan axis that runs closest to world z (superior-inferior).
int z_axis(const Grid<Scanner>& grid) {
  int best = 0;
  for (int a = 1; a < 3; ++a)
    if (std::abs(grid.direction(2, a)) > std::abs(grid.direction(2, best))) best = a;
  return best;
}

}  // namespace

MappedBox map_box(const Box<Atlas>& atlas_box, const Affine<Atlas, Scanner>& atlas_to_scanner,
                  const Grid<Scanner>& scan_grid, const CropOptions& options) {
  MappedBox m;
  m.atlas_box = atlas_box;
  const double margin = options.margin_mm.value_or(0.0);
  m.atlas_box.lower.mm.array() -= margin;
  m.atlas_box.upper.mm.array() += margin;
  m.scanner_box = transform_box(atlas_to_scanner, m.atlas_box);

  // Voxels whose centres fall inside the mapped box. The index-space bounding box of the eight corners is exact
  // when the scan axes are parallel to the box (a 90° rotation or flip included); otherwise it contains the box.
  Eigen::Vector3d lo = Eigen::Vector3d::Constant(1e300), hi = Eigen::Vector3d::Constant(-1e300);
  for (int c = 0; c < 8; ++c) {
    Point<Scanner> corner;
    for (int a = 0; a < 3; ++a) corner.mm[a] = ((c >> a) & 1) ? m.scanner_box.upper.mm[a] : m.scanner_box.lower.mm[a];
    const Eigen::Vector3d ci = scan_grid.to_continuous_index(corner).v;
    lo = lo.cwiseMin(ci);
    hi = hi.cwiseMax(ci);
  }
  constexpr double kEps = 1e-6;
  const int z = z_axis(scan_grid);
  for (int a = 0; a < 3; ++a) {
    if (options.z_only && a != z) {
      m.requested.start[a] = 0;
      m.requested.end[a] = scan_grid.size[a];
    } else {
      m.requested.start[a] = static_cast<std::int64_t>(std::ceil(lo[a] - kEps));
      m.requested.end[a] = static_cast<std::int64_t>(std::floor(hi[a] + kEps)) + 1;
    }
    m.clipped.start[a] = std::clamp<std::int64_t>(m.requested.start[a], 0, scan_grid.size[a]);
    m.clipped.end[a] = std::clamp<std::int64_t>(m.requested.end[a], 0, scan_grid.size[a]);
    if (m.clipped.start[a] != m.requested.start[a] || m.clipped.end[a] != m.requested.end[a]) m.was_clipped = true;
  }
  m.misses_scan = m.clipped.empty();
  const std::int64_t req = m.requested.voxels();
  m.fraction_inside = req > 0 ? static_cast<double>(m.clipped.voxels()) / static_cast<double>(req) : 0.0;
  return m;
}

Grid<Scanner> subgrid(const Grid<Scanner>& grid, const IndexBox& range) {
  Grid<Scanner> g = grid;
  for (int a = 0; a < 3; ++a) g.size[a] = range.end[a] - range.start[a];
  g.origin = grid.to_world(range.start).mm;
  return g;
}

template <class T>
void paste_image(const Image<T>& crop, const IndexBox& range, Image<T>& canvas) {
  for (std::int64_t k = 0; k < crop.grid.size[2]; ++k)
    for (std::int64_t j = 0; j < crop.grid.size[1]; ++j)
      for (std::int64_t i = 0; i < crop.grid.size[0]; ++i) {
        const Index3 dst{{range.start[0] + i, range.start[1] + j, range.start[2] + k}};
        if (canvas.grid.contains(dst)) canvas.at(dst) = crop.at(Index3{{i, j, k}});
      }
}

namespace {

template <class T>
Image<T> copy_range(const Image<T>& scan, const IndexBox& range, T pad_value) {
  Image<T> out(subgrid(scan.grid, range), pad_value);
  // Copy row by row from the overlap of range and the scan.
  IndexBox overlap;
  for (int a = 0; a < 3; ++a) {
    overlap.start[a] = std::max<std::int64_t>(range.start[a], 0);
    overlap.end[a] = std::min<std::int64_t>(range.end[a], scan.grid.size[a]);
  }
  if (overlap.empty()) return out;
  const std::int64_t row = overlap.end[0] - overlap.start[0];
  for (std::int64_t k = overlap.start[2]; k < overlap.end[2]; ++k)
    for (std::int64_t j = overlap.start[1]; j < overlap.end[1]; ++j) {
      const T* src = &scan.at(Index3{{overlap.start[0], j, k}});
      T* dst = &out.at(Index3{{overlap.start[0] - range.start[0], j - range.start[1], k - range.start[2]}});
      std::copy(src, src + row, dst);
    }
  return out;
}

// A grid with `spacing` and g's direction, centred on g's physical box and inside it (whole target voxels only),
// so every resampled value is interpolated, never extrapolated.
Grid<Scanner> respaced(const Grid<Scanner>& g, const Eigen::Vector3d& spacing) {
  Grid<Scanner> out;
  out.direction = g.direction;
  out.spacing = spacing;
  for (int a = 0; a < 3; ++a)
    out.size[a] = std::max<std::int64_t>(
        1, static_cast<std::int64_t>(std::floor(static_cast<double>(g.size[a]) * g.spacing[a] / spacing[a] + 1e-6)));
  Eigen::Vector3d half;
  for (int a = 0; a < 3; ++a) half[a] = 0.5 * static_cast<double>(out.size[a] - 1) * spacing[a];
  out.origin = g.centre().mm - g.direction * half;
  return out;
}

}  // namespace

template <class T>
Image<T> crop_image(const Image<T>& scan, const MappedBox& box, const CropOptions& options, T pad_value) {
  Image<T> out = copy_range(scan, options.pad ? box.requested : box.clipped, pad_value);
  if (!options.target_spacing_mm) return out;
  const Grid<Scanner> target = respaced(out.grid, *options.target_spacing_mm);
  if constexpr (std::is_same_v<T, float>) {
    return resample_linear(out, target, pad_value, true);
  } else {
    return resample_nearest(out, target, pad_value);  // label maps: nearest neighbour
  }
}

Image<float> crop_labels(const Image<float>& labels, const MappedBox& box, const CropOptions& options, float pad_value) {
  Image<float> out = copy_range(labels, options.pad ? box.requested : box.clipped, pad_value);
  if (!options.target_spacing_mm) return out;
  return resample_nearest(out, respaced(out.grid, *options.target_spacing_mm), pad_value);
}

void uncrop_into(const Image<float>& crop, const IndexBox& written, UncropInterpolation interpolation,
                 Image<float>& canvas) {
  const Grid<Scanner>& cg = crop.grid;
  if ((cg.direction - canvas.grid.direction).cwiseAbs().maxCoeff() > 1e-4)
    throw Error(ErrorCode::UnsupportedGeometry,
                "the crop's direction differs from the record's input grid: it is not a crop of that scan");
  const Grid<Scanner> sub = subgrid(canvas.grid, written);
  const double tol = 1e-3 * canvas.grid.spacing.minCoeff();
  const bool same_grid = cg.size == sub.size && (cg.origin - sub.origin).norm() < tol &&
                         (cg.spacing - sub.spacing).cwiseAbs().maxCoeff() < 1e-6;
  if (same_grid) {
    paste_image(crop, written, canvas);
    return;
  }
  // canvas index -> crop continuous index: c = m * idx + b
  const Eigen::Matrix3d m = cg.spacing.cwiseInverse().asDiagonal() * cg.direction.transpose() *
                            canvas.grid.direction * canvas.grid.spacing.asDiagonal();
  const Eigen::Vector3d b =
      cg.spacing.cwiseInverse().asDiagonal() * cg.direction.transpose() * (canvas.grid.origin - cg.origin);
  IndexBox range;
  for (int a = 0; a < 3; ++a) {
    range.start[a] = std::max<std::int64_t>(written.start[a], 0);
    range.end[a] = std::min<std::int64_t>(written.end[a], canvas.grid.size[a]);
  }
  if (range.empty()) return;
  const Index3 n = cg.size;
  parallel_for(range.end[2] - range.start[2], [&](std::int64_t dk) {
    const std::int64_t k = range.start[2] + dk;
    for (std::int64_t j = range.start[1]; j < range.end[1]; ++j)
      for (std::int64_t i = range.start[0]; i < range.end[0]; ++i) {
        Eigen::Vector3d c = m * Eigen::Vector3d(static_cast<double>(i), static_cast<double>(j), static_cast<double>(k)) + b;
        for (int a = 0; a < 3; ++a) c[a] = std::clamp(c[a], 0.0, static_cast<double>(n[a] - 1));
        float value;
        if (interpolation == UncropInterpolation::Nearest) {
          Index3 s;
          for (int a = 0; a < 3; ++a) s[a] = static_cast<std::int64_t>(std::floor(c[a] + 0.5));
          value = crop.at(s);
        } else {
          Index3 lo;
          double w[3];
          for (int a = 0; a < 3; ++a) {
            lo[a] = std::min<std::int64_t>(static_cast<std::int64_t>(std::floor(c[a])), std::max<std::int64_t>(n[a] - 2, 0));
            w[a] = n[a] > 1 ? c[a] - static_cast<double>(lo[a]) : 0.0;
          }
          double acc = 0.0;
          for (int corner = 0; corner < 8; ++corner) {
            Index3 s;
            double weight = 1.0;
            for (int a = 0; a < 3; ++a) {
              const bool up = (corner >> a) & 1;
              s[a] = std::min<std::int64_t>(lo[a] + (up ? 1 : 0), n[a] - 1);
              weight *= up ? w[a] : 1.0 - w[a];
            }
            if (weight != 0.0) acc += weight * static_cast<double>(crop.at(s));
          }
          value = static_cast<float>(acc);
        }
        canvas.at(Index3{{i, j, k}}) = value;
      }
  });
}

#define CTARR_INSTANTIATE(T)                                                                      \
  template Image<T> crop_image<T>(const Image<T>&, const MappedBox&, const CropOptions&, T); \
  template void paste_image<T>(const Image<T>&, const IndexBox&, Image<T>&);
CTARR_INSTANTIATE(float)
CTARR_INSTANTIATE(std::uint8_t)
CTARR_INSTANTIATE(std::uint16_t)
#undef CTARR_INSTANTIATE

}  // namespace ctarr
