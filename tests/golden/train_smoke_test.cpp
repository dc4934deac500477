// Smoke test of the training package: `python3 -m ctarr_train --smoke` (python/ctarr_train) trains a few steps on
// the built-in phantom, commits a resumable state, evaluates, and exports ctarr-unet.safetensors + its card with the
// BatchNorm folded; the C++ Network must load that model (card fields, sha256, names and shapes) and run it over the
// whole volume and with the sliding window. Skipped where /usr/bin/python3 or its torch is missing.
#include "ctarr/network.hpp"

#include "support/support.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <string>

namespace ctarr {
namespace {

namespace fs = std::filesystem;

const char* const kPython = "/usr/bin/python3";

TEST(TrainSmoke, WritesAModelThatTheNetworkLoadsAndRuns) {
  if (!fs::exists(kPython)) GTEST_SKIP() << "skipped: " << kPython << " not found";
  std::string probe;
  if (test::run_command(std::string(kPython) + " -c 'import torch, nibabel, scipy'", &probe) != 0)
    GTEST_SKIP() << "skipped: " << kPython << " has no torch/nibabel/scipy: " << probe;

  test::TempDir tmp;
  const std::string out = tmp.file("model");
  const std::string cmd = "PYTHONPATH=" + test::repo_dir() + "/python " + kPython + " -m ctarr_train --smoke --out " + out;
  std::string log;
  const auto t0 = std::chrono::steady_clock::now();
  const int rc = test::run_command(cmd, &log);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(rc, 0) << cmd << "\n" << log;
  RecordProperty("smoke_seconds", std::to_string(seconds));
  EXPECT_NE(log.find("done: step 4"), std::string::npos) << log;
  EXPECT_NE(log.find("committed state: step 4"), std::string::npos) << log;
  EXPECT_NE(log.find("eval step 4"), std::string::npos) << log;

  const std::string weights = out + "/ctarr-unet.safetensors";
  ASSERT_TRUE(fs::exists(weights)) << log;
  ASSERT_TRUE(fs::exists(out + "/ctarr-unet.json")) << log;
  EXPECT_LT(fs::file_size(weights), 25u * 1000u * 1000u);

  const ModelCard card = read_model_card(model_card_path(weights));
  EXPECT_EQ(card.id.rfind("ctarr-unet-v2-", 0), 0u) << card.id;
  EXPECT_EQ(card.classes.size(), 19u);
  EXPECT_DOUBLE_EQ(card.spacing_mm, 3.0);
  EXPECT_EQ(card.windows_hu, default_windows_hu());
  EXPECT_EQ(card.filters, (std::vector<int>{16, 32, 64, 128}));
  EXPECT_EQ(card.normalisation, ModelCard::Normalisation::None);
  EXPECT_TRUE(card.trained);
  EXPECT_NE(card.json.find("\"steps\": 4"), std::string::npos) << card.json;
  EXPECT_NE(card.json.find("\"validation_dice\""), std::string::npos) << card.json;

  const Network net(weights, {"cpu"});
  Grid<Scanner> g;
  g.size = Index3{{40, 36, 20}};  // i, j, k: one axis shorter than a patch, one not a multiple of it
  g.spacing = Eigen::Vector3d::Constant(3.0);
  MultiChannelImage<Scanner> input(g, 3);
  const std::int64_t n = g.voxels();
  for (int c = 0; c < 3; ++c)
    for (std::int64_t v = 0; v < n; ++v)
      input.channel(c)[v] = static_cast<float>(0.5 + 0.5 * std::sin(0.01 * static_cast<double>(v) + c));
  // whole volume (the fast path of a folded model) and the reference sliding window
  PredictOptions whole = fast_predict_options(card, "cpu");
  ASSERT_TRUE(whole.whole_volume);
  for (const PredictOptions& options : {whole, reference_predict_options(card)}) {
    const MultiChannelImage<Scanner> prob = net.predict(input, options);
    ASSERT_EQ(prob.channels, 20);
    ASSERT_EQ(prob.grid.size, g.size);
    double worst = 0.0;
    for (std::int64_t v = 0; v < n; ++v) {
      double sum = 0.0;
      for (int c = 0; c < prob.channels; ++c) {
        const float p = prob.channel(c)[v];
        ASSERT_TRUE(std::isfinite(p));
        ASSERT_GE(p, 0.0f);
        sum += p;
      }
      worst = std::max(worst, std::abs(sum - 1.0));
    }
    EXPECT_LT(worst, 1e-4);
  }
}

}  // namespace
}  // namespace ctarr
