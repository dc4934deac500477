// ctarr — frames, points, boxes and affine maps between frames.
//
// World convention: every world coordinate in ctarr is LPS millimetres (ITK's convention: +x towards the
// patient's left, +y posterior, +z superior). RAS appears only inside the io unit. See docs/COORDINATES.md.
//
// Voxel index order is (i, j, k) with i fastest, as in NIfTI and ITK. Tensors are [N, C, k, j, i]; only the
// torch adapters know about that reversal.
#pragma once

#include <Eigen/Dense>
#include <Eigen/Geometry>

#include <array>
#include <cstdint>
#include <ostream>

namespace ctarr {

// Frames are empty tag types: a Point<Atlas> cannot be passed where a Point<Scanner> is expected, and
// composing affines in the wrong order does not compile.
struct Scanner {};  // physical space of the input scan as its header states it, LPS mm
struct Atlas {};    // physical space of the atlas (atlas/atlas.json), LPS mm

template <class Frame>
struct Point {
  Eigen::Vector3d mm = Eigen::Vector3d::Zero();
};

// Axis-aligned box in a frame, millimetres. lower <= upper on every axis for a valid box.
template <class Frame>
struct Box {
  Point<Frame> lower, upper;
  bool valid() const { return (lower.mm.array() <= upper.mm.array()).all(); }
};

// Integer voxel index (i, j, k), i fastest.
struct Index3 {
  std::array<std::int64_t, 3> v{0, 0, 0};
  std::int64_t& operator[](int a) { return v[static_cast<std::size_t>(a)]; }
  std::int64_t operator[](int a) const { return v[static_cast<std::size_t>(a)]; }
  bool operator==(const Index3& o) const { return v == o.v; }
  bool operator!=(const Index3& o) const { return v != o.v; }
};
inline std::ostream& operator<<(std::ostream& os, const Index3& i) {
  return os << '(' << i[0] << ", " << i[1] << ", " << i[2] << ')';
}

// Continuous (fractional) voxel index; voxel centres sit at integer values.
struct ContinuousIndex {
  Eigen::Vector3d v = Eigen::Vector3d::Zero();
};

// Half-open voxel range [start, end) per axis.
struct IndexBox {
  Index3 start, end;
  bool empty() const {
    for (int a = 0; a < 3; ++a)
      if (end[a] <= start[a]) return true;
    return false;
  }
  std::int64_t voxels() const {
    if (empty()) return 0;
    return (end[0] - start[0]) * (end[1] - start[1]) * (end[2] - start[2]);
  }
};

// Affine map from frame From to frame To (millimetres to millimetres).
template <class From, class To>
class Affine {
 public:
  Affine() : m_(Eigen::Affine3d::Identity()) {}
  explicit Affine(const Eigen::Affine3d& m) : m_(m) {}
  static Affine identity() { return Affine(Eigen::Affine3d::Identity()); }
  Point<To> operator()(const Point<From>& p) const { return Point<To>{m_ * p.mm}; }
  Eigen::Vector3d apply_vector(const Eigen::Vector3d& v) const { return m_.linear() * v; }
  Affine<To, From> inverse() const { return Affine<To, From>(m_.inverse()); }
  const Eigen::Affine3d& matrix() const { return m_; }

 private:
  Eigen::Affine3d m_;
};

// (b ∘ a): apply a, then b.
template <class A, class B, class C>
Affine<A, C> operator*(const Affine<B, C>& b, const Affine<A, B>& a) {
  return Affine<A, C>(Eigen::Affine3d(b.matrix() * a.matrix()));
}

// Axis-aligned bounding box (in To) of the image of a box under an affine map.
template <class From, class To>
Box<To> transform_box(const Affine<From, To>& map, const Box<From>& box) {
  Eigen::Vector3d lo = Eigen::Vector3d::Constant(1e300), hi = Eigen::Vector3d::Constant(-1e300);
  for (int c = 0; c < 8; ++c) {
    Eigen::Vector3d corner;
    for (int a = 0; a < 3; ++a) corner[a] = ((c >> a) & 1) ? box.upper.mm[a] : box.lower.mm[a];
    const Eigen::Vector3d q = map.matrix() * corner;
    lo = lo.cwiseMin(q);
    hi = hi.cwiseMax(q);
  }
  return Box<To>{Point<To>{lo}, Point<To>{hi}};
}

}  // namespace ctarr
