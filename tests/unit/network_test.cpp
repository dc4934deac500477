// Unit tests of the network unit: sliding window (with predictors built in code, no model), device resolution,
// the safetensors reader and the model loader's error paths (on copies of the small golden fixture).
#include "ctarr/network.hpp"

#include "../../src/detail/safetensors.hpp"  // torch-free adapter, tested directly
#include "../../src/parallel.hpp"            // CTARR_THREADS, read in one place
#include "support/support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <random>
#include <string>

namespace ctarr {
namespace {

using test::expect_error;

MultiChannelImage<Scanner> random_image(const Index3& size, int channels, unsigned seed = 1) {
  Grid<Scanner> g;
  g.size = size;
  g.spacing = Eigen::Vector3d(3.0, 3.0, 3.0);
  MultiChannelImage<Scanner> img(g, channels);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.1f, 1.0f);  // non-zero: padding zeros stay recognisable
  for (float& v : img.data) v = u(rng);
  return img;
}

SlidingWindowOptions window(int patch) {
  SlidingWindowOptions o;
  o.patch_size = patch;
  o.overlap = 0.5;
  return o;
}

// ---- sliding window -----------------------------------------------------------------------------------------

TEST(SlidingWindow, StartsStepByHalfAPatchAndTheLastTileEndsAtTheVolumeEnd) {
  EXPECT_EQ(sliding_window_starts(150, 64, 0.5), (std::vector<std::int64_t>{0, 32, 64, 86}));
  EXPECT_EQ(sliding_window_starts(170, 64, 0.5), (std::vector<std::int64_t>{0, 32, 64, 96, 106}));
  EXPECT_EQ(sliding_window_starts(128, 64, 0.5), (std::vector<std::int64_t>{0, 32, 64}));
  EXPECT_EQ(sliding_window_starts(65, 64, 0.5), (std::vector<std::int64_t>{0, 1}));
  EXPECT_EQ(sliding_window_starts(64, 64, 0.5), (std::vector<std::int64_t>{0}));
  EXPECT_EQ(sliding_window_starts(10, 64, 0.5), (std::vector<std::int64_t>{0}));
  EXPECT_EQ(sliding_window_starts(100, 64, 0.0), (std::vector<std::int64_t>{0, 36}));
  EXPECT_EQ(sliding_window_starts(100, 64, 0.75), (std::vector<std::int64_t>{0, 16, 32, 36}));
}

TEST(SlidingWindow, ImportanceMapPeaksAtOneInTheCentreAndFollowsSigma) {
  for (int p : {8, 9, 64}) {
    const std::vector<float> w = gaussian_importance_map(p, 0.125);
    ASSERT_EQ(w.size(), static_cast<std::size_t>(p * p * p));
    float mx = 0.0f, mn = 2.0f;
    for (float v : w) {
      mx = std::max(mx, v);
      mn = std::min(mn, v);
    }
    EXPECT_FLOAT_EQ(mx, 1.0f) << p;
    EXPECT_GE(mn, kMinImportance) << p;
    auto at = [&](int i, int j, int k) { return w[static_cast<std::size_t>((k * p + j) * p + i)]; };
    EXPECT_FLOAT_EQ(at(0, 1, 2), at(p - 1, p - 2, p - 3)) << "symmetric";
    EXPECT_FLOAT_EQ(at(0, 1, 2), at(2, 0, 1)) << "isotropic";
  }
  // Odd patch 65, centre voxel 32, sigma 65/8 voxels: 8 voxels off-centre along i weighs exp(-(8/sigma)^2/2).
  const std::vector<float> w = gaussian_importance_map(65, 0.125);
  auto at = [&](int i, int j, int k) { return w[static_cast<std::size_t>((k * 65 + j) * 65 + i)]; };
  EXPECT_FLOAT_EQ(at(32, 32, 32), 1.0f);
  EXPECT_NEAR(at(32 + 8, 32, 32), std::exp(-0.5 * std::pow(8.0 / 8.125, 2.0)), 1e-6);
  // Corners are far out in the tail and clamped.
  EXPECT_FLOAT_EQ(at(0, 0, 0), kMinImportance);
}

// Output channel 0 = input channel 0, channel 1 = 2 x input channel 1, channel 2 = input channel 0 + 1.
void identity_ish(int p, const float* in, float* out) {
  const std::size_t n = static_cast<std::size_t>(p) * static_cast<std::size_t>(p) * static_cast<std::size_t>(p);
  for (std::size_t v = 0; v < n; ++v) {
    out[v] = in[v];
    out[n + v] = 2.0f * in[n + v];
    out[2 * n + v] = in[v] + 1.0f;
  }
}

TEST(SlidingWindow, IdentityPredictorReproducesTheInputForSmallerEqualAndLargerVolumes) {
  const int p = 8;
  for (const Index3& size : {Index3{{5, 7, 3}}, Index3{{8, 8, 8}}, Index3{{19, 8, 13}}, Index3{{16, 24, 9}},
                             Index3{{1, 1, 1}}, Index3{{30, 3, 17}}}) {
    const MultiChannelImage<Scanner> in = random_image(size, 2);
    const MultiChannelImage<Scanner> out =
        sliding_window(in, 3, [&](const float* x, float* y) { identity_ish(p, x, y); }, window(p));
    ASSERT_EQ(out.channels, 3);
    ASSERT_EQ(out.grid.size, in.grid.size);
    EXPECT_EQ(out.grid.spacing, in.grid.spacing);
    const auto n = static_cast<std::size_t>(in.grid.voxels());
    ASSERT_EQ(out.data.size(), 3 * n);
    for (std::size_t v = 0; v < n; ++v) {
      ASSERT_NEAR(out.data[v], in.data[v], 1e-6f * in.data[v]) << size << " voxel " << v;
      ASSERT_NEAR(out.data[n + v], 2.0f * in.data[n + v], 2e-6f * in.data[n + v]) << size << " voxel " << v;
      ASSERT_NEAR(out.data[2 * n + v], in.data[v] + 1.0f, 2e-6f) << size << " voxel " << v;
    }
  }
}

TEST(SlidingWindow, VoxelsOutsideASmallVolumeAreFedAsZeros) {
  const int p = 8;
  const MultiChannelImage<Scanner> in = random_image(Index3{{5, 7, 3}}, 1);
  int calls = 0;
  sliding_window(
      in, 1,
      [&](const float* x, float* y) {
        ++calls;
        for (int k = 0; k < p; ++k)
          for (int j = 0; j < p; ++j)
            for (int i = 0; i < p; ++i) {
              const float v = x[(k * p + j) * p + i];
              if (i < 5 && j < 7 && k < 3)
                EXPECT_EQ(v, in.data[static_cast<std::size_t>((k * 7 + j) * 5 + i)]);
              else
                EXPECT_EQ(v, 0.0f);
            }
        std::fill(y, y + p * p * p, 0.0f);
      },
      window(p));
  EXPECT_EQ(calls, 1);
}

TEST(SlidingWindow, OutputIsTheImportanceWeightedMeanOfOverlappingTiles) {
  // Each tile predicts a constant: its own index. The result must be sum_t w_t(x) t / sum_t w_t(x).
  const int p = 8;
  const Index3 size{{13, 9, 20}};
  const MultiChannelImage<Scanner> in = random_image(size, 1);
  int tile = 0;
  const MultiChannelImage<Scanner> out = sliding_window(
      in, 1, [&](const float*, float* y) { std::fill(y, y + p * p * p, static_cast<float>(tile++)); }, window(p));

  const auto si = sliding_window_starts(13, p, 0.5), sj = sliding_window_starts(9, p, 0.5),
             sk = sliding_window_starts(20, p, 0.5);
  EXPECT_EQ(tile, static_cast<int>(si.size() * sj.size() * sk.size()));
  const std::vector<float> w = gaussian_importance_map(p, 0.125);
  std::vector<double> num(static_cast<std::size_t>(in.grid.voxels()), 0.0), den(num.size(), 0.0);
  int t = 0;
  for (auto k0 : sk)  // tiles are visited k, then j, then i (i fastest)
    for (auto j0 : sj)
      for (auto i0 : si) {
        for (int k = 0; k < p; ++k)
          for (int j = 0; j < p; ++j)
            for (int i = 0; i < p; ++i) {
              const Index3 idx{{i0 + i, j0 + j, k0 + k}};
              const double wt = w[static_cast<std::size_t>((k * p + j) * p + i)];
              num[in.grid.linear(idx)] += wt * t;
              den[in.grid.linear(idx)] += wt;
            }
        ++t;
      }
  for (std::size_t v = 0; v < num.size(); ++v) ASSERT_NEAR(out.data[v], num[v] / den[v], 1e-4) << v;
}

TEST(SlidingWindow, ConstantPredictionStaysConstant) {
  const int p = 16;
  const MultiChannelImage<Scanner> in = random_image(Index3{{40, 23, 17}}, 1);
  const MultiChannelImage<Scanner> out =
      sliding_window(in, 2, [&](const float*, float* y) { std::fill(y, y + 2 * p * p * p, 0.25f); }, window(p));
  for (float v : out.data) ASSERT_NEAR(v, 0.25f, 1e-6f);
}

TEST(SlidingWindow, BatchedAndSingleTileRunsAgree) {
  const int p = 8;
  const MultiChannelImage<Scanner> in = random_image(Index3{{19, 12, 13}}, 2);
  const auto single = sliding_window(in, 3, [&](const float* x, float* y) { identity_ish(p, x, y); }, window(p));
  const std::size_t in_n = 2u * p * p * p, out_n = 3u * p * p * p;
  int batches = 0;
  const auto batched = sliding_window_batched(
      in, 3,
      [&](int count, const float* x, float* y) {
        ++batches;
        EXPECT_LE(count, 4);
        for (int b = 0; b < count; ++b) identity_ish(p, x + b * in_n, y + b * out_n);
      },
      window(p), 4);
  const std::size_t tiles = sliding_window_starts(19, p, 0.5).size() * sliding_window_starts(12, p, 0.5).size() *
                            sliding_window_starts(13, p, 0.5).size();
  EXPECT_EQ(tiles, 4u * 2u * 3u);
  EXPECT_EQ(batches, static_cast<int>((tiles + 3) / 4));
  EXPECT_EQ(single.data, batched.data);
}

TEST(SlidingWindow, AirTilesAreSkippedAndEveryOtherVoxelKeepsTheReferenceValue) {
  // Channel 0 is 0 (air) for i < 20: with 8^3 tiles every 4 voxels, the tiles starting at i <= 12 hold only air.
  const int p = 8;
  MultiChannelImage<Scanner> in = random_image(Index3{{40, 12, 13}}, 2);
  const auto nx = in.grid.size[0];
  const auto voxels = static_cast<std::size_t>(in.grid.voxels());
  for (std::size_t v = 0; v < voxels; ++v)
    if (static_cast<std::int64_t>(v) % nx < 20) in.data[v] = 0.0f;
  const auto predict = [&](const float* x, float* y) { identity_ish(p, x, y); };
  const auto reference = sliding_window(in, 3, predict, window(p));
  SlidingWindowOptions skip = window(p);
  skip.skip_tile_max_input = 0.0f;
  int calls = 0;
  const auto fast = sliding_window(in, 3, [&](const float* x, float* y) { ++calls; predict(x, y); }, skip);
  const std::size_t rows = sliding_window_starts(12, p, 0.5).size() * sliding_window_starts(13, p, 0.5).size();
  EXPECT_EQ(static_cast<std::size_t>(calls), (sliding_window_starts(40, p, 0.5).size() - 4) * rows);  // i0 = 0, 4, 8, 12
  for (std::size_t v = 0; v < voxels; ++v) {
    const auto i = static_cast<std::int64_t>(v) % nx;
    if (i >= 20) {  // only in run tiles: exactly the reference
      for (int c = 0; c < 3; ++c) ASSERT_EQ(fast.data[static_cast<std::size_t>(c) * voxels + v], reference.data[static_cast<std::size_t>(c) * voxels + v]) << v;
    } else if (i < 16) {  // only in skipped tiles: background
      ASSERT_FLOAT_EQ(fast.data[v], 1.0f) << v;
      ASSERT_FLOAT_EQ(fast.data[voxels + v], 0.0f) << v;
    }
  }
}

TEST(SlidingWindow, WithACoreMarginTilesWithAnAirCoreAreSkippedAndBodyVoxelsKeepRunTilesOnly) {
  // Body (channel 0 > 0) for i >= 22; 8^3 tiles every 4 voxels; margin 2. The tile at i0 = 16 spans 16..23 with
  // core 18..21: all air, so it is skipped although voxels 22 and 23 (body) lie in it; they lie in the core of the
  // tile at 20 (core 22..25), which runs.
  const int p = 8;
  MultiChannelImage<Scanner> in = random_image(Index3{{40, 12, 13}}, 2);
  const auto nx = in.grid.size[0];
  const auto voxels = static_cast<std::size_t>(in.grid.voxels());
  for (std::size_t v = 0; v < voxels; ++v) {
    if (static_cast<std::int64_t>(v) % nx < 22) in.data[v] = 0.0f;
    else in.data[v] = 0.5f + 0.5f * std::abs(in.data[v]);  // strictly above the threshold
  }
  const auto predict = [&](const float* x, float* y) { identity_ish(p, x, y); };
  const auto reference = sliding_window(in, 3, predict, window(p));
  SlidingWindowOptions whole = window(p), core = window(p);
  whole.skip_tile_max_input = core.skip_tile_max_input = 0.0f;
  core.skip_core_margin = 2;
  int calls_whole = 0, calls_core = 0;
  sliding_window(in, 3, [&](const float* x, float* y) { ++calls_whole; predict(x, y); }, whole);
  const auto fast = sliding_window(in, 3, [&](const float* x, float* y) { ++calls_core; predict(x, y); }, core);
  const std::size_t rows = sliding_window_starts(12, p, 0.5).size() * sliding_window_starts(13, p, 0.5).size();
  const std::size_t columns = sliding_window_starts(40, p, 0.5).size();
  EXPECT_EQ(static_cast<std::size_t>(calls_whole), (columns - 4) * rows);  // i0 = 0, 4, 8, 12 all air
  EXPECT_EQ(static_cast<std::size_t>(calls_core), (columns - 5) * rows);   // and i0 = 16 by its core
  // identity_ish predicts channel 0 = the input's channel 0 in every tile, so any weighted mean of run tiles gives
  // back the input there; a skipped tile's background (1) mixed in would not.
  for (std::size_t v = 0; v < voxels; ++v) {
    const auto i = static_cast<std::int64_t>(v) % nx;
    if (i >= 24) {  // in no skipped tile: exactly the reference
      for (int c = 0; c < 3; ++c)
        ASSERT_EQ(fast.data[static_cast<std::size_t>(c) * voxels + v], reference.data[static_cast<std::size_t>(c) * voxels + v]) << v;
    } else if (i >= 22) {  // body in the skipped tile's periphery: from the run tiles only
      ASSERT_NEAR(fast.data[v], in.data[v], 1e-5f) << v;
      ASSERT_NEAR(reference.data[v], in.data[v], 1e-5f) << v;
    } else if (i < 16) {  // only in skipped tiles: background
      ASSERT_FLOAT_EQ(fast.data[v], 1.0f) << v;
    }
  }
}

TEST(BodyBox, IsTheBodysInPlaneBoxGrownRoundedToTheDivisorAndClamped) {
  Grid<Scanner> g;
  g.size = Index3{{50, 40, 10}};
  MultiChannelImage<Scanner> img(g, 3, 0.0f);
  const auto set = [&](std::int64_t x, std::int64_t y, std::int64_t z, float v) {
    img.channel(0)[(z * 40 + y) * 50 + x] = v;
  };
  EXPECT_FALSE(body_box_in_plane(img, 4, 8).has_value()) << "air only";
  // a body at x 20..29, y 11..24, every slice; a few noise voxels elsewhere (fewer than kBodyBoxMinVoxels per
  // column and row) and voxels at exactly 0 (the window's lower bound: air) that must not count
  for (std::int64_t z = 0; z < 10; ++z)
    for (std::int64_t y = 11; y < 25; ++y)
      for (std::int64_t x = 20; x < 30; ++x) set(x, y, z, 0.3f);
  for (std::int64_t z = 0; z < kBodyBoxMinVoxels - 1; ++z) set(45, 2, z, 0.9f);
  for (std::int64_t z = 0; z < 10; ++z)
    for (std::int64_t y = 0; y < 40; ++y) set(2, y, z, 0.0f);
  std::optional<InPlaneBox> b = body_box_in_plane(img, 0, 1);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->x.begin, 20);
  EXPECT_EQ(b->x.end, 30);
  EXPECT_EQ(b->y.begin, 11);
  EXPECT_EQ(b->y.end, 25);
  b = body_box_in_plane(img, 3, 8);  // x 17..33 -> [16, 40); y 8..28 -> [8, 32)
  EXPECT_EQ(b->x.begin, 16);
  EXPECT_EQ(b->x.end, 40);
  EXPECT_EQ(b->y.begin, 8);
  EXPECT_EQ(b->y.end, 32);
  b = body_box_in_plane(img, 30, 8);  // clamped to the grid, the end not rounded past it
  EXPECT_EQ(b->x.begin, 0);
  EXPECT_EQ(b->x.end, 50);
  EXPECT_EQ(b->y.begin, 0);
  EXPECT_EQ(b->y.end, 40);
  set(45, 2, kBodyBoxMinVoxels - 1, 0.9f);  // now column x = 45 and row y = 2 hold enough body
  b = body_box_in_plane(img, 0, 1);
  EXPECT_EQ(b->x.end, 46);
  EXPECT_EQ(b->y.begin, 2);
}

