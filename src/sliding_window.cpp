// ctarr — the sliding window over a volume, with Gaussian importance weighting (see network.hpp). No torch: the
// patches go to a predictor function (the network's, or a test's).
#include "ctarr/network.hpp"

#include "ctarr/error.hpp"
#include "ctarr/log.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace ctarr {

namespace {

void check_options(const SlidingWindowOptions& o) {
  if (o.patch_size < 1) throw Error(ErrorCode::Usage, "sliding window: patch size must be positive, got " + std::to_string(o.patch_size));
  if (!(o.overlap >= 0.0 && o.overlap < 1.0))
    throw Error(ErrorCode::Usage, "sliding window: overlap must be in [0, 1), got " + std::to_string(o.overlap));
  if (!(o.sigma_fraction > 0.0) || !std::isfinite(o.sigma_fraction))
    throw Error(ErrorCode::Usage, "sliding window: sigma fraction must be positive, got " + std::to_string(o.sigma_fraction));
}

}  // namespace

// ---- sliding window (no torch) -------------------------------------------------------------------------------

std::vector<std::int64_t> sliding_window_starts(std::int64_t size, int patch_size, double overlap) {
  if (patch_size < 1 || !(overlap >= 0.0 && overlap < 1.0))
    throw Error(ErrorCode::Usage, "sliding window: patch size must be positive and overlap in [0, 1)");
  std::vector<std::int64_t> starts{0};
  if (size <= patch_size) return starts;
  const auto stride = std::max<std::int64_t>(1, std::llround(patch_size * (1.0 - overlap)));
  const std::int64_t last = size - patch_size;
  for (std::int64_t s = stride; s < last; s += stride) starts.push_back(s);
  starts.push_back(last);
  return starts;
}

std::vector<float> gaussian_importance_map(int patch_size, double sigma_fraction) {
  if (patch_size < 1 || !(sigma_fraction > 0.0))
    throw Error(ErrorCode::Usage, "gaussian importance map: patch size and sigma fraction must be positive");
  const auto p = static_cast<std::size_t>(patch_size);
  const double sigma = patch_size * sigma_fraction;
  const double centre = 0.5 * (patch_size - 1);
  std::vector<double> g(p);
  for (std::size_t x = 0; x < p; ++x) {
    const double d = (static_cast<double>(x) - centre) / sigma;
    g[x] = std::exp(-0.5 * d * d);
  }
  const double gmax = *std::max_element(g.begin(), g.end());
  for (double& v : g) v /= gmax;  // separable: the product's maximum is 1
  std::vector<float> w(p * p * p);
  for (std::size_t k = 0; k < p; ++k)
    for (std::size_t j = 0; j < p; ++j)
      for (std::size_t i = 0; i < p; ++i)
        w[(k * p + j) * p + i] = std::max(kMinImportance, static_cast<float>(g[k] * g[j] * g[i]));
  return w;
}

