// Golden tests of the network: the C++ U-Net (src/network.cpp) against the independent PyTorch implementations on
// fixed random weights at reduced width (4/8/16/32, real architecture and 19 classes), fixed inputs, expected
// logits and probabilities. Tolerance: max-abs difference < 1e-4 (float32 on both sides; measured ~1e-6).
//   NetworkGolden     ctarr-unet-v1 (InstanceNorm), scripts/ctarr_unet.py, fixture by scripts/make_network_golden.py
//   NetworkGoldenV2   ctarr-unet-v2 (BatchNorm folded into the convolutions), python/ctarr_train/unet.py, fixture by
//                     `PYTHONPATH=python python3 -m ctarr_train.golden`: the expected outputs are the BatchNorm
//                     model's in eval mode, so the folding is checked too; plus the whole-volume path (one pass
//                     and z slabs) against PyTorch's one pass.
#include "ctarr/error.hpp"
#include "ctarr/network.hpp"

#include "../../src/detail/safetensors.hpp"  // torch-free reader of the fixture
#include "support/support.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <optional>
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

class NetworkGoldenV2 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    expected_ = new detail::SafetensorsFile(detail::read_safetensors(fixture("unet_v2_golden_expected.safetensors")));
    net_ = new Network(fixture("unet_v2_golden.safetensors"), {"cpu"});
  }
  static void TearDownTestSuite() {
    delete net_;
    delete expected_;
  }
  static MultiChannelImage<Scanner> volume() {
    const detail::SafetensorsTensor& x = expected_->tensors.at("volume.input");
    Grid<Scanner> g;
    g.size = Index3{{x.shape[3], x.shape[2], x.shape[1]}};  // [C, k, j, i]
    MultiChannelImage<Scanner> in(g, static_cast<int>(x.shape[0]));
    in.data = x.data;
    return in;
  }
  static detail::SafetensorsFile* expected_;
  static Network* net_;
};
detail::SafetensorsFile* NetworkGoldenV2::expected_ = nullptr;
Network* NetworkGoldenV2::net_ = nullptr;

TEST_F(NetworkGoldenV2, CardDescribesAFoldedFourStageNetwork) {
  EXPECT_EQ(net_->card().normalisation, ModelCard::Normalisation::None);
  EXPECT_EQ(net_->card().filters, (std::vector<int>{4, 8, 16, 32}));
  EXPECT_EQ(net_->card().input_divisor(), 8);
  EXPECT_TRUE(fast_predict_options(net_->card(), "cpu").whole_volume);
}

TEST_F(NetworkGoldenV2, LogitsMatchTheBatchNormModelInEvalMode) {
  for (const std::string name : {"cubic", "noncubic"}) {
    const detail::SafetensorsTensor& x = expected_->tensors.at(name + ".input");
    const detail::SafetensorsTensor& y = expected_->tensors.at(name + ".logits");
    const std::array<int, 3> dhw{static_cast<int>(x.shape[2]), static_cast<int>(x.shape[3]), static_cast<int>(x.shape[4])};
    const Diff d = compare(net_->logits(x.data, dhw), y.data);
    EXPECT_LT(d.max_abs, 1e-4) << name << ": relative L2 " << d.rel_l2;
  }
}

TEST_F(NetworkGoldenV2, WholeVolumeProbabilitiesMatchPyTorchsOnePass) {
  // 20 x 28 x 12 (k, j, i): no axis a multiple of 8, so the padding to the input divisor is covered.
  PredictOptions o;
  o.whole_volume = true;
  const MultiChannelImage<Scanner> out = net_->predict(volume(), o);
  const detail::SafetensorsTensor& y = expected_->tensors.at("volume.probabilities");
  ASSERT_EQ(out.data.size(), y.data.size());
  const Diff d = compare(out.data, y.data);
  EXPECT_LT(d.max_abs, 1e-5) << "relative L2 " << d.rel_l2;
}