TEST(BodyBox, FastPathUsesItOnlyForAWholeVolumeModel) {
  ModelCard folded;
  folded.normalisation = ModelCard::Normalisation::None;
  EXPECT_EQ(fast_predict_options(folded, "cpu").body_box_margin, kFastBodyBoxMarginVoxels);
  EXPECT_LT(reference_predict_options(folded).body_box_margin, 0) << "the reference runs the whole plane";
  ModelCard tiled;
  tiled.normalisation = ModelCard::Normalisation::Instance;
  EXPECT_LT(fast_predict_options(tiled, "cpu").body_box_margin, 0);
}

TEST(SlidingWindow, InvalidOptionsAreUsageErrors) {
  const MultiChannelImage<Scanner> in = random_image(Index3{{4, 4, 4}}, 1);
  auto noop = [](const float*, float*) {};
  SlidingWindowOptions bad = window(8);
  bad.overlap = 1.0;
  try {
    sliding_window(in, 1, noop, bad);
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Usage);
  }
  bad = window(0);
  expect_error([&] { sliding_window(in, 1, noop, bad); }, ErrorCode::Usage, {"patch size must be positive, got 0"});
}

// ---- device ---------------------------------------------------------------------------------------------------

TEST(Device, CpuIsAlwaysAvailableAndAutoPicksCudaOnlyWhenPresent) {
  EXPECT_EQ(resolve_device({"cpu"}), "cpu");
  // "auto" is CUDA exactly when an explicit CUDA request succeeds, and then the first GPU; otherwise the CPU.
  std::string cuda;
  try {
    cuda = resolve_device({"cuda"});
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::ModelFailure) << e.what();
  }
  EXPECT_EQ(resolve_device({"auto"}), cuda.empty() ? "cpu" : "cuda:0");
  if (!cuda.empty()) {
    EXPECT_EQ(cuda, "cuda:0");
  }
  expect_error([] { resolve_device({"gpu"}); }, ErrorCode::Usage, {"unknown device 'gpu'"});
}

