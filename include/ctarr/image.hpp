// ctarr — voxel grids and images in a physical frame.
#pragma once

#include "ctarr/error.hpp"
#include "ctarr/geometry.hpp"

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

namespace ctarr {

// A regular voxel grid: world(idx) = origin + direction * diag(spacing) * idx (LPS mm).
// `direction` columns are the unit world directions of the i, j, k axes; they must be orthonormal.
template <class Frame = Scanner>
struct Grid {
  Index3 size;                                              // voxels along i, j, k
  Eigen::Vector3d origin = Eigen::Vector3d::Zero();         // world position of voxel (0,0,0)'s centre
  Eigen::Vector3d spacing = Eigen::Vector3d::Ones();        // mm between voxel centres along i, j, k
  Eigen::Matrix3d direction = Eigen::Matrix3d::Identity();  // columns: world direction of i, j, k

  std::int64_t voxels() const { return size[0] * size[1] * size[2]; }
  Eigen::Vector3d size_vector() const {
    return {static_cast<double>(size[0]), static_cast<double>(size[1]), static_cast<double>(size[2])};
  }

  // Maps continuous index -> world millimetres.
  Eigen::Matrix3d index_to_world_linear() const { return direction * spacing.asDiagonal(); }

  Point<Frame> to_world(const Index3& idx) const {
    return Point<Frame>{origin + index_to_world_linear() * Eigen::Vector3d(static_cast<double>(idx[0]),
                                                                           static_cast<double>(idx[1]),
                                                                           static_cast<double>(idx[2]))};
  }
  Point<Frame> to_world(const ContinuousIndex& ci) const {
    return Point<Frame>{origin + index_to_world_linear() * ci.v};
  }
  ContinuousIndex to_continuous_index(const Point<Frame>& p) const {
    return ContinuousIndex{spacing.cwiseInverse().asDiagonal() * (direction.transpose() * (p.mm - origin))};
  }
  Index3 nearest_index(const Point<Frame>& p) const {
    const ContinuousIndex ci = to_continuous_index(p);
    Index3 r;
    for (int a = 0; a < 3; ++a) r[a] = static_cast<std::int64_t>(std::llround(ci.v[a]));
    return r;
  }
  bool contains(const Index3& idx) const {
    for (int a = 0; a < 3; ++a)
      if (idx[a] < 0 || idx[a] >= size[a]) return false;
    return true;
  }
  std::size_t linear(const Index3& idx) const {
    return static_cast<std::size_t>(idx[0] + size[0] * (idx[1] + size[1] * idx[2]));
  }
  // World-space centre of the grid's voxel box.
  Point<Frame> centre() const {
    ContinuousIndex ci;
    for (int a = 0; a < 3; ++a) ci.v[a] = 0.5 * static_cast<double>(size[a] - 1);
    return to_world(ci);
  }
};

// Throws UnsupportedGeometry (naming `what`) unless the grid is a valid 3D grid: positive sizes, finite positive
// spacing, finite origin, orthonormal direction within `tolerance`.
template <class Frame>
void validate_grid(const Grid<Frame>& grid, const std::string& what, double tolerance = 1e-4);

// A scalar image on a grid; voxels stored i fastest.
template <class T, class Frame = Scanner>
struct Image {
  Grid<Frame> grid;
  std::vector<T> voxels;

  Image() = default;
  explicit Image(const Grid<Frame>& g, T fill = T{})
      : grid(g), voxels(static_cast<std::size_t>(g.voxels()), fill) {}

  T& at(const Index3& idx) { return voxels[grid.linear(idx)]; }
  const T& at(const Index3& idx) const { return voxels[grid.linear(idx)]; }
};

// Channels-first stack of images sharing a grid (soft masks, atlas): data[c * voxels + linear(idx)].
template <class Frame>
struct MultiChannelImage {
  Grid<Frame> grid;
  int channels = 0;
  std::vector<float> data;

  MultiChannelImage() = default;
  MultiChannelImage(const Grid<Frame>& g, int c, float fill = 0.0f)
      : grid(g), channels(c), data(static_cast<std::size_t>(g.voxels()) * static_cast<std::size_t>(c), fill) {}

  float* channel(int c) { return data.data() + static_cast<std::size_t>(c) * static_cast<std::size_t>(grid.voxels()); }
  const float* channel(int c) const {
    return data.data() + static_cast<std::size_t>(c) * static_cast<std::size_t>(grid.voxels());
  }
};

using LabelImage = Image<std::uint8_t, Scanner>;

// The same grid, voxels unchanged, declared in frame To. Frames are tags; this is the one place an image changes
// frame without a transform, for the one reason that holds by construction: image files carry no frame (io reads and
// writes Scanner images, so the atlas file is read as one and declared Atlas; the preview draws axes only).
// Registration is generic over frames (landmarks.hpp, refine.hpp): one scan fitted to another needs no cast.
// Anything else maps through an Affine.
template <class To, class From>
Grid<To> with_frame(const Grid<From>& g) {
  Grid<To> out;
  out.size = g.size;
  out.origin = g.origin;
  out.spacing = g.spacing;
  out.direction = g.direction;
  return out;
}
template <class To, class T, class From>
Image<T, To> with_frame(Image<T, From> image) {
  Image<T, To> out;
  out.grid = with_frame<To>(image.grid);
  out.voxels = std::move(image.voxels);
  return out;
}
template <class To, class From>
MultiChannelImage<To> with_frame(MultiChannelImage<From> image) {
  MultiChannelImage<To> out(with_frame<To>(image.grid), 0);
  out.channels = image.channels;
  out.data = std::move(image.data);
  return out;
}

// ---- inline implementation -------------------------------------------------------------------------------

template <class Frame>
void validate_grid(const Grid<Frame>& grid, const std::string& what, double tolerance) {
  for (int a = 0; a < 3; ++a) {
    if (grid.size[a] <= 0)
      throw Error(ErrorCode::UnsupportedGeometry, what + ": image has no voxels along axis " + std::to_string(a));
    if (!std::isfinite(grid.spacing[a]) || grid.spacing[a] <= 0.0)
      throw Error(ErrorCode::UnsupportedGeometry,
                  what + ": voxel spacing along axis " + std::to_string(a) + " is " + std::to_string(grid.spacing[a]) +
                      " mm; it must be a finite positive number (fix the header)");
    if (!std::isfinite(grid.origin[a]))
      throw Error(ErrorCode::UnsupportedGeometry, what + ": image origin is not finite (fix the header)");
  }
  if (!grid.direction.allFinite())
    throw Error(ErrorCode::UnsupportedGeometry, what + ": direction matrix is not finite (fix the header)");
  const double err = (grid.direction.transpose() * grid.direction - Eigen::Matrix3d::Identity()).cwiseAbs().maxCoeff();
  if (err > tolerance)
    throw Error(ErrorCode::UnsupportedGeometry,
                what + ": direction cosines are not orthonormal (sheared grid, deviation " + std::to_string(err) +
                    "); resample the scan onto an orthogonal grid first");
}

}  // namespace ctarr
