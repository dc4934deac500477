#include "ctarr/mirror.hpp"

#include "ctarr/classes.hpp"
#include "ctarr/error.hpp"
#include "ctarr/turns.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <string>

namespace ctarr::test {
namespace {

int label(const std::string& name) {
  const auto& names = class_names();
  return static_cast<int>(std::find(names.begin(), names.end(), name) - names.begin()) + 1;
}

Grid<Scanner> slanted_grid() {
  Grid<Scanner> g;
  g.size = Index3{{5, 4, 3}};
  g.spacing = Eigen::Vector3d(3.0, 3.0, 3.0);
  g.origin = Eigen::Vector3d(-100.0, 20.0, 7.5);
  return g;
}

TEST(Mirror, ReversesTheXIndexAxisAndKeepsEveryVoxelsWorldPosition) {
  const Grid<Scanner> g = slanted_grid();
  const Reorientation m = left_right_mirror();
  const Grid<Scanner> mg = reorient_grid(g, m);
  ASSERT_EQ(mg.size, g.size);
  EXPECT_DOUBLE_EQ(mg.direction(0, 0), -1.0);  // the mirrored grid's x axis runs right to left in the scanner
  MultiChannelImage<Scanner> image(g, 2);
  std::iota(image.data.begin(), image.data.end(), 0.0f);
  const MultiChannelImage<Scanner> shown = turn_channels(image, m);
  for (int c = 0; c < 2; ++c)
    for (std::int64_t k = 0; k < g.size[2]; ++k)
      for (std::int64_t j = 0; j < g.size[1]; ++j)
        for (std::int64_t i = 0; i < g.size[0]; ++i) {
          const Index3 at{{i, j, k}}, from{{g.size[0] - 1 - i, j, k}};
          // the array the network sees is the image reversed along x ...
          EXPECT_EQ(shown.channel(c)[mg.linear(at)], image.channel(c)[g.linear(from)]);
          // ... and each of its voxels lies where the voxel it came from lies
          EXPECT_LT((mg.to_world(at).mm - g.to_world(from).mm).norm(), 1e-12);
        }
}

TEST(Mirror, CombineAveragesTheClassesWhoseMirrorImageIsAnatomyAndNormalises) {
  const Grid<Scanner> g = slanted_grid();
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(0.01f, 1.0f);
  MultiChannelImage<Scanner> prob(g, kNumClasses + 1), mirrored(g, kNumClasses + 1);
  for (float& v : prob.data) v = u(rng);
  for (float& v : mirrored.data) v = u(rng);
  const MultiChannelImage<Scanner> first = prob;
  combine_mirrored_pass(prob, mirrored);
  const int ribs_left = label("ribs_left"), ribs_right = label("ribs_right"), liver = label("liver");
  const int heart = label("heart"), spleen = label("spleen"), bladder = label("urinary_bladder");
  for (std::size_t v = 0; v < static_cast<std::size_t>(g.voxels()); ++v) {
    auto raw = [&](int c) -> double {  // the unnormalised combination, written out for the classes tested
      if (c == 0 || c == liver || c == heart || c == spleen) return first.channel(c)[v];
      const int from = c == ribs_left ? ribs_right : c == ribs_right ? ribs_left : c;
      if (c != ribs_left && c != ribs_right && c != bladder) return -1.0;
      return 0.5 * (first.channel(c)[v] + mirrored.channel(from)[v]);
    };
    double sum = 0.0;
    for (int c = 0; c <= kNumClasses; ++c) {
      const int from = mirror_label(c);
      const bool alone = c == 0 || std::count(lateralised_labels().begin(), lateralised_labels().end(), c) > 0;
      sum += alone ? first.channel(c)[v] : 0.5 * (first.channel(c)[v] + mirrored.channel(from)[v]);
    }
    double total = 0.0;
    for (int c = 0; c <= kNumClasses; ++c) total += prob.channel(c)[v];
    EXPECT_NEAR(total, 1.0, 1e-5);
    for (int c : {0, liver, heart, spleen, ribs_left, ribs_right, bladder})
      EXPECT_NEAR(prob.channel(c)[v], raw(c) / sum, 1e-6) << class_names()[static_cast<std::size_t>(std::max(c, 1) - 1)];
    // background and the lateralised organs keep their order relative to each other: their argmax never changes
    EXPECT_NEAR(prob.channel(liver)[v] / prob.channel(0)[v], first.channel(liver)[v] / first.channel(0)[v], 1e-4);
  }
}

TEST(Mirror, AMirroredPassThatAgreesWithTheFirstChangesNothing) {
  // When the mirrored pass says exactly what the first pass says about the mirror image (left and right swapped),
  // the combination is the first pass.
  const Grid<Scanner> g = slanted_grid();
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  MultiChannelImage<Scanner> prob(g, kNumClasses + 1);
  for (float& v : prob.data) v = u(rng);
  const auto n = static_cast<std::size_t>(g.voxels());
  for (std::size_t v = 0; v < n; ++v) {
    float sum = 0.0f;
    for (int c = 0; c <= kNumClasses; ++c) sum += prob.channel(c)[v];
    for (int c = 0; c <= kNumClasses; ++c) prob.channel(c)[v] /= sum;
  }
  MultiChannelImage<Scanner> mirrored(g, kNumClasses + 1);
  for (int c = 0; c <= kNumClasses; ++c)
    std::copy(prob.channel(mirror_label(c)), prob.channel(mirror_label(c)) + n, mirrored.channel(c));
  MultiChannelImage<Scanner> combined = prob;
  combine_mirrored_pass(combined, mirrored);
  for (std::size_t i = 0; i < prob.data.size(); ++i) EXPECT_NEAR(combined.data[i], prob.data[i], 1e-6);
}

TEST(Mirror, CombineRefusesImagesThatAreNotTheNetworksOutputOnOneGrid) {
  const Grid<Scanner> g = slanted_grid();
  Grid<Scanner> other = g;
  other.size = Index3{{5, 4, 4}};
  MultiChannelImage<Scanner> prob(g, kNumClasses + 1);
  expect_error([&] { combine_mirrored_pass(prob, MultiChannelImage<Scanner>(other, kNumClasses + 1)); },
               ErrorCode::Internal, {"one grid"});
  MultiChannelImage<Scanner> classes_only(g, kNumClasses);
  expect_error([&] { combine_mirrored_pass(classes_only, MultiChannelImage<Scanner>(g, kNumClasses)); },
               ErrorCode::Internal, {"19 and 19 channels"});
}

}  // namespace
}  // namespace ctarr::test