// CTARR_THREADS is read in one place for ctarr's loops and LibTorch's pool, with one rule: a whole number 1..4096.
TEST(Threads, CtarrThreadsIsAWholeNumberOrAUsageErrorNamingIt) {
  const char* before = std::getenv("CTARR_THREADS");
  const std::string saved = before ? before : "";
  ::setenv("CTARR_THREADS", "3", 1);
  EXPECT_EQ(configured_threads(), 3);
  for (const char* bad : {"2x", "0", "-1", "4097", " 2"}) {
    ::setenv("CTARR_THREADS", bad, 1);
    expect_error([] { configured_threads(); }, ErrorCode::Usage, {"CTARR_THREADS='" + std::string(bad) + "'"});
  }
  ::unsetenv("CTARR_THREADS");
  EXPECT_GE(configured_threads(), 1);
  if (before) ::setenv("CTARR_THREADS", saved.c_str(), 1);
}

TEST(Device, CudaRequestWithoutCudaIsAModelFailureNotAFallback) {
  if (resolve_device({"auto"}) != "cpu") GTEST_SKIP() << "CUDA is available here";
  for (const char* text : {"cuda", "cuda:0", "cuda:3"}) {
    try {
      resolve_device({text});
      FAIL() << text << " did not throw";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::ModelFailure) << text;
      EXPECT_NE(std::string(e.what()).find("CUDA device requested"), std::string::npos) << e.what();
    }
  }
}

