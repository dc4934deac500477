#include "ctarr/geometry.hpp"
#include "ctarr/image.hpp"

#include "support/support.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <type_traits>

namespace ctarr::test {
namespace {

TEST(Grid, IndexToWorldToIndexRoundTripsOnObliqueGrids) {
  for (double deg : {0.0, 7.0, 33.0, 90.0, 151.0}) {
    const Image<float> img = index_ramp({7, 6, 5}, oblique_direction(deg));
    for (std::int64_t n = 0; n < img.grid.voxels(); ++n) {
      const Index3 idx{{n % 7, (n / 7) % 6, n / 42}};
      EXPECT_EQ(img.grid.nearest_index(img.grid.to_world(idx)), idx) << deg;
      const ContinuousIndex ci = img.grid.to_continuous_index(img.grid.to_world(idx));
      for (int a = 0; a < 3; ++a) EXPECT_NEAR(ci.v[a], static_cast<double>(idx[a]), 1e-9);
    }
  }
}

TEST(Grid, WorldPositionFollowsOriginDirectionAndSpacing) {
  const Image<float> img = index_ramp({3, 3, 3}, oblique_direction(25.0));
  const Eigen::Vector3d expected =
      img.grid.origin + img.grid.direction.col(0) * 0.8 * 2 + img.grid.direction.col(2) * 2.5 * 1;
  EXPECT_LT((img.grid.to_world(Index3{{2, 0, 1}}).mm - expected).norm(), 1e-12);
}

TEST(Grid, ValidationRefusesBadGeometry) {
  Grid<Scanner> g;
  g.size = {{4, 4, 4}};
  EXPECT_NO_THROW(validate_grid(g, "ok"));
  Grid<Scanner> zero = g;
  zero.spacing[1] = 0.0;
  Grid<Scanner> nan = g;
  nan.spacing[2] = std::numeric_limits<double>::quiet_NaN();
  Grid<Scanner> sheared = g;
  sheared.direction(0, 1) = 0.3;
  Grid<Scanner> empty = g;
  empty.size[0] = 0;
  for (const Grid<Scanner>* bad : {&zero, &nan, &sheared, &empty}) {
    try {
      validate_grid(*bad, "scan.nii");
      ADD_FAILURE() << "accepted a bad grid";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::UnsupportedGeometry);
      EXPECT_NE(std::string(e.what()).find("scan.nii"), std::string::npos);
    }
  }
}

TEST(Grid, WithFrameKeepsTheGridAndVoxelsAndChangesOnlyTheFrameTag) {
  const Image<float> scan = index_ramp({4, 3, 2}, oblique_direction(25.0));
  const Image<float, Atlas> as_atlas = with_frame<Atlas>(scan);
  static_assert(std::is_same_v<decltype(as_atlas.grid.to_world(Index3{})), Point<Atlas>>);
  EXPECT_EQ(as_atlas.grid.size, scan.grid.size);
  EXPECT_EQ(as_atlas.grid.origin, scan.grid.origin);
  EXPECT_EQ(as_atlas.grid.spacing, scan.grid.spacing);
  EXPECT_EQ(as_atlas.grid.direction, scan.grid.direction);
  EXPECT_EQ(as_atlas.voxels, scan.voxels);
  MultiChannelImage<Scanner> masks(scan.grid, 3, 0.25f);
  masks.data[5] = 1.0f;
  const MultiChannelImage<Atlas> back = with_frame<Atlas>(masks);
  EXPECT_EQ(back.channels, 3);
  EXPECT_EQ(back.data, masks.data);
  EXPECT_LT((back.grid.to_world(Index3{{1, 2, 1}}).mm - masks.grid.to_world(Index3{{1, 2, 1}}).mm).norm(), 1e-12);
}

TEST(Affine, CompositionAppliesRightThenLeft) {
  Eigen::Affine3d a = Eigen::Affine3d::Identity();
  a.translation() = Eigen::Vector3d(1, 2, 3);
  Eigen::Affine3d b = Eigen::Affine3d::Identity();
  b.linear() = Eigen::Vector3d(2, 2, 2).asDiagonal();
  const Affine<Scanner, Atlas> s2a(a);
  const Affine<Atlas, Scanner> a2s(b);
  const Affine<Scanner, Scanner> round = a2s * s2a;  // scale after shift
  EXPECT_LT((round(Point<Scanner>{Eigen::Vector3d(1, 1, 1)}).mm - Eigen::Vector3d(4, 6, 8)).norm(), 1e-12);
  EXPECT_LT((s2a.inverse()(s2a(Point<Scanner>{Eigen::Vector3d(5, -1, 2)})).mm - Eigen::Vector3d(5, -1, 2)).norm(), 1e-12);
}

TEST(Affine, TransformBoxBoundsTheRotatedCorners) {
  Eigen::Affine3d t = Eigen::Affine3d::Identity();
  t.linear() = Eigen::AngleAxisd(3.14159265358979323846 / 2, Eigen::Vector3d::UnitZ()).toRotationMatrix();
  const Box<Atlas> b{{Eigen::Vector3d(0, 0, 0)}, {Eigen::Vector3d(4, 2, 1)}};
  const Box<Scanner> m = transform_box(Affine<Atlas, Scanner>(t), b);
  EXPECT_LT((m.lower.mm - Eigen::Vector3d(-2, 0, 0)).norm(), 1e-12);
  EXPECT_LT((m.upper.mm - Eigen::Vector3d(0, 4, 1)).norm(), 1e-12);
}

}  // namespace
}  // namespace ctarr::test
