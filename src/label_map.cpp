// ctarr — hard labels from the network's probabilities, on their own grid or on another one (trilinear, world space).
#include "ctarr/label_map.hpp"

#include "parallel.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <string>

namespace ctarr {

namespace {

void require_probabilities(const MultiChannelImage<Scanner>& prob) {
  if (prob.channels < 1 || prob.channels > 256 ||
      prob.data.size() != static_cast<std::size_t>(prob.grid.voxels()) * static_cast<std::size_t>(prob.channels))
    throw Error(ErrorCode::Internal, "hard labels: " + std::to_string(prob.channels) + " channels of " +
                                         std::to_string(prob.data.size()) + " values on a grid of " +
                                         std::to_string(prob.grid.voxels()) + " voxels");
}

// One axis of a trilinear lookup: the lower neighbour's index, the upper one's, and the upper one's weight.
struct AxisStep {
  std::int64_t lo = 0, hi = 0;
  double w = 0.0;
};

AxisStep axis_step(double continuous_index, std::int64_t size) {
  double x = std::clamp(continuous_index, 0.0, static_cast<double>(size - 1));
  const double nearest = std::round(x);
  if (std::abs(x - nearest) < 1e-6) x = nearest;  // on a voxel centre (the same grid): no rounding-noise weights
  AxisStep s;
  s.lo = std::min(static_cast<std::int64_t>(std::floor(x)), size - 1);
  s.hi = std::min(s.lo + 1, size - 1);
  s.w = x - static_cast<double>(s.lo);
  return s;
}

}  // namespace

Image<std::uint8_t> hard_labels(const MultiChannelImage<Scanner>& prob) {
  require_probabilities(prob);
  Image<std::uint8_t> out(prob.grid, 0);
  const std::size_t n = static_cast<std::size_t>(prob.grid.voxels());
  for (std::size_t v = 0; v < n; ++v) {
    float best = prob.data[v];
    for (int c = 1; c < prob.channels; ++c) {
      const float p = prob.data[static_cast<std::size_t>(c) * n + v];
      if (p > best) {
        best = p;
        out.voxels[v] = static_cast<std::uint8_t>(c);
      }
    }
  }
  return out;
}

Image<std::uint8_t> hard_labels_on_grid(const MultiChannelImage<Scanner>& prob, const Grid<Scanner>& target) {
  require_probabilities(prob);
  validate_grid(target, "label map grid");
  const Image<std::uint8_t> own = hard_labels(prob);
  const Grid<Scanner>& src = prob.grid;
  // target voxel index -> continuous index of the probabilities' grid (both through world LPS mm)
  const Eigen::Matrix3d to_src_linear = src.spacing.cwiseInverse().asDiagonal() * src.direction.transpose();
  const Eigen::Matrix3d index_map = to_src_linear * target.index_to_world_linear();
  const Eigen::Vector3d offset = to_src_linear * (target.origin - src.origin);
  const std::size_t n = static_cast<std::size_t>(src.voxels());
  const int channels = prob.channels;

  // When each source axis follows one target axis (the scan and its canonical grid: axes permuted and flipped), the
  // steps along each axis are computed once per index instead of once per voxel.
  std::array<int, 3> along{{-1, -1, -1}};
  bool separable = true;
  for (int a = 0; a < 3; ++a)
    for (int t = 0; t < 3; ++t) {
      if (std::abs(index_map(a, t)) <= 1e-9 * index_map.row(a).norm()) continue;
      separable = separable && along[static_cast<std::size_t>(a)] < 0;
      along[static_cast<std::size_t>(a)] = t;
    }
  std::array<std::vector<AxisStep>, 3> steps;
  if (separable)
    for (int a = 0; a < 3; ++a) {
      const int t = along[static_cast<std::size_t>(a)];
      for (std::int64_t m = 0; m < target.size[t]; ++m)
        steps[static_cast<std::size_t>(a)].push_back(
            axis_step(offset[a] + index_map(a, t) * static_cast<double>(m), src.size[a]));
    }

  Image<std::uint8_t> out(target, 0);
  parallel_for(target.size[2], [&](std::int64_t k) {
    std::vector<float> mixed(static_cast<std::size_t>(channels));
    for (std::int64_t j = 0; j < target.size[1]; ++j) {
      const Eigen::Vector3d row = offset + index_map * Eigen::Vector3d(0.0, static_cast<double>(j),
                                                                     static_cast<double>(k));
      for (std::int64_t i = 0; i < target.size[0]; ++i) {
        std::array<AxisStep, 3> s;
        if (separable) {
          const Index3 idx{{i, j, k}};
          for (std::size_t a = 0; a < 3; ++a) s[a] = steps[a][static_cast<std::size_t>(idx[static_cast<std::size_t>(along[a])])];
        } else {
          const Eigen::Vector3d ci = row + static_cast<double>(i) * index_map.col(0);
          for (int a = 0; a < 3; ++a) s[static_cast<std::size_t>(a)] = axis_step(ci[a], src.size[a]);
        }
        std::array<std::size_t, 8> at{};
        std::array<double, 8> weight{};
        int corners = 0;
        for (int c = 0; c < 8; ++c) {
          const bool ux = c & 1, uy = c & 2, uz = c & 4;
          const double w = (ux ? s[0].w : 1.0 - s[0].w) * (uy ? s[1].w : 1.0 - s[1].w) * (uz ? s[2].w : 1.0 - s[2].w);
          if (w <= 0.0) continue;
          at[static_cast<std::size_t>(corners)] =
              src.linear(Index3{{ux ? s[0].hi : s[0].lo, uy ? s[1].hi : s[1].lo, uz ? s[2].hi : s[2].lo}});
          weight[static_cast<std::size_t>(corners)] = w;
          ++corners;
        }
        std::uint8_t& label = out.voxels[target.linear(Index3{{i, j, k}})];
        const std::uint8_t first = own.voxels[at[0]];
        bool agree = true;
        for (int c = 1; c < corners && agree; ++c) agree = own.voxels[at[static_cast<std::size_t>(c)]] == first;
        if (agree) {  // every corner's largest probability is `first`: so is their weighted mean's
          label = first;
          continue;
        }
        for (int ch = 0; ch < channels; ++ch) {
          const float* p = prob.data.data() + static_cast<std::size_t>(ch) * n;
          double sum = 0.0;
          for (int c = 0; c < corners; ++c) sum += weight[static_cast<std::size_t>(c)] * p[at[static_cast<std::size_t>(c)]];
          mixed[static_cast<std::size_t>(ch)] = static_cast<float>(sum);
        }
        label = static_cast<std::uint8_t>(std::max_element(mixed.begin(), mixed.end()) - mixed.begin());
      }
    }
  });
  return out;
}

}  // namespace ctarr