TEST(Device, MalformedDeviceIsAUsageError) {
  for (const char* text : {"", "gpu", "CPU", "cuda:", "cuda:x", "cuda:-1", "cuda0", "cuda:1:2", " cpu"}) {
    try {
      resolve_device({text});
      FAIL() << "'" << text << "' did not throw";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Usage) << text;
    }
  }
}

// ---- safetensors ------------------------------------------------------------------------------------------------

std::string golden(const std::string& name) { return test::repo_dir() + "/tests/golden/data/" + name; }

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A safetensors file from a header text and raw data.
std::string safetensors_bytes(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

// Expects fn() to throw Error(ModelFailure) whose message names `path` (and contains `what` when given).
void expect_model_failure(const std::function<void()>& fn, const std::string& path, const std::string& what = "") {
  try {
    fn();
    FAIL() << "no throw (expected a ModelFailure about " << path << ")";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::ModelFailure) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    if (!what.empty()) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  }
}

TEST(Safetensors, WrittenFilesReadBackExactly) {
  test::TempDir dir;
  detail::SafetensorsFile f;
  f.metadata["note"] = "x";
  f.tensors["b"] = {{2, 3}, {1, 2, 3, 4, 5, 6}, "F32"};
  f.tensors["a"] = {{1}, {-0.5f}, "F32"};
  f.tensors["empty"] = {{0, 4}, {}, "F32"};
  detail::write_safetensors(dir.file("t.safetensors"), f);
  const detail::SafetensorsFile r = detail::read_safetensors(dir.file("t.safetensors"));
  EXPECT_EQ(r.metadata, f.metadata);
  ASSERT_EQ(r.tensors.size(), 3u);
  for (const auto& [name, t] : f.tensors) {
    EXPECT_EQ(r.tensors.at(name).shape, t.shape) << name;
    EXPECT_EQ(r.tensors.at(name).data, t.data) << name;
  }
}

