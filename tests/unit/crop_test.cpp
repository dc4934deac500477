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
  for (int a = 0; a < 3; ++a) {  // a point grows to 2 x margin along each axis, centred on the point
    EXPECT_NEAR(m.scanner_box.upper.mm[a] - m.scanner_box.lower.mm[a], 4.0, 1e-9) << "axis " << a;
    EXPECT_NEAR(m.scanner_box.lower.mm[a], c.mm[a] - 2.0, 1e-9) << "axis " << a;
    EXPECT_NEAR(m.scanner_box.upper.mm[a], c.mm[a] + 2.0, 1e-9) << "axis " << a;
  }
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

// ---- uncrop_into: the inverse of crop_image / crop_labels --------------------------------------------------------

bool in_range(const Index3& idx, const IndexBox& b) {
  for (int a = 0; a < 3; ++a)
    if (idx[a] < b.start[a] || idx[a] >= b.end[a]) return false;
  return true;
}

// Every voxel of `back` equals `original` inside `inside` and `fill` elsewhere; with `skip_edge`, the outermost
// voxel layer of `inside` is not compared.
void expect_round_trip(const Image<float>& back, const Image<float>& original, const IndexBox& inside, float fill,
                       float tolerance = 0.0f, bool skip_edge = false) {
  IndexBox core = inside;
  if (skip_edge)
    for (int a = 0; a < 3; ++a) {
      ++core.start[a];
      --core.end[a];
    }
  int compared = 0;
  for (std::int64_t k = 0; k < original.grid.size[2]; ++k)
    for (std::int64_t j = 0; j < original.grid.size[1]; ++j)
      for (std::int64_t i = 0; i < original.grid.size[0]; ++i) {
        const Index3 idx{{i, j, k}};
        if (in_range(idx, inside)) {
          if (!in_range(idx, core)) continue;
          ++compared;
          ASSERT_NEAR(back.at(idx), original.at(idx), tolerance) << idx;
        } else {
          ASSERT_EQ(back.at(idx), fill) << idx;
        }
      }
  EXPECT_GT(compared, 8);
}

TEST(Uncrop, PaddedCropOnAnObliqueGridComesBackExactly) {
  const Image<float> scan = index_ramp({11, 9, 8}, oblique_direction(27.0));
  const Point<Scanner> c = scan.grid.centre();
  CropOptions o = no_margin();
  o.pad = true;
  // Leaves the scan on one side: the written range (requested) extends outside the grid.
  const MappedBox m = map_box(box(c.mm - Eigen::Vector3d(4, 4, 4), c.mm + Eigen::Vector3d(40, 4, 4)),
                              Affine<Atlas, Scanner>::identity(), scan.grid, o);
  ASSERT_TRUE(m.was_clipped);
  const Image<float> crop = crop_image(scan, m, o, -5.0f);
  Image<float> back(scan.grid, -1.0f);
  uncrop_into(crop, m.requested, UncropInterpolation::Linear, back);
  expect_round_trip(back, scan, m.clipped, -1.0f);
}

TEST(Uncrop, ClippedLabelCropComesBackExactlyWithFillElsewhere) {
  Image<float> labels = index_ramp({10, 12, 9}, Eigen::Matrix3d::Identity());
  for (std::size_t n = 0; n < labels.voxels.size(); ++n) labels.voxels[n] = static_cast<float>((n * 7) % 5);
  const Point<Scanner> c = labels.grid.centre();
  const MappedBox m = map_box(box(c.mm - Eigen::Vector3d(2, 3, 5), c.mm + Eigen::Vector3d(3, 2, 4)),
                              Affine<Atlas, Scanner>::identity(), labels.grid, no_margin());
  const Image<float> crop = crop_labels(labels, m, no_margin());
  Image<float> back(labels.grid, 0.0f);
  uncrop_into(crop, m.clipped, UncropInterpolation::Nearest, back);
  // fill 0 is also a label value here: compare inside exactly, and outside against 0.
  expect_round_trip(back, labels, m.clipped, 0.0f);
}

TEST(Uncrop, UpsampledLabelCropGoesBackExactlyWithNearestNeighbour) {
  // Spacing 0.8/1.1/2.5 mm resampled to half of it: each fine voxel is nearest to one original voxel, and each
  // original centre lies halfway between two fine voxels that both hold its label.
  Image<float> labels = index_ramp({12, 10, 8}, oblique_direction(12.0));
  for (std::size_t n = 0; n < labels.voxels.size(); ++n) labels.voxels[n] = static_cast<float>((n * 13) % 4);
  const Point<Scanner> c = labels.grid.centre();
  CropOptions o = no_margin();
  const MappedBox m = map_box(box(c.mm - Eigen::Vector3d(3, 3, 3), c.mm + Eigen::Vector3d(3, 3, 3)),
                              Affine<Atlas, Scanner>::identity(), labels.grid, o);
  o.target_spacing_mm = Eigen::Vector3d(0.4, 0.55, 1.25);
  const Image<float> crop = crop_labels(labels, m, o);
  ASSERT_NE(crop.grid.size, subgrid(labels.grid, m.clipped).size);
  Image<float> back(labels.grid, -3.0f);
  uncrop_into(crop, m.clipped, UncropInterpolation::Nearest, back);
  expect_round_trip(back, labels, m.clipped, -3.0f);
}

TEST(Uncrop, ResampledImageOfALinearRampGoesBackLinearly) {
  // A linear function survives linear interpolation both ways (upsampling: no anti-alias blur), except in the
  // outermost voxel layer, where the crop's resampling held the edge value beyond the outer voxel centres.
  Image<float> scan = index_ramp({14, 12, 9}, oblique_direction(40.0));
  for (std::int64_t k = 0; k < scan.grid.size[2]; ++k)
    for (std::int64_t j = 0; j < scan.grid.size[1]; ++j)
      for (std::int64_t i = 0; i < scan.grid.size[0]; ++i) {
        const Eigen::Vector3d p = scan.grid.to_world(Index3{{i, j, k}}).mm;
        scan.at(Index3{{i, j, k}}) = static_cast<float>(2.0 * p.x() - 1.5 * p.y() + 0.5 * p.z());
      }
  const Point<Scanner> c = scan.grid.centre();
  CropOptions o = no_margin();
  const MappedBox m = map_box(box(c.mm - Eigen::Vector3d(4, 4, 5), c.mm + Eigen::Vector3d(4, 4, 5)),
                              Affine<Atlas, Scanner>::identity(), scan.grid, o);
  o.target_spacing_mm = Eigen::Vector3d(0.4, 0.5, 1.2);
  const Image<float> crop = crop_image(scan, m, o, 0.0f);
  Image<float> back(scan.grid, -1024.0f);
  uncrop_into(crop, m.clipped, UncropInterpolation::Linear, back);
  // Values are up to ~60 in magnitude: float rounding stays far below 1e-3.
  expect_round_trip(back, scan, m.clipped, -1024.0f, 1e-3f, true);
}

TEST(Uncrop, RefusesACropWithAnotherDirection) {
  const Image<float> scan = index_ramp({6, 6, 6}, Eigen::Matrix3d::Identity());
  const Image<float> other = index_ramp({3, 3, 3}, oblique_direction(30.0));
  Image<float> canvas(scan.grid, 0.0f);
  const IndexBox box{Index3{{0, 0, 0}}, Index3{{3, 3, 3}}};
  expect_error([&] { uncrop_into(other, box, UncropInterpolation::Nearest, canvas); }, ErrorCode::UnsupportedGeometry,
               {"direction"});
}

}  // namespace
}  // namespace ctarr::test
