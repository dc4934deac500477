#include "ctarr/components.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace ctarr {
namespace {

LabelImage labels_of_size(int nx, int ny, int nz) {
  Grid<Scanner> g;
  g.size = Index3{{nx, ny, nz}};
  g.spacing = Eigen::Vector3d(3.0, 3.0, 3.0);
  return LabelImage(g, 0);
}

void fill_block(LabelImage& im, const Index3& lo, const Index3& hi, std::uint8_t value) {
  for (std::int64_t k = lo[2]; k <= hi[2]; ++k)
    for (std::int64_t j = lo[1]; j <= hi[1]; ++j)
      for (std::int64_t i = lo[0]; i <= hi[0]; ++i) im.at(Index3{{i, j, k}}) = value;
}

std::int64_t count(const LabelImage& im, std::uint8_t value) {
  return std::count(im.voxels.begin(), im.voxels.end(), value);
}

TEST(Components, NeighboursShareAFaceAnEdgeOrACorner) {
  // (1,1,1) touches (2,2,2) at a corner only: one component; (5,5,5) is apart.
  const Index3 size{{8, 8, 8}};
  std::vector<std::uint8_t> on(512, 0);
  auto at = [&](int i, int j, int k) -> std::uint8_t& { return on[static_cast<std::size_t>(i + 8 * (j + 8 * k))]; };
  at(1, 1, 1) = at(2, 2, 2) = at(5, 5, 5) = 1;
  auto comps = connected_components(on, size);
  ASSERT_EQ(comps.size(), 2u);
  EXPECT_EQ(comps[0].size(), 2u);
  EXPECT_EQ(comps[1], std::vector<std::int64_t>{5 + 8 * (5 + 8 * 5)});
  // two voxels in the same row at the grid's x seam (7,0,0) and (0,1,0) are not neighbours
  std::fill(on.begin(), on.end(), 0);
  at(7, 0, 0) = at(0, 1, 0) = 1;
  EXPECT_EQ(connected_components(on, size).size(), 2u);
}

TEST(Components, LargestPieceIsKeptTheOthersBecomeBackground) {
  LabelImage im = labels_of_size(20, 10, 12);
  fill_block(im, Index3{{0, 0, 0}}, Index3{{2, 2, 2}}, 15);     // 27 voxels of liver
  fill_block(im, Index3{{10, 2, 3}}, Index3{{14, 6, 7}}, 15);   // 125: the largest
  fill_block(im, Index3{{18, 9, 11}}, Index3{{19, 9, 11}}, 15); // 2, in the far corner
  fill_block(im, Index3{{5, 5, 5}}, Index3{{6, 6, 6}}, 16);     // spleen, untouched
  const LabelImage before = im;
  const PiecesRemoved removed = keep_largest_component(im, 15);
  EXPECT_EQ(removed.pieces, 2);
  EXPECT_EQ(removed.voxels, 29);
  EXPECT_EQ(count(im, 15), 125);
  EXPECT_EQ(im.at(Index3{{12, 4, 5}}), 15);
  EXPECT_EQ(im.at(Index3{{1, 1, 1}}), 0);
  EXPECT_EQ(im.at(Index3{{19, 9, 11}}), 0);
  EXPECT_EQ(count(im, 16), 8);
  // nothing else changed
  for (std::size_t v = 0; v < im.voxels.size(); ++v) {
    if (before.voxels[v] != 15) {
      EXPECT_EQ(im.voxels[v], before.voxels[v]);
    }
  }
}

TEST(Components, OnePieceOrAbsentIsLeftAsItIs) {
  LabelImage im = labels_of_size(6, 6, 6);
  fill_block(im, Index3{{1, 1, 1}}, Index3{{3, 3, 3}}, 3);
  im.at(Index3{{4, 4, 4}}) = 3;  // touches (3,3,3) at a corner
  const LabelImage before = im;
  EXPECT_EQ(keep_largest_component(im, 3).pieces, 0);
  EXPECT_EQ(keep_largest_component(im, 7).pieces, 0);
  EXPECT_EQ(im.voxels, before.voxels);
}

TEST(Components, TiesKeepThePieceThatComesFirstInMemory) {
  LabelImage im = labels_of_size(10, 4, 4);
  fill_block(im, Index3{{6, 0, 0}}, Index3{{7, 1, 0}}, 9);  // 4 voxels, first in memory (z = 0)
  fill_block(im, Index3{{0, 0, 2}}, Index3{{1, 1, 2}}, 9);  // 4 voxels at z = 2
  const PiecesRemoved removed = keep_largest_component(im, 9);
  EXPECT_EQ(removed.pieces, 1);
  EXPECT_EQ(im.at(Index3{{6, 0, 0}}), 9);
  EXPECT_EQ(im.at(Index3{{0, 0, 2}}), 0);
}

}  // namespace
}  // namespace ctarr
