#include "ctarr/crop.hpp"

#include "support/support.hpp"

#include <gtest/gtest.h>

namespace ctarr::test {
namespace {

Box<Atlas> box(const Eigen::Vector3d& lo, const Eigen::Vector3d& hi) { return Box<Atlas>{{lo}, {hi}}; }

CropOptions no_margin() {
  CropOptions o;
  o.margin_mm = 0.0;
  return o;
}

template <class T>
void expect_world_positions_kept(const Image<T>& crop, const Image<T>& scan) {
  for (std::int64_t k = 0; k < crop.grid.size[2]; ++k)
    for (std::int64_t j = 0; j < crop.grid.size[1]; ++j)
      for (std::int64_t i = 0; i < crop.grid.size[0]; ++i) {
        const Index3 idx{{i, j, k}};
        const Point<Scanner> p = crop.grid.to_world(idx);
        const Index3 s = scan.grid.nearest_index(p);
        ASSERT_TRUE(scan.grid.contains(s)) << idx;
        EXPECT_LT((scan.grid.to_world(s).mm - p.mm).norm(), 1e-9) << idx;
        EXPECT_EQ(crop.at(idx), scan.at(s)) << idx;
      }
}

TEST(Crop, EveryCroppedVoxelKeepsItsWorldPositionOnAnObliqueGrid) {
  const Image<float> scan = index_ramp({12, 10, 8}, oblique_direction(20.0));
  const Point<Scanner> c = scan.grid.centre();
  const Box<Atlas> b = box(c.mm - Eigen::Vector3d(3, 2, 4), c.mm + Eigen::Vector3d(3, 4, 4));
  const MappedBox m = map_box(b, Affine<Atlas, Scanner>::identity(), scan.grid, no_margin());
  ASSERT_FALSE(m.misses_scan);
  EXPECT_FALSE(m.was_clipped);
  const Image<float> crop = crop_image(scan, m, no_margin(), -1024.0f);
  EXPECT_GT(crop.grid.voxels(), 8);
  expect_world_positions_kept(crop, scan);
}

TEST(Crop, AxisAlignedBoxSelectsExactlyTheVoxelsWhoseCentresAreInside) {
  Image<float> scan = index_ramp({10, 10, 10}, Eigen::Matrix3d::Identity());
  // voxel centres along x: -12.5 + 0.8 i. Box [-10.0, -8.0] holds i = 4 (-9.3) and 5 (-8.5), not 3 (-10.1).
  const Eigen::Vector3d lo(-10.0, 30.0, 7.25), hi(-8.0, 31.1, 12.25);
  const MappedBox m = map_box(box(lo, hi), Affine<Atlas, Scanner>::identity(), scan.grid, no_margin());
  EXPECT_EQ(m.clipped.start, (Index3{{4, 0, 0}}));
  EXPECT_EQ(m.clipped.end, (Index3{{6, 2, 3}}));
}

TEST(Crop, AfterA90DegreeRotationTheBoxStaysAxisAlignedInIndexSpace) {
  const Image<float> scan = index_ramp({12, 10, 8}, Eigen::Matrix3d::Identity());
  // Atlas -> scanner: 90° about z, then a shift.
  Eigen::Affine3d t = Eigen::Affine3d::Identity();
  t.linear() = Eigen::AngleAxisd(3.14159265358979323846 / 2, Eigen::Vector3d::UnitZ()).toRotationMatrix();
  t.translation() = scan.grid.centre().mm;
  const Affine<Atlas, Scanner> a2s(t);
  const MappedBox m = map_box(box({-2, -3, -4}, {2, 3, 4}), a2s, scan.grid, no_margin());
  // The atlas x extent (4 mm) becomes the scanner y extent: y spacing 1.1 -> 4 voxels; x spacing 0.8, 6 mm -> 8.
  EXPECT_EQ(m.clipped.end[0] - m.clipped.start[0], 8);
  EXPECT_EQ(m.clipped.end[1] - m.clipped.start[1], 4);
  const Image<float> crop = crop_image(scan, m, no_margin(), 0.0f);
  expect_world_positions_kept(crop, scan);
}

TEST(Crop, BoxLeavingTheScanIsClippedOrPadded) {
  const Image<float> scan = index_ramp({6, 6, 6}, Eigen::Matrix3d::Identity());
  const Point<Scanner> first = scan.grid.to_world(Index3{{0, 0, 0}});
  const Box<Atlas> b = box(first.mm - Eigen::Vector3d(2.0, 0.1, 0.1), first.mm + Eigen::Vector3d(1.0, 1.0, 1.0));
  CropOptions o = no_margin();
  const MappedBox m = map_box(b, Affine<Atlas, Scanner>::identity(), scan.grid, o);
  EXPECT_TRUE(m.was_clipped);
  EXPECT_EQ(m.requested.start[0], -2);
  EXPECT_EQ(m.clipped.start[0], 0);
  EXPECT_LT(m.fraction_inside, 1.0);

  o.pad = true;
  const Image<float> padded = crop_image(scan, m, o, -7.0f);
  EXPECT_EQ(padded.grid.size[0], m.requested.end[0] - m.requested.start[0]);
  EXPECT_EQ(padded.at(Index3{{0, 0, 0}}), -7.0f);
  EXPECT_EQ(padded.at(Index3{{2, 0, 0}}), scan.at(Index3{{0, 0, 0}}));
  EXPECT_LT((padded.grid.to_world(Index3{{2, 0, 0}}).mm - first.mm).norm(), 1e-9);
}

TEST(Crop, BoxMissingTheScanIsReported) {
  const Image<float> scan = index_ramp({6, 6, 6}, Eigen::Matrix3d::Identity());
  const MappedBox m =
      map_box(box({500, 500, 500}, {600, 600, 600}), Affine<Atlas, Scanner>::identity(), scan.grid, no_margin());
  EXPECT_TRUE(m.misses_scan);
  EXPECT_EQ(m.fraction_inside, 0.0);
}

TEST(Crop, MarginGrowsTheBoxOnEverySide) {
  const Image<float> scan = index_ramp({40, 40, 40}, Eigen::Matrix3d::Identity());
  const Point<Scanner> c = scan.grid.centre();
  CropOptions o;
  o.margin_mm = 2.0;
  const MappedBox m = map_box(box(c.mm, c.mm), Affine<Atlas, Scanner>::identity(), scan.grid, o);
  EXPECT_NEAR(m.scanner_box.upper.mm.x() - m.scanner_box.lower.mm.x(), 4.0, 1e-9);
}

TEST(Crop, ZOnlyKeepsTheWholeSliceInPlane) {
  const Image<float> scan = index_ramp({10, 9, 20}, Eigen::Matrix3d::Identity());
  const Point<Scanner> c = scan.grid.centre();
  CropOptions o = no_margin();
  o.z_only = true;
  const MappedBox m = map_box(box(c.mm - Eigen::Vector3d(1, 1, 5), c.mm + Eigen::Vector3d(1, 1, 5)),
                              Affine<Atlas, Scanner>::identity(), scan.grid, o);
  EXPECT_EQ(m.clipped.start[0], 0);
  EXPECT_EQ(m.clipped.end[0], 10);
  EXPECT_EQ(m.clipped.end[1], 9);
  EXPECT_EQ(m.clipped.end[2] - m.clipped.start[2], 4);  // 10 mm / 2.5 mm
}

TEST(Crop, TargetSpacingResamplesOverTheSameBox) {
  Image<float> scan = index_ramp({20, 20, 20}, oblique_direction(15.0));
  std::fill(scan.voxels.begin(), scan.voxels.end(), 5.0f);
  CropOptions o = no_margin();
  const Point<Scanner> c = scan.grid.centre();
  const MappedBox m = map_box(box(c.mm - Eigen::Vector3d::Constant(4), c.mm + Eigen::Vector3d::Constant(4)),
                              Affine<Atlas, Scanner>::identity(), scan.grid, o);
  const Image<float> plain = crop_image(scan, m, o, 0.0f);
  o.target_spacing_mm = Eigen::Vector3d(2.0, 2.0, 2.0);
  const Image<float> res = crop_image(scan, m, o, 0.0f);
  EXPECT_EQ(res.grid.spacing, Eigen::Vector3d(2.0, 2.0, 2.0));
  EXPECT_LT((plain.grid.centre().mm - res.grid.centre().mm).norm(), 1e-9);  // same box centre
  for (float v : res.voxels) EXPECT_NEAR(v, 5.0f, 1e-4);
}

TEST(Uncrop, PasteRestoresTheOriginalInsideTheBox) {
  const Image<std::uint16_t> labels = [] {
    Image<float> f = index_ramp({9, 8, 7}, oblique_direction(33.0));
    Image<std::uint16_t> l(f.grid);
    for (std::size_t n = 0; n < l.voxels.size(); ++n) l.voxels[n] = static_cast<std::uint16_t>(n % 7);
    return l;
  }();
  const Point<Scanner> c = labels.grid.centre();
  CropOptions o = no_margin();
  o.pad = true;
  const MappedBox m = map_box(Box<Atlas>{{c.mm - Eigen::Vector3d(3, 3, 3)}, {c.mm + Eigen::Vector3d(30, 3, 3)}},
                              Affine<Atlas, Scanner>::identity(), labels.grid, o);
  const Image<std::uint16_t> crop = crop_image<std::uint16_t>(labels, m, o, 0);
  Image<std::uint16_t> canvas(labels.grid, 99);
  paste_image(crop, m.requested, canvas);
  for (std::int64_t k = 0; k < labels.grid.size[2]; ++k)
    for (std::int64_t j = 0; j < labels.grid.size[1]; ++j)
      for (std::int64_t i = 0; i < labels.grid.size[0]; ++i) {
        const Index3 idx{{i, j, k}};
        bool inside = true;
        for (int a = 0; a < 3; ++a) inside = inside && idx[a] >= m.clipped.start[a] && idx[a] < m.clipped.end[a];
        EXPECT_EQ(canvas.at(idx), inside ? labels.at(idx) : 99) << idx;
      }
}

}  // namespace
}  // namespace ctarr::test
