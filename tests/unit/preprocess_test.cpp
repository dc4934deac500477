#include "ctarr/preprocess.hpp"

#include "support/support.hpp"

#include <gtest/gtest.h>

namespace ctarr::test {
namespace {

// A direction that permutes and flips axes, then tilts a little: i -> -z, j -> +x, k -> -y (roughly).
Eigen::Matrix3d permuted_oblique() {
  Eigen::Matrix3d p;
  p << 0, 1, 0,  //
      0, 0, -1,  //
      -1, 0, 0;
  return oblique_direction(12.0) * p;
}

TEST(Reorientation, KeepsEveryVoxelsWorldPosition) {
  const Image<float> img = index_ramp({5, 4, 3}, permuted_oblique());
  const Reorientation r = canonical_reorientation(img.grid.direction);
  const Image<float> can = reorient(img, r);
  for (std::int64_t k = 0; k < can.grid.size[2]; ++k)
    for (std::int64_t j = 0; j < can.grid.size[1]; ++j)
      for (std::int64_t i = 0; i < can.grid.size[0]; ++i) {
        const Index3 idx{{i, j, k}};
        const Index3 orig = reoriented_to_original(idx, img.grid, r);
        EXPECT_EQ(can.at(idx), img.at(orig));
        EXPECT_LT((can.grid.to_world(idx).mm - img.grid.to_world(orig).mm).norm(), 1e-9) << idx;
      }
}

TEST(Reorientation, CanonicalDirectionIsClosestToIdentity) {
  const Image<float> img = index_ramp({5, 4, 3}, permuted_oblique());
  const Grid<Scanner> g = reorient_grid(img.grid, canonical_reorientation(img.grid.direction));
  for (int a = 0; a < 3; ++a) EXPECT_GT(g.direction(a, a), 0.9);
}

TEST(Reorientation, IdentityDirectionNeedsNothing) {
  EXPECT_TRUE(canonical_reorientation(Eigen::Matrix3d::Identity()).is_identity());
}

TEST(IsotropicGrid, CoversTheSameBoxWithTheSameCorner) {
  const Image<float> img = index_ramp({10, 7, 5}, oblique_direction(30.0));
  const Grid<Scanner> g = isotropic_grid(img.grid, 3.0);
  const Eigen::Vector3d corner_in = img.grid.origin - img.grid.direction * (0.5 * img.grid.spacing);
  const Eigen::Vector3d corner_out = g.origin - g.direction * (0.5 * g.spacing);
  EXPECT_LT((corner_in - corner_out).norm(), 1e-9);
  for (int a = 0; a < 3; ++a) {
    EXPECT_GE(static_cast<double>(g.size[a]) * 3.0, static_cast<double>(img.grid.size[a]) * img.grid.spacing[a] - 1e-6);
    EXPECT_LT(static_cast<double>(g.size[a] - 1) * 3.0, static_cast<double>(img.grid.size[a]) * img.grid.spacing[a]);
  }
}

// value = a . world + c, a linear function of world position: trilinear interpolation must reproduce it.
Image<float> world_ramp(const Grid<Scanner>& g, const Eigen::Vector3d& a, double c) {
  Image<float> img(g);
  for (std::int64_t k = 0; k < g.size[2]; ++k)
    for (std::int64_t j = 0; j < g.size[1]; ++j)
      for (std::int64_t i = 0; i < g.size[0]; ++i) {
        const Index3 idx{{i, j, k}};
        img.at(idx) = static_cast<float>(a.dot(g.to_world(idx).mm) + c);
      }
  return img;
}

TEST(ResampleLinear, ReproducesALinearFieldBetweenObliqueGrids) {
  Grid<Scanner> src;
  src.size = {{20, 18, 16}};
  src.spacing = Eigen::Vector3d(1.0, 1.2, 1.5);
  src.direction = oblique_direction(20.0);
  src.origin = Eigen::Vector3d(5, -3, 2);
  const Eigen::Vector3d a(0.3, -0.2, 0.5);
  const Image<float> img = world_ramp(src, a, 7.0);

  Grid<Scanner> dst;
  dst.size = {{6, 6, 6}};
  dst.spacing = Eigen::Vector3d::Constant(1.3);
  dst.direction = oblique_direction(-10.0);
  dst.origin = src.centre().mm - dst.direction * Eigen::Vector3d::Constant(2.5 * 1.3);
  const Image<float> out = resample_linear(img, dst, -1000.0f, /*antialias=*/false);
  for (std::int64_t n = 0; n < dst.voxels(); ++n) {
    const Index3 idx{{n % 6, (n / 6) % 6, n / 36}};
    EXPECT_NEAR(out.at(idx), a.dot(dst.to_world(idx).mm) + 7.0, 1e-3) << idx;
  }
}

TEST(ResampleLinear, AntiAliasingKeepsAConstantAndFillsOutside) {
  Grid<Scanner> src;
  src.size = {{30, 30, 30}};
  src.spacing = Eigen::Vector3d::Constant(0.7);
  Image<float> img(src, 42.0f);
  Grid<Scanner> dst = isotropic_grid(src, 3.0);
  dst.size[0] += 3;  // extends past the source
  const Image<float> out = resample_linear(img, dst, -1024.0f, true);
  EXPECT_FLOAT_EQ(out.at(Index3{{0, 0, 0}}), 42.0f);
  EXPECT_FLOAT_EQ(out.at(Index3{{dst.size[0] - 1, 0, 0}}), -1024.0f);
}

TEST(ResampleLinear, SeparablePathEqualsTheGeneralPathOnACanonicalGrid) {
  // A flipped, permuted, anisotropic scan -> its canonical 3 mm grid, with anti-aliasing on two axes and a target
  // that overhangs the source: the separable path must give the general path's values.
  Grid<Scanner> src;
  src.size = {{37, 29, 23}};
  src.spacing = Eigen::Vector3d(0.8, 1.1, 2.5);
  Eigen::Matrix3d p;
  p << 0, 1, 0,  //
      0, 0, -1,  //
      -1, 0, 0;
  src.direction = p;
  src.origin = Eigen::Vector3d(4, -7, 11);
  Image<float> img(src);
  for (std::size_t n = 0; n < img.voxels.size(); ++n) img.voxels[n] = static_cast<float>((n * 7919) % 2000) - 1000.0f;
  const Grid<Scanner> canonical = reorient_grid(src, canonical_reorientation(src.direction));
  Grid<Scanner> dst = isotropic_grid(canonical, 3.0);
  dst.size[1] += 2;
  const Image<float> fast = resample_linear(img, dst, -1024.0f, true);
  const Image<float> general = resample_linear_general(img, dst, -1024.0f, true);
  ASSERT_EQ(fast.voxels.size(), general.voxels.size());
  for (std::size_t n = 0; n < fast.voxels.size(); ++n) EXPECT_NEAR(fast.voxels[n], general.voxels[n], 2e-3) << n;
}

TEST(ResampleNearest, SameGridIsTheIdentity) {
  const Image<float> img = index_ramp({4, 3, 2}, oblique_direction(40.0));
  const Image<float> out = resample_nearest(img, img.grid, -1.0f);
  EXPECT_EQ(out.voxels, img.voxels);
}

TEST(Preprocess, WindowsScaleToUnitRange) {
  Grid<Scanner> g;
  g.size = {{9, 9, 9}};
  g.spacing = Eigen::Vector3d::Constant(3.0);
  Image<float> img(g, 150.0f);
  const PreprocessResult r = preprocess(img);
  ASSERT_EQ(r.network_input.channels, 3);
  const Index3 c{{4, 4, 4}};
  const std::size_t v = r.network_input.grid.linear(c);
  EXPECT_NEAR(r.network_input.channel(0)[v], (150.0 + 500.0) / 1800.0, 1e-5);
  EXPECT_NEAR(r.network_input.channel(1)[v], 1.0, 1e-6);
  EXPECT_NEAR(r.network_input.channel(2)[v], 0.75, 1e-6);
}

}  // namespace
}  // namespace ctarr::test