TEST(Safetensors, HalfAndBfloat16AreConvertedToFloat) {
  test::TempDir dir;
  // F16: 1, -2, 0.5, smallest subnormal (2^-24); BF16: 1, -3.
  const unsigned char f16[] = {0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38, 0x01, 0x00};
  const unsigned char bf16[] = {0x80, 0x3f, 0x40, 0xc0};
  const std::string data = std::string(reinterpret_cast<const char*>(f16), 8) + std::string(reinterpret_cast<const char*>(bf16), 4);
  write_bytes(dir.file("h.safetensors"),
              safetensors_bytes(R"({"h":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},)"
                                R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]}})",
                                data));
  const auto r = detail::read_safetensors(dir.file("h.safetensors"));
  EXPECT_EQ(r.tensors.at("h").data, (std::vector<float>{1.0f, -2.0f, 0.5f, std::ldexp(1.0f, -24)}));
  EXPECT_EQ(r.tensors.at("b").data, (std::vector<float>{1.0f, -3.0f}));
}

TEST(Safetensors, EveryInconsistencyIsAModelFailureNamingTheFile) {
  test::TempDir dir;
  const std::string p = dir.file("bad.safetensors");
  const std::string data(16, '\0');
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "shorter than"},                                                                  // no header length
      {safetensors_bytes("{}", "").substr(0, 6), "shorter than"},                           // 6 bytes
      {std::string("\xff\x00\x00\x00\x00\x00\x00\x00", 8) + "{}", "exceeds the file size"},  // header > file
      {safetensors_bytes("{not json", ""), "not valid JSON"},
      {safetensors_bytes(R"({"a":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}})", data), "dtype I64"},
      {safetensors_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", data), "needs 12 bytes"},
      {safetensors_bytes(R"({"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}})", data), "needs more bytes"},
      {safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,24]}})", data), "ends at byte 24"},
      {safetensors_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                         R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                         data),
       "overlaps"},
      {safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", data), "hole"},
      {safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data), "after the last tensor"},
      {safetensors_bytes(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data), "shape entry"},
      {safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2]}})", data), "data_offsets"},
      {safetensors_bytes(R"([1,2])", data), "not a JSON object"},
  };
  for (const auto& [bytes, what] : cases) {
    write_bytes(p, bytes);
    expect_model_failure([&] { detail::read_safetensors(p); }, p, what);
  }
  expect_model_failure([&] { detail::read_safetensors(dir.file("missing.safetensors")); }, dir.file("missing.safetensors"));
}