TEST_F(NetworkGoldenV2, ZSlabsWithHalosGiveTheOnePassResult) {
  // A voxel budget that forces slabs with cores of 8 slices (3 slabs over 20). Without a halo the slab edges see
  // zero padding, so the result differs (the check that slabs are really used). With 16 voxels of halo each slab's
  // input spans all 20 slices here, so its core must equal the one pass exactly: the check that every core is cut
  // out of its slab at the right offset and lands at the right z.
  const detail::SafetensorsTensor& y = expected_->tensors.at("volume.probabilities");
  PredictOptions o;
  o.whole_volume = true;
  o.whole_volume_halo = 0;
  o.whole_volume_max_voxels = 32 * 16 * 8;
  const double without = compare(net_->predict(volume(), o).data, y.data).max_abs;
  o.whole_volume_halo = 16;
  o.whole_volume_max_voxels = 32 * 16 * (8 + 2 * 16);
  const double with = compare(net_->predict(volume(), o).data, y.data).max_abs;
  std::cout << "z slabs of 8: max |p - one pass| " << without << " without halo, " << with << " with 16 voxels\n";
  EXPECT_GT(without, 1e-4);
  EXPECT_LT(with, 1e-5);
}

TEST_F(NetworkGoldenV2, LastStageSlabsOfAnySizeGiveTheOnePassResult) {
  // The last decoder stage and the head run in z slabs with 2 planes of halo (PredictOptions::last_stage_slab_planes).
  // The golden volume has 20 planes (24 padded): slabs of 1 to 5 planes (odd ones start on odd planes, between two
  // coarse planes), 8, and one slab of the whole volume all give PyTorch's one pass.
  const detail::SafetensorsTensor& y = expected_->tensors.at("volume.probabilities");
  for (const int planes : {1, 2, 3, 5, 8, 24, 100}) {
    PredictOptions o;
    o.whole_volume = true;
    o.last_stage_slab_planes = planes;
    const MultiChannelImage<Scanner> out = net_->predict(volume(), o);
    ASSERT_EQ(out.data.size(), y.data.size());
    const Diff d = compare(out.data, y.data);
    EXPECT_LT(d.max_abs, 1e-5) << planes << "-plane slabs: relative L2 " << d.rel_l2;
  }
  PredictOptions bad;
  bad.whole_volume = true;
  bad.last_stage_slab_planes = 0;
  EXPECT_THROW(net_->predict(volume(), bad), Error);
}