namespace ctarr::test {
namespace {

TEST(LabelFractions, AveragesLabelsIntoCoarseVoxels) {
  Grid<Scanner> fine;
  fine.size = {{6, 6, 6}};
  fine.spacing = Eigen::Vector3d::Constant(1.0);
  Image<std::uint8_t> labels(fine, 0);
  for (std::int64_t k = 0; k < 6; ++k)
    for (std::int64_t j = 0; j < 6; ++j) labels.at(Index3{{0, j, k}}) = 2;  // one face, label 2
  const Grid<Scanner> coarse = isotropic_grid(fine, 3.0);
  const MultiChannelImage<Scanner> f = label_fractions(labels, coarse, 3);
  ASSERT_EQ(coarse.size, (Index3{{2, 2, 2}}));
  EXPECT_NEAR(f.channel(1)[coarse.linear(Index3{{0, 0, 0}})], 1.0 / 3.0, 1e-6);
  EXPECT_NEAR(f.channel(1)[coarse.linear(Index3{{1, 1, 1}})], 0.0, 1e-6);
  EXPECT_NEAR(f.channel(0)[coarse.linear(Index3{{0, 0, 0}})], 0.0, 1e-6);
}

TEST(LabelFractions, AxisAlignedTablesGiveTheGeneralPathsFractions) {
  // A flipped, permuted, anisotropic label map -> its canonical 3 mm grid (the table path), against the same target
  // turned by 1e-9 rad (the per-voxel general path): the same fractions.
  Grid<Scanner> src;
  src.size = {{23, 19, 11}};
  src.spacing = Eigen::Vector3d(0.7, 1.1, 2.3);  // no source centre exactly on a target boundary (no rounding ties)
  Eigen::Matrix3d p;
  p << 0, -1, 0,  //
      0, 0, 1,  //
      -1, 0, 0;
  src.direction = p;
  src.origin = Eigen::Vector3d(4, -7, 11);
  Image<std::uint8_t> labels(src, 0);
  for (std::size_t n = 0; n < labels.voxels.size(); ++n) labels.voxels[n] = static_cast<std::uint8_t>((n * 7919) % 5);
  const Grid<Scanner> target = isotropic_grid(reorient_grid(src, canonical_reorientation(src.direction)), 3.0);
  Grid<Scanner> turned = target;
  turned.direction = Eigen::AngleAxisd(1e-9, Eigen::Vector3d(0.3, 0.5, 0.8).normalized()).toRotationMatrix() * target.direction;
  const MultiChannelImage<Scanner> a = label_fractions(labels, target, 4), b = label_fractions(labels, turned, 4);
  ASSERT_EQ(a.data.size(), b.data.size());
  for (std::size_t n = 0; n < a.data.size(); ++n) ASSERT_NEAR(a.data[n], b.data[n], 1e-6) << n;
  float sum = 0.0f;
  for (float v : a.data) sum += v;
  EXPECT_GT(sum, 0.0f);
}

}  // namespace
}  // namespace ctarr::test

