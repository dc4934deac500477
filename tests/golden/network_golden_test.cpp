// Golden test of the network: the C++ U-Net (src/network.cpp) against the independent PyTorch implementation
// (scripts/ctarr_unet.py) on the fixture written by scripts/make_network_golden.py: same random weights (reduced
// width 4/8/16/32, real architecture and 19 classes), fixed inputs, expected logits and sliding-window
// probabilities. Tolerance: max-abs difference < 1e-4 (float32 on both sides; measured ~1e-6).
#include "ctarr/network.hpp"

#include "../../src/detail/safetensors.hpp"  // torch-free reader of the fixture
#include "support/support.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

namespace ctarr {
namespace {

std::string fixture(const std::string& name) { return test::repo_dir() + "/tests/golden/data/" + name; }

struct Diff {
  double max_abs = 0.0;
  double rel_l2 = 0.0;
};

Diff compare(const std::vector<float>& got, const std::vector<float>& want) {
  Diff d;
  double num = 0.0, den = 0.0;
  for (std::size_t n = 0; n < want.size(); ++n) {
    const double e = static_cast<double>(got[n]) - static_cast<double>(want[n]);
    d.max_abs = std::max(d.max_abs, std::abs(e));
    num += e * e;
    den += static_cast<double>(want[n]) * want[n];
  }
  d.rel_l2 = std::sqrt(num / std::max(den, 1e-30));
  return d;
}

class NetworkGolden : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    expected_ = new detail::SafetensorsFile(detail::read_safetensors(fixture("unet_golden_expected.safetensors")));
    net_ = new Network(fixture("unet_golden.safetensors"), {"cpu"});
  }
  static void TearDownTestSuite() {
    delete net_;
    delete expected_;
  }

  void check_logits(const std::string& name) {
    const detail::SafetensorsTensor& x = expected_->tensors.at(name + ".input");
    const detail::SafetensorsTensor& y = expected_->tensors.at(name + ".logits");
    ASSERT_EQ(x.shape.size(), 5u);
    const std::array<int, 3> dhw{static_cast<int>(x.shape[2]), static_cast<int>(x.shape[3]), static_cast<int>(x.shape[4])};
    const std::vector<float> got = net_->logits(x.data, dhw);
    ASSERT_EQ(got.size(), y.data.size());
    ASSERT_EQ(y.shape[1], 20);
    const Diff d = compare(got, y.data);
    EXPECT_LT(d.max_abs, 1e-4) << name << ": relative L2 " << d.rel_l2;
    EXPECT_LT(d.rel_l2, 1e-5) << name;
    RecordProperty(name + "_max_abs", std::to_string(d.max_abs));
  }

  static detail::SafetensorsFile* expected_;
  static Network* net_;
};
detail::SafetensorsFile* NetworkGolden::expected_ = nullptr;
Network* NetworkGolden::net_ = nullptr;

TEST_F(NetworkGolden, LogitsMatchPyTorchOnACubicInput) { check_logits("cubic"); }

TEST_F(NetworkGolden, LogitsMatchPyTorchOnANonCubicInput) { check_logits("noncubic"); }  // catches axis swaps

TEST_F(NetworkGolden, SlidingWindowProbabilitiesMatchPyTorch) {
  // window.input is [C, k, j, i]: exactly MultiChannelImage's layout. One axis (i = 12) is shorter than the
  // 16-voxel patch, so the zero-padding path is covered too.
  const detail::SafetensorsTensor& x = expected_->tensors.at("window.input");
  const detail::SafetensorsTensor& y = expected_->tensors.at("window.probabilities");
  ASSERT_EQ(x.shape.size(), 4u);
  Grid<Scanner> g;
  g.size = Index3{{x.shape[3], x.shape[2], x.shape[1]}};
  MultiChannelImage<Scanner> in(g, static_cast<int>(x.shape[0]));
  in.data = x.data;
  SlidingWindowOptions o;
  o.patch_size = std::stoi(expected_->metadata.at("patch_size"));
  o.overlap = std::stod(expected_->metadata.at("overlap"));
  o.sigma_fraction = std::stod(expected_->metadata.at("sigma_fraction"));
  const MultiChannelImage<Scanner> out = net_->predict(in, o);
  ASSERT_EQ(out.channels, static_cast<int>(y.shape[0]));
  ASSERT_EQ(out.data.size(), y.data.size());
  const Diff d = compare(out.data, y.data);
  EXPECT_LT(d.max_abs, 1e-5) << "relative L2 " << d.rel_l2;
}

}  // namespace
}  // namespace ctarr