TEST_F(NetworkGoldenV2, BodyBoxPassIsTheOnePassOverTheBoxWithBackgroundAroundIt) {
  // The golden volume (12 x 28 x 20 voxels, i j k), all of it body, placed at (21, 13) in a 64 x 56 plane of air
  // (0 in every channel). With a margin of 2 the box is x [16, 40), y [8, 48): grown by 2 and rounded to the
  // divisor 8. Inside it the output must be the one pass over the box's input cut out by hand, at the right place;
  // outside it, background.
  const MultiChannelImage<Scanner> body = volume();
  const std::int64_t bx = body.grid.size[0], by = body.grid.size[1], nz = body.grid.size[2];
  const std::int64_t nx = 64, ny = 56, ox = 21, oy = 13;
  Grid<Scanner> g = body.grid;
  g.size = Index3{{nx, ny, nz}};
  MultiChannelImage<Scanner> scan(g, body.channels, 0.0f);
  for (int c = 0; c < body.channels; ++c)
    for (std::int64_t z = 0; z < nz; ++z)
      for (std::int64_t y = 0; y < by; ++y)
        for (std::int64_t x = 0; x < bx; ++x) {
          const float v = body.channel(c)[(z * by + y) * bx + x];
          scan.channel(c)[(z * ny + y + oy) * nx + x + ox] = c == 0 ? std::abs(v) + 0.05f : v;
        }
  const std::optional<InPlaneBox> box = body_box_in_plane(scan, 2, 8);
  ASSERT_TRUE(box.has_value());
  EXPECT_EQ(box->x.begin, 16);
  EXPECT_EQ(box->x.end, 40);
  EXPECT_EQ(box->y.begin, 8);
  EXPECT_EQ(box->y.end, 48);
  PredictOptions o;
  o.whole_volume = true;
  o.body_box_margin = 2;
  const MultiChannelImage<Scanner> out = net_->predict(scan, o);
  Grid<Scanner> cg = g;
  cg.size = Index3{{box->x.size(), box->y.size(), nz}};
  MultiChannelImage<Scanner> cut(cg, scan.channels);
  for (int c = 0; c < scan.channels; ++c)
    for (std::int64_t z = 0; z < nz; ++z)
      for (std::int64_t y = 0; y < box->y.size(); ++y)
        for (std::int64_t x = 0; x < box->x.size(); ++x)
          cut.channel(c)[(z * box->y.size() + y) * box->x.size() + x] =
              scan.channel(c)[(z * ny + y + box->y.begin) * nx + x + box->x.begin];
  o.body_box_margin = -1;
  const MultiChannelImage<Scanner> ref = net_->predict(cut, o);
  double inside = 0.0, outside = 0.0;
  for (int c = 0; c < out.channels; ++c)
    for (std::int64_t z = 0; z < nz; ++z)
      for (std::int64_t y = 0; y < ny; ++y)
        for (std::int64_t x = 0; x < nx; ++x) {
          const float p = out.channel(c)[(z * ny + y) * nx + x];
          const bool in = x >= box->x.begin && x < box->x.end && y >= box->y.begin && y < box->y.end;
          if (in)
            inside = std::max(inside, std::abs(static_cast<double>(p) -
                                               ref.channel(c)[(z * box->y.size() + y - box->y.begin) * box->x.size() +
                                                              x - box->x.begin]));
          else
            outside = std::max(outside, std::abs(static_cast<double>(p) - (c == 0 ? 1.0 : 0.0)));
        }
  EXPECT_LT(inside, 1e-6);
  EXPECT_EQ(outside, 0.0);
  // the whole plane (o.body_box_margin is still -1), for contrast: the same network sees the air around the box, so
  // its output there is not 1
  const MultiChannelImage<Scanner> plane = net_->predict(scan, o);
  EXPECT_NE(plane.channel(0)[0], 1.0f);
}

TEST_F(NetworkGoldenV2, SlidingWindowAgreesWithTheWholeVolumeAwayFromTileBorders) {
  // Tile-independent model: the reference sliding window and the whole-volume pass differ only where a tile's
  // zero padding reaches into its receptive field; the argmax labels agree almost everywhere.
  PredictOptions whole;
  whole.whole_volume = true;
  const MultiChannelImage<Scanner> a = net_->predict(volume(), whole);
  PredictOptions tiles = reference_predict_options(net_->card());
  EXPECT_TRUE(tiles.whole_volume) << "a tile-independent model's reference is its one pass";
  EXPECT_EQ(tiles.precision, Precision::Float32);
  tiles.whole_volume = false;  // the sliding window
  const MultiChannelImage<Scanner> b = net_->predict(volume(), tiles);
  const std::int64_t n = a.grid.voxels();
  std::int64_t same = 0;
  for (std::int64_t v = 0; v < n; ++v) {
    int la = 0, lb = 0;
    for (int c = 1; c < a.channels; ++c) {
      if (a.channel(c)[v] > a.channel(la)[v]) la = c;
      if (b.channel(c)[v] > b.channel(lb)[v]) lb = c;
    }
    same += la == lb;
  }
  RecordProperty("argmax_agreement", std::to_string(static_cast<double>(same) / static_cast<double>(n)));
  EXPECT_GT(static_cast<double>(same) / static_cast<double>(n), 0.5);
}

TEST_F(NetworkGoldenV2, WholeVolumeIsRefusedForAnInstanceNormModel) {
  const Network v1(fixture("unet_golden.safetensors"), {"cpu"});
  PredictOptions o;
  o.whole_volume = true;
  EXPECT_FALSE(fast_predict_options(v1.card(), "cpu").whole_volume);
  try {
    (void)v1.predict(volume(), o);
    ADD_FAILURE() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Usage);
    EXPECT_NE(std::string(e.what()).find("InstanceNorm"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ctarr
