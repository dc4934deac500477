#include "ctarr/label_map.hpp"

#include "ctarr/error.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

namespace ctarr::test {
namespace {

// A 3 mm grid in the scanner, axes along LPS, as the canonical grid the network runs on.
Grid<Scanner> coarse_grid() {
  Grid<Scanner> g;
  g.size = Index3{{10, 7, 6}};
  g.spacing = Eigen::Vector3d(3.0, 3.0, 3.0);
  g.origin = Eigen::Vector3d(-12.0, 30.0, -4.5);
  return g;
}

// A 2 x 1.25 x 0.8 mm grid stored in another axis order with flipped axes (i along +z, j along -y, k along -x), as a
// scan file may store it, covering the coarse grid's extent and beyond.
Grid<Scanner> scan_grid() {
  Grid<Scanner> g;
  g.size = Index3{{17, 36, 30}};
  g.spacing = Eigen::Vector3d(2.0, 1.25, 0.8);
  g.direction << 0, 0, -1,  //
      0, -1, 0,             //
      1, 0, 0;
  g.origin = Eigen::Vector3d(16.5, 50.0, -6.9);  // no voxel centre on a boundary of one_hot_blocks (no ties)
  return g;
}

// Probabilities that are one-hot on the coarse grid: label 1 for x index < 5, label 2 from 5 on, and label 3 where
// the z index is 0 (channel 0, background, is 0 everywhere).
MultiChannelImage<Scanner> one_hot_blocks() {
  const Grid<Scanner> g = coarse_grid();
  MultiChannelImage<Scanner> p(g, 4);
  for (std::int64_t k = 0; k < g.size[2]; ++k)
    for (std::int64_t j = 0; j < g.size[1]; ++j)
      for (std::int64_t i = 0; i < g.size[0]; ++i) {
        const int label = k == 0 ? 3 : (i < 5 ? 1 : 2);
        p.channel(label)[g.linear(Index3{{i, j, k}})] = 1.0f;
      }
  return p;
}

// The map of trilinear interpolation written out: every channel mixed at the world position, then the argmax.
std::uint8_t interpolated_argmax(const MultiChannelImage<Scanner>& p, const Eigen::Vector3d& world_mm) {
  const Grid<Scanner>& g = p.grid;
  const ContinuousIndex ci = g.to_continuous_index(Point<Scanner>{world_mm});
  std::int64_t lo[3];
  double w[3];
  for (int a = 0; a < 3; ++a) {
    const double x = std::clamp(ci.v[a], 0.0, static_cast<double>(g.size[a] - 1));
    lo[a] = std::min(static_cast<std::int64_t>(std::floor(x)), g.size[a] - 2);
    w[a] = x - static_cast<double>(lo[a]);
  }
  std::vector<double> mixed(static_cast<std::size_t>(p.channels), 0.0);
  for (int c = 0; c < 8; ++c) {
    const Index3 at{{lo[0] + (c & 1), lo[1] + ((c >> 1) & 1), lo[2] + ((c >> 2) & 1)}};
    const double weight = ((c & 1) ? w[0] : 1 - w[0]) * ((c & 2) ? w[1] : 1 - w[1]) * ((c & 4) ? w[2] : 1 - w[2]);
    for (int ch = 0; ch < p.channels; ++ch)
      mixed[static_cast<std::size_t>(ch)] += weight * p.channel(ch)[g.linear(at)];
  }
  return static_cast<std::uint8_t>(std::max_element(mixed.begin(), mixed.end()) - mixed.begin());
}

TEST(LabelMap, OnItsOwnGridIsTheArgmaxWithTiesToTheLowerLabel) {
  Grid<Scanner> g = coarse_grid();
  MultiChannelImage<Scanner> p(g, 3);
  const auto set = [&p](std::size_t v, float p0, float p1, float p2) {
    p.channel(0)[v] = p0;
    p.channel(1)[v] = p1;
    p.channel(2)[v] = p2;
  };
  set(0, 0.2f, 0.5f, 0.3f);  // 1 wins
  set(1, 0.4f, 0.4f, 0.2f);  // a tie: background
  set(2, 0.0f, 0.5f, 0.5f);  // a tie: 1
  set(3, 0.0f, 0.0f, 0.9f);
  const Image<std::uint8_t> own = hard_labels(p);
  EXPECT_EQ(own.voxels[0], 1);
  EXPECT_EQ(own.voxels[1], 0);
  EXPECT_EQ(own.voxels[2], 1);
  EXPECT_EQ(own.voxels[3], 2);
  const Image<std::uint8_t> same = hard_labels_on_grid(p, g);
  EXPECT_EQ(same.voxels, own.voxels);
  EXPECT_EQ(same.grid.origin, g.origin);
}

// Known transform: the one-hot blocks' boundary between labels 1 and 2 lies halfway between the coarse voxel
// centres of x index 4 and 5 (world x = -12 + 4.5 * 3 = 1.5 mm), and the boundary of label 3 halfway between the z
// index 0 and 1 centre planes (world z = -3 mm). Every scan voxel is labelled by where its centre lies in the world,
// through a permuted and flipped direction; outside the coarse grid the edge's label goes on.
TEST(LabelMap, OnTheScanGridTheBoundariesLieWhereTheWorldPutsThem) {
  const MultiChannelImage<Scanner> p = one_hot_blocks();
  const Grid<Scanner> target = scan_grid();
  const Image<std::uint8_t> labels = hard_labels_on_grid(p, target);
  EXPECT_EQ(labels.grid.size, target.size);
  EXPECT_EQ(labels.grid.direction, target.direction);
  std::array<std::int64_t, 4> count{};
  for (std::int64_t k = 0; k < target.size[2]; ++k)
    for (std::int64_t j = 0; j < target.size[1]; ++j)
      for (std::int64_t i = 0; i < target.size[0]; ++i) {
        const Eigen::Vector3d mm = target.to_world(Index3{{i, j, k}}).mm;
        const int expected = mm.z() < -3.0 ? 3 : (mm.x() < 1.5 ? 1 : 2);
        const int got = labels.voxels[target.linear(Index3{{i, j, k}})];
        ++count[static_cast<std::size_t>(got)];
        // away from the corner where both boundaries meet, the interpolation of one-hot blocks is exact
        if (std::abs(mm.z() + 3.0) > 1.5 || std::abs(mm.x() - 1.5) > 1.5) {
          ASSERT_EQ(got, expected) << "voxel " << i << " " << j << " " << k << " at " << mm.transpose();
        }
      }
  EXPECT_GT(count[1], 0);
  EXPECT_GT(count[2], 0);
  EXPECT_GT(count[3], 0);
  EXPECT_EQ(count[0], 0);
}

// The fast path (every surrounding coarse voxel has the same hard label) is exact: random probabilities, looked up
// on grids that are neither aligned nor of the same spacing, give the argmax of the interpolation written out. Both
// ways of finding the coarse neighbours are checked: axes permuted and flipped (per-axis tables) and oblique.
TEST(LabelMap, OnAnotherGridIsTheArgmaxOfTheInterpolatedProbabilities) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  MultiChannelImage<Scanner> p(coarse_grid(), 5);
  // smooth-ish fields so that both paths occur: a per-channel plane plus noise
  for (int ch = 0; ch < p.channels; ++ch)
    for (std::int64_t v = 0; v < p.grid.voxels(); ++v) {
      const std::int64_t i = v % p.grid.size[0];
      p.channel(ch)[v] = 0.5f * u(rng) + static_cast<float>(ch == 1 ? i : ch == 2 ? 9 - i : 3) / 9.0f;
    }
  Grid<Scanner> oblique = scan_grid();
  oblique.direction = oblique_direction(20.0) * scan_grid().direction;
  oblique.origin = Eigen::Vector3d(10.0, 45.0, -6.0);
  for (const Grid<Scanner>& target : {scan_grid(), oblique}) {
    const Image<std::uint8_t> labels = hard_labels_on_grid(p, target);
    std::int64_t checked = 0, agreeing = 0;
    for (std::int64_t k = 0; k < target.size[2]; ++k)
      for (std::int64_t j = 0; j < target.size[1]; ++j)
        for (std::int64_t i = 0; i < target.size[0]; ++i) {
          const Index3 idx{{i, j, k}};
          const std::uint8_t expected = interpolated_argmax(p, target.to_world(idx).mm);
          ASSERT_EQ(labels.voxels[target.linear(idx)], expected) << "voxel " << i << " " << j << " " << k;
          ++checked;
          agreeing += expected == labels.voxels[0];
        }
    EXPECT_EQ(checked, target.voxels());
    EXPECT_LT(agreeing, checked);  // more than one label
  }
}

TEST(LabelMap, RefusesProbabilitiesWithoutChannelsAndInvalidGrids) {
  MultiChannelImage<Scanner> none(coarse_grid(), 0);
  try {
    hard_labels(none);
    FAIL() << "no channels accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Internal);
  }
  const MultiChannelImage<Scanner> p = one_hot_blocks();
  Grid<Scanner> bad = scan_grid();
  bad.spacing[1] = 0.0;
  try {
    hard_labels_on_grid(p, bad);
    FAIL() << "zero spacing accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::UnsupportedGeometry);
  }
}

}  // namespace
}  // namespace ctarr::test