TEST(Safetensors, Sha256MatchesKnownDigests) {
  test::TempDir dir;
  write_bytes(dir.file("abc"), "abc");
  EXPECT_EQ(detail::sha256_file_hex(dir.file("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  write_bytes(dir.file("empty"), "");
  EXPECT_EQ(detail::sha256_file_hex(dir.file("empty")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  write_bytes(dir.file("long"), std::string(1000001, 'a'));  // crosses the 1 MiB read buffer and block boundaries
  EXPECT_EQ(detail::sha256_file_hex(dir.file("long")), "9710f0882e9694259bf237c37b53b170f63b30b2addce6d498107ab6e4f9c3a5")
      << "(digest of 1000001 'a' computed with sha256sum)";
}

// ---- model card and weights loading ---------------------------------------------------------------------------

// Copies the golden model into `dir` as model.safetensors with `edit` applied to its tensors, and a card whose
// sha256 matches the edited file (so that the name/shape checks, not the checksum, are what fires).
std::string edited_model(const test::TempDir& dir, const std::function<void(detail::SafetensorsFile&)>& edit) {
  detail::SafetensorsFile f = detail::read_safetensors(golden("unet_golden.safetensors"));
  edit(f);
  const std::string path = dir.file("model.safetensors");
  detail::write_safetensors(path, f);
  std::string card = read_bytes(golden("unet_golden.json"));
  const std::string old_sha = detail::sha256_file_hex(golden("unet_golden.safetensors"));
  const auto at = card.find(old_sha);
  EXPECT_NE(at, std::string::npos);
  card.replace(at, old_sha.size(), detail::sha256_file_hex(path));
  write_bytes(dir.file("model.json"), card);
  return path;
}

TEST(ModelCard, GoldenCardIsParsedAndKeptVerbatim) {
  const ModelCard c = read_model_card(golden("unet_golden.json"));
  EXPECT_EQ(c.id, "ctarr-unet-golden");
  ASSERT_EQ(c.classes.size(), 19u);
  EXPECT_EQ(c.classes.front(), "skull");
  EXPECT_EQ(c.classes.back(), "urinary_bladder");
  EXPECT_EQ(c.spacing_mm, 3.0);
  EXPECT_EQ(c.windows_hu, default_windows_hu());
  EXPECT_EQ(c.patch_size, 16);
  EXPECT_EQ(c.filters, (std::vector<int>{4, 8, 16, 32}));
  EXPECT_EQ(c.sha256, detail::sha256_file_hex(golden("unet_golden.safetensors")));
  EXPECT_FALSE(c.trained);
  EXPECT_EQ(c.json, read_bytes(golden("unet_golden.json")));
  EXPECT_EQ(model_card_path("/a/b/ctarr-unet.safetensors"), "/a/b/ctarr-unet.json");
}

TEST(ModelCard, MissingOrInvalidCardIsAModelFailureNamingIt) {
  test::TempDir dir;
  const std::string w = edited_model(dir, [](detail::SafetensorsFile&) {});
  std::remove(dir.file("model.json").c_str());
  expect_model_failure([&] { Network n(w); }, dir.file("model.json"));
  write_bytes(dir.file("model.json"), R"({"id": "x", "classes": []})");
  expect_model_failure([&] { Network n(w); }, dir.file("model.json"), "classes");
  write_bytes(dir.file("model.json"), "{");
  expect_model_failure([&] { Network n(w); }, dir.file("model.json"), "invalid JSON");
}

// Replaces the first occurrence of `from` in the golden card by `to` and writes it as dir/model.json.
void write_edited_card(const test::TempDir& dir, const std::string& from, const std::string& to) {
  std::string card = read_bytes(dir.file("model.json"));
  const auto at = card.find(from);
  ASSERT_NE(at, std::string::npos) << from;
  card.replace(at, from.size(), to);
  write_bytes(dir.file("model.json"), card);
}

TEST(ModelCard, ClassesOtherThanCtarrsNineteenInOrderAreRefusedNamingTheCard) {
  test::TempDir dir;
  const std::string w = edited_model(dir, [](detail::SafetensorsFile&) {});
  const std::string original = read_bytes(dir.file("model.json"));
  // a consistent-looking card with a 20th class (it used to overrun a 19-channel buffer in `ctarr segment`)
  write_edited_card(dir, "\"urinary_bladder\"", "\"urinary_bladder\", \"pancreas\"");
  expect_model_failure([&] { Network n(w); }, dir.file("model.json"), "the card lists 20");
  // the right names in another order
  write_bytes(dir.file("model.json"), original);
  write_edited_card(dir, "\"kidney_left\",\n    \"kidney_right\"", "\"kidney_right\",\n    \"kidney_left\"");
  expect_model_failure([&] { Network n(w); }, dir.file("model.json"),
                       "channel 17 is \"kidney_right\" where \"kidney_left\" is expected");
  // one class fewer
  write_bytes(dir.file("model.json"), original);
  write_edited_card(dir, ",\n    \"urinary_bladder\"", "");
  expect_model_failure([&] { Network n(w); }, dir.file("model.json"), "the card lists 18");
}

TEST(ModelCard, ArchitectureObjectIsValidated) {
  test::TempDir dir;
  const std::string w = edited_model(dir, [](detail::SafetensorsFile&) {});
  const nlohmann::json original = nlohmann::json::parse(read_bytes(dir.file("model.json")));
  const auto with_architecture = [&](const nlohmann::json& a) {
    nlohmann::json card = original;
    card["architecture"] = a;
    write_bytes(dir.file("model.json"), card.dump(2));
  };
  with_architecture({{"stages", 4}, {"normalisation", "group"}});
  expect_model_failure([&] { Network n(w); }, dir.file("model.json"), "\"group\"");
  with_architecture({{"stages", 3}, {"normalisation", "instance"}});
  expect_model_failure([&] { Network n(w); }, dir.file("model.json"), "architecture.stages");
  with_architecture({{"stages", 4}});
  expect_model_failure([&] { Network n(w); }, dir.file("model.json"), "architecture.normalisation");
  // instance normalisation named explicitly loads like the legacy text
  with_architecture({{"stages", 4}, {"normalisation", "instance"}});
  EXPECT_EQ(Network(w).card().normalisation, ModelCard::Normalisation::Instance);
  // "none" on InstanceNorm weights: the weights do not match the network the card describes
  with_architecture({{"stages", 4}, {"normalisation", "none"}});
  expect_model_failure([&] { Network n(w); }, w, "missing");
  // a legacy card (architecture as text) must have 4 stages
  nlohmann::json legacy = original;
  legacy["filters"] = {4, 8, 16};
  write_bytes(dir.file("model.json"), legacy.dump(2));
  expect_model_failure([&] { Network n(w); }, dir.file("model.json"), "4 stages");
}

TEST(Network, GoldenModelLoads) {
  Network net(golden("unet_golden.safetensors"), {"cpu"});
  EXPECT_EQ(net.device(), "cpu");
  EXPECT_EQ(net.card().id, "ctarr-unet-golden");
}

TEST(Network, TruncatedWeightsAreAModelFailureNamingTheFile) {
  test::TempDir dir;
  const std::string w = edited_model(dir, [](detail::SafetensorsFile&) {});
  const std::string bytes = read_bytes(w);
  write_bytes(w, bytes.substr(0, bytes.size() - 100));
  expect_model_failure([&] { Network n(w); }, w, "ends at byte");
  write_bytes(w, bytes.substr(0, 100));  // cut inside the header
  expect_model_failure([&] { Network n(w); }, w, "exceeds the file size");
}

TEST(Network, WeightsNotMatchingTheCardChecksumAreRefused) {
  test::TempDir dir;
  const std::string w = edited_model(dir, [](detail::SafetensorsFile&) {});
  write_bytes(dir.file("model.json"), read_bytes(golden("unet_golden.json")));  // the original sha256
  detail::SafetensorsFile f = detail::read_safetensors(w);
  f.tensors.at("head.bias").data[0] += 1.0f;
  detail::write_safetensors(w, f);
  expect_model_failure([&] { Network n(w); }, w, "sha256");
}

TEST(Network, MissingTensorIsAModelFailureNamingFileAndTensor) {
  test::TempDir dir;
  const std::string w = edited_model(dir, [](detail::SafetensorsFile& f) { f.tensors.erase("decoder.1.0.norm.bias"); });
  expect_model_failure([&] { Network n(w); }, w, "decoder.1.0.norm.bias");
}

TEST(Network, WrongShapeIsAModelFailureNamingFileAndTensor) {
  test::TempDir dir;
  const std::string w = edited_model(dir, [](detail::SafetensorsFile& f) {
    auto& t = f.tensors.at("encoder.2.1.conv.weight");  // [16, 16, 3, 3, 3] -> [16, 16, 27]
    t.shape = {16, 16, 27};
  });
  expect_model_failure([&] { Network n(w); }, w, "encoder.2.1.conv.weight is [16, 16, 27], expected [16, 16, 3, 3, 3]");
}

TEST(Network, ExtraTensorIsAModelFailure) {
  test::TempDir dir;
  const std::string w = edited_model(dir, [](detail::SafetensorsFile& f) {
    f.tensors["encoder.0.0.norm.running_mean"] = {{4}, {0, 0, 0, 0}, "F32"};
  });
  expect_model_failure([&] { Network n(w); }, w, "encoder.0.0.norm.running_mean");
}

TEST(Network, MissingWeightsFileIsAModelFailure) {
  test::TempDir dir;
  expect_model_failure([&] { Network n(dir.file("none.safetensors")); }, dir.file("none.safetensors"), "not found");
}

TEST(Network, PredictGivesProbabilitiesOnTheInputGrid) {
  Network net(golden("unet_golden.safetensors"), {"cpu"});
  const MultiChannelImage<Scanner> in = random_image(Index3{{10, 20, 9}}, 3);
  const MultiChannelImage<Scanner> out = net.predict(in, window(16));
  ASSERT_EQ(out.channels, 20);
  ASSERT_EQ(out.grid.size, in.grid.size);
  const auto n = static_cast<std::size_t>(in.grid.voxels());
  for (std::size_t v = 0; v < n; ++v) {
    double sum = 0.0;
    for (int c = 0; c < 20; ++c) {
      const float pr = out.channel(c)[v];
      ASSERT_GE(pr, 0.0f);
      ASSERT_LE(pr, 1.0f);
      sum += pr;
    }
    ASSERT_NEAR(sum, 1.0, 1e-5) << v;
  }
}

TEST(Network, WrongChannelCountOrPatchSizeIsRefused) {
  Network net(golden("unet_golden.safetensors"), {"cpu"});
  expect_error([&] { net.predict(random_image(Index3{{8, 8, 8}}, 2), window(16)); }, ErrorCode::Internal,
               {"input has 2 channels"});
  expect_error([&] { net.predict(random_image(Index3{{8, 8, 8}}, 3), window(12)); }, ErrorCode::Usage,
               {"patch size must be a multiple of"});
  expect_error([&] { net.logits(std::vector<float>(3 * 8 * 8 * 12), {8, 8, 12}); }, ErrorCode::Usage,
               {"input sizes must be positive multiples of"});
}

}  // namespace
}  // namespace ctarr