namespace ctarr::test {
namespace {

// 5 mm slices onto a 3 mm grid: every 3 mm voxel whose centre lies in the label map gets its label, none is left
// empty between two slice centres.
TEST(LabelFractions, FillsTargetVoxelsBetweenThickSlices) {
  Grid<Scanner> thick;
  thick.size = {{20, 20, 8}};
  thick.spacing = Eigen::Vector3d(1.0, 1.0, 5.0);
  thick.origin = Eigen::Vector3d(-3.2, 7.1, 11.0);
  Image<std::uint8_t> labels(thick, 0);
  for (std::int64_t k = 0; k < 8; ++k)
    for (std::int64_t j = 0; j < 20; ++j)
      for (std::int64_t i = 0; i < 20; ++i) labels.at(Index3{{i, j, k}}) = k % 2 == 0 ? 3 : 1;
  const Grid<Scanner> iso = isotropic_grid(thick, 3.0);
  const MultiChannelImage<Scanner> f = label_fractions(labels, iso, 3);
  int inside = 0;
  for (std::int64_t k = 0; k < iso.size[2]; ++k)
    for (std::int64_t j = 0; j < iso.size[1]; ++j)
      for (std::int64_t i = 0; i < iso.size[0]; ++i) {
        const Index3 t{{i, j, k}};
        const ContinuousIndex ci = thick.to_continuous_index(iso.to_world(t));
        bool in = true;
        for (int a = 0; a < 3; ++a) in = in && ci.v[a] >= -0.5 && ci.v[a] < static_cast<double>(thick.size[a]) - 0.5;
        if (!in) continue;
        ++inside;
        const std::size_t v = iso.linear(t);
        EXPECT_NEAR(f.channel(0)[v] + f.channel(2)[v], 1.0, 1e-6) << "3 mm voxel " << i << "," << j << "," << k;
      }
  EXPECT_GT(inside, 0);
}

}  // namespace
}  // namespace ctarr::test