MultiChannelImage<Scanner> sliding_window_batched(const MultiChannelImage<Scanner>& input, int out_channels,
                                                  const BatchPatchPredictor& predict,
                                                  const SlidingWindowOptions& options, int batch_size) {
  check_options(options);
  if (out_channels < 1) throw Error(ErrorCode::Usage, "sliding window: out_channels must be positive");
  if (batch_size < 1) throw Error(ErrorCode::Usage, "sliding window: batch size must be positive");
  const Grid<Scanner>& grid = input.grid;
  for (int a = 0; a < 3; ++a)
    if (grid.size[a] < 1) throw Error(ErrorCode::UnsupportedGeometry, "sliding window: input has no voxels along axis " + std::to_string(a));
  const auto voxels = static_cast<std::size_t>(grid.voxels());
  if (input.channels < 1 || input.data.size() != voxels * static_cast<std::size_t>(input.channels))
    throw Error(ErrorCode::Internal, "sliding window: input data holds " + std::to_string(input.data.size()) +
                                         " values, not channels x voxels");

  const int p = options.patch_size;
  const auto pp = static_cast<std::size_t>(p);
  const std::size_t patch_voxels = pp * pp * pp;
  const auto cin = static_cast<std::size_t>(input.channels);
  const auto cout = static_cast<std::size_t>(out_channels);
  const std::vector<float> weight = gaussian_importance_map(p, options.sigma_fraction);

  // Tiles (k, j, i starts); along an axis shorter than the patch the single tile reads zeros past the end.
  const auto si = sliding_window_starts(grid.size[0], p, options.overlap);
  const auto sj = sliding_window_starts(grid.size[1], p, options.overlap);
  const auto sk = sliding_window_starts(grid.size[2], p, options.overlap);
  std::vector<std::array<std::int64_t, 3>> tiles;
  for (std::int64_t k : sk)
    for (std::int64_t j : sj)
      for (std::int64_t i : si) tiles.push_back({i, j, k});
  // Calls row(patch_offset, volume_offset, length) for every row (fixed k, j) of tile t inside the volume:
  // patch_offset indexes a p^3 patch, volume_offset the volume, length = the row's voxels inside the volume.
  const auto for_each_row = [&](const std::array<std::int64_t, 3>& t, const auto& row) {
    const std::int64_t nx = grid.size[0], ny = grid.size[1], nz = grid.size[2];
    const auto length = static_cast<std::size_t>(std::min<std::int64_t>(p, nx - t[0]));
    for (std::int64_t k = 0; k < p && t[2] + k < nz; ++k)
      for (std::int64_t j = 0; j < p && t[1] + j < ny; ++j)
        row(static_cast<std::size_t>((k * p + j) * p), static_cast<std::size_t>(((t[2] + k) * ny + t[1] + j) * nx + t[0]),
            length);
  };

  // Fast path: tiles whose channel 0 stays at or below the threshold (air) in their core are not run.
  const float* c0 = input.data.data();
  const float air = options.skip_tile_max_input;
  std::vector<std::array<std::int64_t, 3>> skipped;
  if (air >= 0.0f) {
    const std::int64_t m = std::clamp<std::int64_t>(options.skip_core_margin, 0, p / 2);
    std::vector<std::array<std::int64_t, 3>> kept;
    for (const auto& t : tiles) {
      std::int64_t lo[3], hi[3];  // the core, in volume indices
      for (int a = 0; a < 3; ++a) {
        lo[a] = t[static_cast<std::size_t>(a)] == 0 ? 0 : t[static_cast<std::size_t>(a)] + m;
        hi[a] = t[static_cast<std::size_t>(a)] + p >= grid.size[a] ? grid.size[a] : t[static_cast<std::size_t>(a)] + p - m;
      }
      bool empty = true;
      for (std::int64_t k = lo[2]; k < hi[2] && empty; ++k)
        for (std::int64_t j = lo[1]; j < hi[1] && empty; ++j) {
          const float* row = c0 + static_cast<std::size_t>((k * grid.size[1] + j) * grid.size[0]);
          empty = std::all_of(row + lo[0], row + hi[0], [&](float x) { return x <= air; });
        }
      (empty ? skipped : kept).push_back(t);
    }
    tiles.swap(kept);
  }
  log_debug("sliding window: " + std::to_string(tiles.size()) + " tiles of " + std::to_string(p) + "^3 run, " +
            std::to_string(skipped.size()) + " skipped (air), over " + std::to_string(grid.size[0]) + " x " +
            std::to_string(grid.size[1]) + " x " + std::to_string(grid.size[2]));

  MultiChannelImage<Scanner> out(grid, out_channels, 0.0f);
  std::vector<float> weight_sum(voxels, 0.0f);
  // Skipped tiles, at their air voxels: weight into the sum, weight x 1 into channel 0 (background).
  for (const auto& t : skipped)
    for_each_row(t, [&](std::size_t pr, std::size_t v, std::size_t n) {
      for (std::size_t i = 0; i < n; ++i)
        if (c0[v + i] <= air) {
          weight_sum[v + i] += weight[pr + i];
          out.data[v + i] += weight[pr + i];
        }
    });

  const std::size_t batch_cap = std::max<std::size_t>(1, std::min(static_cast<std::size_t>(batch_size), tiles.size()));
  std::vector<float> in_buf(batch_cap * cin * patch_voxels);
  std::vector<float> out_buf(batch_cap * cout * patch_voxels);

  for (std::size_t first = 0; first < tiles.size(); first += batch_cap) {
    const std::size_t count = std::min(batch_cap, tiles.size() - first);
    // Gather: zeros outside the volume.
    std::fill(in_buf.begin(), in_buf.begin() + static_cast<std::ptrdiff_t>(count * cin * patch_voxels), 0.0f);
    for (std::size_t b = 0; b < count; ++b)
      for_each_row(tiles[first + b], [&](std::size_t pr, std::size_t v, std::size_t n) {
        for (std::size_t c = 0; c < cin; ++c)
          std::copy_n(input.data.data() + c * voxels + v, n, in_buf.data() + (b * cin + c) * patch_voxels + pr);
      });
    predict(static_cast<int>(count), in_buf.data(), out_buf.data());
    // Scatter: weighted sum of the part inside the volume.
    for (std::size_t b = 0; b < count; ++b)
      for_each_row(tiles[first + b], [&](std::size_t pr, std::size_t v, std::size_t n) {
        const float* w = weight.data() + pr;
        float* ws = weight_sum.data() + v;
        for (std::size_t i = 0; i < n; ++i) ws[i] += w[i];
        for (std::size_t c = 0; c < cout; ++c) {
          const float* src = out_buf.data() + (b * cout + c) * patch_voxels + pr;
          float* dst = out.data.data() + c * voxels + v;
          for (std::size_t i = 0; i < n; ++i) dst[i] += w[i] * src[i];
        }
      });
  }
  for (std::size_t v = 0; v < voxels; ++v)
    if (!(weight_sum[v] > 0.0f)) {  // only in skipped tiles' peripheries (not expected, see skip_core_margin)
      weight_sum[v] = 1.0f;
      out.data[v] = 1.0f;
    }
  for (std::size_t c = 0; c < cout; ++c) {
    float* dst = out.data.data() + c * voxels;
    for (std::size_t v = 0; v < voxels; ++v) dst[v] /= weight_sum[v];
  }
  return out;
}

MultiChannelImage<Scanner> sliding_window(const MultiChannelImage<Scanner>& input, int out_channels,
                                          const PatchPredictor& predict, const SlidingWindowOptions& options) {
  check_options(options);
  const std::size_t in_size = static_cast<std::size_t>(input.channels) * static_cast<std::size_t>(options.patch_size) *
                              static_cast<std::size_t>(options.patch_size) * static_cast<std::size_t>(options.patch_size);
  const std::size_t out_size = static_cast<std::size_t>(out_channels) * static_cast<std::size_t>(options.patch_size) *
                               static_cast<std::size_t>(options.patch_size) * static_cast<std::size_t>(options.patch_size);
  return sliding_window_batched(
      input, out_channels,
      [&](int count, const float* in, float* out) {
        for (int b = 0; b < count; ++b)
          predict(in + static_cast<std::size_t>(b) * in_size, out + static_cast<std::size_t>(b) * out_size);
      },
      options, 1);
}

}  // namespace ctarr
