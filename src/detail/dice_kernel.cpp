// ctarr — the fit's soft Dice terms in one pass (see dice_kernel.hpp).
#include "detail/dice_kernel.hpp"

#include "parallel.hpp"

#include <algorithm>
#include <cmath>

namespace ctarr::detail {

namespace {

// Sums kept per class, laid out term-major so that the loop over classes runs over contiguous memory:
// I = sum s a, A = sum a, then, with r = dA/dx_atlas = K^T grad_q a (mm^-1) and y the fit-frame position:
// R = sum r, RY = sum r * y (per axis), SR = sum s r, SRY = sum s r * y.
enum Term : int { kI = 0, kA = 1, kR = 2, kRY = 5, kSR = 8, kSRY = 11, kTerms = 14 };

struct Corners {
  const float* p[8];  // channel-last values of the 8 neighbours; a zero row for those outside the grid
  float wx, wy, wz;   // fractional position in the cell
};

// The 8 neighbours of q, or false when none of them lies in the grid or none holds a value above `empty_below`.
bool corners_of(const ChannelLastVolume& a, const Eigen::Vector3d& q, const float* zeros, float empty_below,
                Corners* out) {
  const std::int64_t n[3] = {a.size[0], a.size[1], a.size[2]};
  for (int d = 0; d < 3; ++d)
    if (!(q[d] > -1.0 && q[d] < static_cast<double>(n[d]))) return false;  // also rejects NaN
  const double fx = std::floor(q[0]), fy = std::floor(q[1]), fz = std::floor(q[2]);
  const std::int64_t i0 = static_cast<std::int64_t>(fx), j0 = static_cast<std::int64_t>(fy),
                     k0 = static_cast<std::int64_t>(fz);
  out->wx = static_cast<float>(q[0] - fx);
  out->wy = static_cast<float>(q[1] - fy);
  out->wz = static_cast<float>(q[2] - fz);
  bool any = false;
  for (int c = 0; c < 8; ++c) {
    const std::int64_t i = i0 + (c & 1), j = j0 + ((c >> 1) & 1), k = k0 + ((c >> 2) & 1);
    const bool inside = i >= 0 && i < n[0] && j >= 0 && j < n[1] && k >= 0 && k < n[2];
    if (!inside) {
      out->p[c] = zeros;
      continue;
    }
    const std::int64_t voxel = (k * n[1] + j) * n[0] + i;
    out->p[c] = a.data.data() + voxel * a.channels;
    any = any || a.channel_max.empty() || a.channel_max[static_cast<std::size_t>(voxel)] > empty_below;
  }
  return any;
}

// Adds one scan voxel's contribution for every class to the row accumulators acc[term * C + c].
template <bool kGradient>
void accumulate_voxel(const Corners& cn, const float* __restrict s, int channels, float sharp,
                      const float (&kt)[3][3], const float (&y)[3], float* __restrict acc) {
  const float* __restrict p0 = cn.p[0];
  const float* __restrict p1 = cn.p[1];
  const float* __restrict p2 = cn.p[2];
  const float* __restrict p3 = cn.p[3];
  const float* __restrict p4 = cn.p[4];
  const float* __restrict p5 = cn.p[5];
  const float* __restrict p6 = cn.p[6];
  const float* __restrict p7 = cn.p[7];
  const float wx = cn.wx, wy = cn.wy, wz = cn.wz, vy = 1.0f - wy, vz = 1.0f - wz;
  const auto sharpen = [sharp](float v) { return std::min(1.0f, std::max(0.0f, 0.5f + sharp * (v - 0.5f))); };
  const int C = channels;
  for (int c = 0; c < C; ++c) {
    const float v0 = sharpen(p0[c]), v1 = sharpen(p1[c]), v2 = sharpen(p2[c]), v3 = sharpen(p3[c]);
    const float v4 = sharpen(p4[c]), v5 = sharpen(p5[c]), v6 = sharpen(p6[c]), v7 = sharpen(p7[c]);
    // corner index bits: 1 = +x, 2 = +y, 4 = +z
    const float dx0 = v1 - v0, dx1 = v3 - v2, dx2 = v5 - v4, dx3 = v7 - v6;
    const float a00 = v0 + wx * dx0, a10 = v2 + wx * dx1, a01 = v4 + wx * dx2, a11 = v6 + wx * dx3;
    const float b0 = a00 + wy * (a10 - a00), b1 = a01 + wy * (a11 - a01);
    const float value = b0 + wz * (b1 - b0);
    const float sc = s[c];
    acc[kI * C + c] += sc * value;
    acc[kA * C + c] += value;
    if constexpr (kGradient) {
      const float gx = vz * (vy * dx0 + wy * dx1) + wz * (vy * dx2 + wy * dx3);
      const float gy = vz * (a10 - a00) + wz * (a11 - a01);
      const float gz = b1 - b0;
      for (int d = 0; d < 3; ++d) {
        const float r = kt[d][0] * gx + kt[d][1] * gy + kt[d][2] * gz;
        acc[(kR + d) * C + c] += r;
        acc[(kRY + d) * C + c] += r * y[d];
        acc[(kSR + d) * C + c] += sc * r;
        acc[(kSRY + d) * C + c] += sc * r * y[d];
      }
    }
  }
}

template <bool kGradient>
void slice_terms(const ChannelLastVolume& scan, const ChannelLastVolume& atlas, const DiceMap& map, float sharp,
                 float empty_below, const float* zeros, std::int64_t k, double* out) {
  const int C = scan.channels;
  const Eigen::Matrix3d& m = map.scan_index_to_y;
  const Eigen::Matrix3d kd = map.atlas_mm_to_index * map.scale.asDiagonal();  // y -> q
  const Eigen::Vector3d k0 = map.atlas_mm_to_index * map.t;
  float kt[3][3];  // K^T, row d: how q's gradient turns into d/dx_atlas_d
  for (int d = 0; d < 3; ++d)
    for (int b = 0; b < 3; ++b) kt[d][b] = static_cast<float>(map.atlas_mm_to_index(b, d));
  std::vector<float> acc(static_cast<std::size_t>(kTerms * C));
  const std::int64_t nx = scan.size[0], ny = scan.size[1];
  for (std::int64_t j = 0; j < ny; ++j) {
    std::fill(acc.begin(), acc.end(), 0.0f);
    const Eigen::Vector3d y_row =
        m.col(1) * static_cast<double>(j) + m.col(2) * static_cast<double>(k) + map.y_offset;
    const float* s = scan.data.data() + ((k * ny + j) * nx) * C;
    for (std::int64_t i = 0; i < nx; ++i, s += C) {
      const Eigen::Vector3d y = y_row + m.col(0) * static_cast<double>(i);
      Corners cn;
      if (!corners_of(atlas, kd * y + k0, zeros, empty_below, &cn)) continue;
      const float yf[3] = {static_cast<float>(y[0]), static_cast<float>(y[1]), static_cast<float>(y[2])};
      accumulate_voxel<kGradient>(cn, s, C, sharp, kt, yf, acc.data());
    }
    for (std::size_t n = 0; n < acc.size(); ++n) out[n] += static_cast<double>(acc[n]);
  }
}

}  // namespace

void fill_channel_max(ChannelLastVolume& v) {
  const std::int64_t plane = v.size[0] * v.size[1];
  v.channel_max.assign(static_cast<std::size_t>(plane * v.size[2]), 0.0f);
  parallel_for(v.size[2], [&](std::int64_t k) {
    for (std::int64_t n = k * plane; n < (k + 1) * plane; ++n) {
      const float* p = v.data.data() + n * v.channels;
      v.channel_max[static_cast<std::size_t>(n)] = *std::max_element(p, p + v.channels);
    }
  });
}

DiceTerms dice_terms(const ChannelLastVolume& scan, const ChannelLastVolume& atlas, const DiceMap& map,
                     double sharpness, bool with_gradient) {
  const int C = scan.channels;
  const std::size_t per_slice = static_cast<std::size_t>(kTerms * C);
  std::vector<double> partial(per_slice * static_cast<std::size_t>(scan.size[2]), 0.0);
  const std::vector<float> zeros(static_cast<std::size_t>(std::max(C, 1)), 0.0f);
  const float sharp = static_cast<float>(sharpness);
  // A grid value v stays 0 after sharpening when 0.5 + k (v - 0.5) <= 0, i.e. v <= 0.5 - 0.5 / k.
  const float empty_below = static_cast<float>(0.5 - 0.5 / sharpness);
  parallel_for(scan.size[2], [&](std::int64_t k) {
    double* out = partial.data() + per_slice * static_cast<std::size_t>(k);
    if (with_gradient)
      slice_terms<true>(scan, atlas, map, sharp, empty_below, zeros.data(), k, out);
    else
      slice_terms<false>(scan, atlas, map, sharp, empty_below, zeros.data(), k, out);
  });
  std::vector<double> sum(per_slice, 0.0);
  for (std::int64_t k = 0; k < scan.size[2]; ++k)  // in slice order: the same result for any thread count
    for (std::size_t n = 0; n < per_slice; ++n) sum[n] += partial[per_slice * static_cast<std::size_t>(k) + n];

  DiceTerms t;
  const auto at = [&](int term, int c) { return sum[static_cast<std::size_t>(term * C + c)]; };
  t.inter.resize(static_cast<std::size_t>(C));
  t.mass.resize(static_cast<std::size_t>(C));
  t.inter_d_scale.assign(static_cast<std::size_t>(C), Eigen::Vector3d::Zero());
  t.inter_d_t = t.mass_d_scale = t.mass_d_t = t.inter_d_scale;
  for (int c = 0; c < C; ++c) {
    const auto u = static_cast<std::size_t>(c);
    t.inter[u] = at(kI, c);
    t.mass[u] = at(kA, c);
    if (!with_gradient) continue;
    for (int d = 0; d < 3; ++d) {
      t.mass_d_t[u][d] = at(kR + d, c);
      t.mass_d_scale[u][d] = at(kRY + d, c);
      t.inter_d_t[u][d] = at(kSR + d, c);
      t.inter_d_scale[u][d] = at(kSRY + d, c);
    }
  }
  return t;
}

}  // namespace ctarr::detail
