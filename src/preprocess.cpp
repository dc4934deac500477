// ctarr — canonical orientation, resampling and intensity windows.
#include "ctarr/preprocess.hpp"

#include "parallel.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>

namespace ctarr {

Reorientation canonical_reorientation(const Eigen::Matrix3d& direction) {
  // Greedy assignment: the largest |cosine| first, so near-45° directions still give a permutation.
  Reorientation r;
  std::array<bool, 3> world_used{false, false, false}, input_used{false, false, false};
  for (int n = 0; n < 3; ++n) {
    double best = -1.0;
    int best_world = 0, best_input = 0;
    for (int w = 0; w < 3; ++w) {
      if (world_used[static_cast<std::size_t>(w)]) continue;
      for (int j = 0; j < 3; ++j) {
        if (input_used[static_cast<std::size_t>(j)]) continue;
        if (std::abs(direction(w, j)) > best) {
          best = std::abs(direction(w, j));
          best_world = w;
          best_input = j;
        }
      }
    }
    world_used[static_cast<std::size_t>(best_world)] = true;
    input_used[static_cast<std::size_t>(best_input)] = true;
    r.axis[static_cast<std::size_t>(best_world)] = best_input;
    r.flip[static_cast<std::size_t>(best_world)] = direction(best_world, best_input) < 0.0;
  }
  return r;
}

Grid<Scanner> reorient_grid(const Grid<Scanner>& grid, const Reorientation& r) {
  Grid<Scanner> out;
  Index3 first;  // input index of canonical voxel (0, 0, 0)
  for (int a = 0; a < 3; ++a) {
    const int j = r.axis[static_cast<std::size_t>(a)];
    const bool flip = r.flip[static_cast<std::size_t>(a)];
    out.size[a] = grid.size[j];
    out.spacing[a] = grid.spacing[j];
    out.direction.col(a) = flip ? Eigen::Vector3d(-grid.direction.col(j)) : Eigen::Vector3d(grid.direction.col(j));
    first[j] = flip ? grid.size[j] - 1 : 0;
  }
  out.origin = grid.to_world(first).mm;
  return out;
}

Index3 reoriented_to_original(const Index3& idx, const Grid<Scanner>& original, const Reorientation& r) {
  Index3 o;
  for (int a = 0; a < 3; ++a) {
    const int j = r.axis[static_cast<std::size_t>(a)];
    o[j] = r.flip[static_cast<std::size_t>(a)] ? original.size[j] - 1 - idx[a] : idx[a];
  }
  return o;
}

template <class T>
Image<T> reorient(const Image<T>& image, const Reorientation& r) {
  Image<T> out(reorient_grid(image.grid, r));
  const Index3 n = out.grid.size;
  parallel_for(n[2], [&](std::int64_t k) {
    Index3 idx;
    idx[2] = k;
    for (idx[1] = 0; idx[1] < n[1]; ++idx[1])
      for (idx[0] = 0; idx[0] < n[0]; ++idx[0]) out.at(idx) = image.at(reoriented_to_original(idx, image.grid, r));
  });
  return out;
}

Grid<Scanner> isotropic_grid(const Grid<Scanner>& grid, double spacing_mm) {
  Grid<Scanner> out;
  out.direction = grid.direction;
  out.spacing = Eigen::Vector3d::Constant(spacing_mm);
  const Eigen::Vector3d corner = grid.origin - grid.direction * (0.5 * grid.spacing);
  for (int a = 0; a < 3; ++a) {
    const double extent = static_cast<double>(grid.size[a]) * grid.spacing[a];
    out.size[a] = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil(extent / spacing_mm - 1e-6)));
  }
  out.origin = corner + out.direction * out.spacing * 0.5;
  return out;
}

namespace {

// Separable Gaussian blur along one axis, in place (via a line buffer). sigma in voxels.
void blur_axis(std::vector<float>& data, const Index3& n, int axis, double sigma) {
  const int radius = static_cast<int>(std::ceil(3.0 * sigma));
  if (radius < 1) return;
  std::vector<float> kernel(static_cast<std::size_t>(2 * radius + 1));
  double sum = 0.0;
  for (int t = -radius; t <= radius; ++t) {
    const double w = std::exp(-0.5 * t * t / (sigma * sigma));
    kernel[static_cast<std::size_t>(t + radius)] = static_cast<float>(w);
    sum += w;
  }
  for (float& w : kernel) w = static_cast<float>(w / sum);

  const std::int64_t stride = axis == 0 ? 1 : axis == 1 ? n[0] : n[0] * n[1];
  const std::int64_t len = n[axis];
  const int o1 = axis == 0 ? 1 : 0, o2 = axis == 2 ? 1 : 2;  // the two other axes
  const std::int64_t s1 = o1 == 0 ? 1 : n[0], s2 = o2 == 1 ? n[0] : n[0] * n[1];
  parallel_for(n[o2], [&](std::int64_t b) {
    std::vector<float> line(static_cast<std::size_t>(len));
    for (std::int64_t a = 0; a < n[o1]; ++a) {
      float* base = data.data() + a * s1 + b * s2;
      for (std::int64_t t = 0; t < len; ++t) line[static_cast<std::size_t>(t)] = base[t * stride];
      for (std::int64_t t = 0; t < len; ++t) {
        double acc = 0.0;
        for (int d = -radius; d <= radius; ++d) {
          const std::int64_t u = std::clamp<std::int64_t>(t + d, 0, len - 1);  // replicate the border
          acc += kernel[static_cast<std::size_t>(d + radius)] * line[static_cast<std::size_t>(u)];
        }
        base[t * stride] = static_cast<float>(acc);
      }
    }
  });
}

// Target spacing seen along each source axis (for anti-aliasing).
Eigen::Vector3d spacing_along_source_axes(const Grid<Scanner>& source, const Grid<Scanner>& target) {
  const Eigen::Matrix3d c = (source.direction.transpose() * target.direction).cwiseAbs();
  return c * target.spacing;
}

// One axis of a separable resampling: for each target index t along the axis, the source voxels (along the matching
// source axis) and their weights, or none when t lies outside the source.
struct AxisWeights {
  std::vector<std::int64_t> first;   // per target index: offset into taps, or -1 when outside
  std::vector<int> count;
  std::vector<std::pair<std::int64_t, float>> taps;
};

// Anti-aliasing blur (replicated border, as blur_axis) followed by linear interpolation (as the general path of
// resample_linear: clamped within half a voxel of the edge), folded into one weight row per target index.
AxisWeights axis_weights(std::int64_t source_size, std::int64_t target_size, double scale, double offset, double sigma) {
  std::vector<double> kernel{1.0};
  int radius = 0;
  if (sigma >= 0.3) {
    radius = static_cast<int>(std::ceil(3.0 * sigma));
    kernel.assign(static_cast<std::size_t>(2 * radius + 1), 0.0);
    double sum = 0.0;
    for (int t = -radius; t <= radius; ++t) sum += kernel[static_cast<std::size_t>(t + radius)] = std::exp(-0.5 * t * t / (sigma * sigma));
    // blur_axis rounds its kernel to float: keep the same weights
    for (double& w : kernel) w = static_cast<double>(static_cast<float>(w / sum));
  }
  AxisWeights aw;
  aw.first.assign(static_cast<std::size_t>(target_size), -1);
  aw.count.assign(static_cast<std::size_t>(target_size), 0);
  const double hi = static_cast<double>(source_size - 1);
  std::vector<double> row(static_cast<std::size_t>(source_size));
  for (std::int64_t t = 0; t < target_size; ++t) {
    const double c = scale * static_cast<double>(t) + offset;
    if (c < -0.5 || c > hi + 0.5) continue;
    const double p = std::clamp(c, 0.0, hi);
    const std::int64_t i0 = std::min<std::int64_t>(static_cast<std::int64_t>(p), std::max<std::int64_t>(source_size - 2, 0));
    const double f = source_size == 1 ? 0.0 : p - static_cast<double>(i0);
    const std::int64_t i1 = source_size > 1 ? i0 + 1 : i0;
    std::int64_t lo_u = source_size, hi_u = -1;
    auto add = [&](std::int64_t centre, double w) {
      if (w == 0.0) return;
      for (int d = -radius; d <= radius; ++d) {
        const std::int64_t u = std::clamp<std::int64_t>(centre + d, 0, source_size - 1);
        row[static_cast<std::size_t>(u)] += w * kernel[static_cast<std::size_t>(d + radius)];
        lo_u = std::min(lo_u, u);
        hi_u = std::max(hi_u, u);
      }
    };
    add(i0, 1.0 - f);
    add(i1, f);
    aw.first[static_cast<std::size_t>(t)] = static_cast<std::int64_t>(aw.taps.size());
    for (std::int64_t u = lo_u; u <= hi_u; ++u) {
      double& w = row[static_cast<std::size_t>(u)];
      if (w != 0.0) aw.taps.emplace_back(u, static_cast<float>(w));
      w = 0.0;
    }
    aw.count[static_cast<std::size_t>(t)] = static_cast<int>(static_cast<std::int64_t>(aw.taps.size()) - aw.first[static_cast<std::size_t>(t)]);
  }
  return aw;
}

// resample_linear when every target axis runs along a source axis (a signed permutation, as between a scan and its
// canonical isotropic grid): three 1D passes, each shrinking one axis, instead of blurring the full-resolution
// volume and interpolating it (same weights; differences are float rounding only).
std::optional<Image<float>> resample_separable(const Image<float>& image, const Grid<Scanner>& target, float outside,
                                               bool antialias) {
  const Eigen::Matrix3d m = image.grid.spacing.cwiseInverse().asDiagonal() * image.grid.direction.transpose() *
                            target.direction * target.spacing.asDiagonal();
  const Eigen::Vector3d b = image.grid.spacing.cwiseInverse().asDiagonal() * image.grid.direction.transpose() *
                            (target.origin - image.grid.origin);
  std::array<int, 3> src_axis{-1, -1, -1};  // source axis of each target axis
  for (int a = 0; a < 3; ++a) {
    int nonzero = 0;
    for (int r = 0; r < 3; ++r) {
      // Entries below 1e-6 of the column count as 0 (float sform noise): at most 1e-6 x size voxels of error.
      if (std::abs(m(r, a)) > 1e-6 * m.col(a).norm()) {
        ++nonzero;
        src_axis[static_cast<std::size_t>(a)] = r;
      }
    }
    if (nonzero != 1) return std::nullopt;
  }
  if (src_axis[0] == src_axis[1] || src_axis[0] == src_axis[2] || src_axis[1] == src_axis[2]) return std::nullopt;

  const Eigen::Vector3d along = spacing_along_source_axes(image.grid, target);
  std::array<AxisWeights, 3> w;   // indexed by source axis
  std::array<std::int64_t, 3> tn{};  // target size along each source axis
  for (int a = 0; a < 3; ++a) {
    const int r = src_axis[static_cast<std::size_t>(a)];
    double sigma = 0.0;
    const double sp = image.grid.spacing[r];
    if (antialias && along[r] > sp * 1.01)
      sigma = std::sqrt(along[r] * along[r] - sp * sp) / (2.0 * std::sqrt(2.0 * std::log(2.0))) / sp;
    w[static_cast<std::size_t>(r)] = axis_weights(image.grid.size[r], target.size[a], m(r, a), b[r], sigma);
    tn[static_cast<std::size_t>(r)] = target.size[a];
  }

  // Pass along source axis 0 (contiguous), then 1, then 2; `cur` keeps source axis order.
  std::array<std::int64_t, 3> n{image.grid.size[0], image.grid.size[1], image.grid.size[2]};
  std::vector<float> cur;
  const std::vector<float>* in = &image.voxels;
  for (int r = 0; r < 3; ++r) {
    std::array<std::int64_t, 3> nn = n;
    nn[static_cast<std::size_t>(r)] = tn[static_cast<std::size_t>(r)];
    std::vector<float> next(static_cast<std::size_t>(nn[0] * nn[1] * nn[2]), 0.0f);
    const AxisWeights& aw = w[static_cast<std::size_t>(r)];
    const float* src = in->data();
    float* dst = next.data();
    if (r == 0) {
      parallel_for(n[1] * n[2], [&](std::int64_t line) {
        const float* s_line = src + line * n[0];
        float* d_line = dst + line * nn[0];
        for (std::int64_t t = 0; t < nn[0]; ++t) {
          const std::int64_t f = aw.first[static_cast<std::size_t>(t)];
          if (f < 0) continue;
          float acc = 0.0f;
          for (int q = 0; q < aw.count[static_cast<std::size_t>(t)]; ++q)
            acc += aw.taps[static_cast<std::size_t>(f + q)].second * s_line[aw.taps[static_cast<std::size_t>(f + q)].first];
          d_line[t] = acc;
        }
      });
    } else if (r == 1) {
      parallel_for(n[2], [&](std::int64_t k) {
        for (std::int64_t t = 0; t < nn[1]; ++t) {
          const std::int64_t f = aw.first[static_cast<std::size_t>(t)];
          if (f < 0) continue;
          float* d_row = dst + (k * nn[1] + t) * n[0];
          for (int q = 0; q < aw.count[static_cast<std::size_t>(t)]; ++q) {
            const auto& [u, wt] = aw.taps[static_cast<std::size_t>(f + q)];
            const float* s_row = src + (k * n[1] + u) * n[0];
            for (std::int64_t i = 0; i < n[0]; ++i) d_row[i] += wt * s_row[i];
          }
        }
      });
    } else {
      const std::int64_t slice = n[0] * n[1];
      parallel_for(nn[2], [&](std::int64_t t) {
        const std::int64_t f = aw.first[static_cast<std::size_t>(t)];
        if (f < 0) return;
        float* d_slice = dst + t * slice;
        for (int q = 0; q < aw.count[static_cast<std::size_t>(t)]; ++q) {
          const auto& [u, wt] = aw.taps[static_cast<std::size_t>(f + q)];
          const float* s_slice = src + u * slice;
          for (std::int64_t v = 0; v < slice; ++v) d_slice[v] += wt * s_slice[v];
        }
      });
    }
    cur.swap(next);
    in = &cur;
    n = nn;
  }

  // cur[(x0, x1, x2) in source axis order] -> target order; outside where any axis is outside the source.
  Image<float> out(target, outside);
  std::array<std::int64_t, 3> stride_src{1, n[0], n[0] * n[1]};
  std::array<std::int64_t, 3> st{};  // stride in cur of each target axis
  for (int a = 0; a < 3; ++a) st[static_cast<std::size_t>(a)] = stride_src[static_cast<std::size_t>(src_axis[static_cast<std::size_t>(a)])];
  const auto inside = [&](int a, std::int64_t t) {
    return w[static_cast<std::size_t>(src_axis[static_cast<std::size_t>(a)])].first[static_cast<std::size_t>(t)] >= 0;
  };
  parallel_for(target.size[2], [&](std::int64_t k) {
    if (!inside(2, k)) return;
    for (std::int64_t j = 0; j < target.size[1]; ++j) {
      if (!inside(1, j)) continue;
      float* row = out.voxels.data() + (k * target.size[1] + j) * target.size[0];
      const float* base = cur.data() + k * st[2] + j * st[1];
      for (std::int64_t i = 0; i < target.size[0]; ++i)
        if (inside(0, i)) row[i] = base[i * st[0]];
    }
  });
  return out;
}

}  // namespace

Image<float> resample_linear(const Image<float>& image, const Grid<Scanner>& target, float outside, bool antialias) {
  if (std::optional<Image<float>> fast = resample_separable(image, target, outside, antialias)) return std::move(*fast);
  return resample_linear_general(image, target, outside, antialias);
}

Image<float> resample_linear_general(const Image<float>& image, const Grid<Scanner>& target, float outside, bool antialias) {
  const Image<float>* src = &image;
  Image<float> blurred;
  if (antialias) {
    const Eigen::Vector3d t = spacing_along_source_axes(image.grid, target);
    bool any = false;
    Eigen::Vector3d sigma_vox = Eigen::Vector3d::Zero();
    for (int a = 0; a < 3; ++a) {
      const double s = image.grid.spacing[a];
      if (t[a] > s * 1.01) {
        // Gaussian whose FWHM equals the target spacing, less what the source sampling already implies.
        sigma_vox[a] = std::sqrt(t[a] * t[a] - s * s) / (2.0 * std::sqrt(2.0 * std::log(2.0))) / s;
        any = any || sigma_vox[a] >= 0.3;
      }
    }
    if (any) {
      blurred = image;
      for (int a = 0; a < 3; ++a)
        if (sigma_vox[a] >= 0.3) blur_axis(blurred.voxels, blurred.grid.size, a, sigma_vox[a]);
      src = &blurred;
    }
  }

  Image<float> out(target, outside);
  // target index -> source continuous index: an affine map, evaluated incrementally along i.
  const Eigen::Matrix3d m = src->grid.spacing.cwiseInverse().asDiagonal() * src->grid.direction.transpose() *
                            target.direction * target.spacing.asDiagonal();
  const Eigen::Vector3d b =
      src->grid.spacing.cwiseInverse().asDiagonal() * src->grid.direction.transpose() * (target.origin - src->grid.origin);
  const Index3 sn = src->grid.size;
  const std::int64_t sx = sn[0], sxy = sn[0] * sn[1];
  const float* sv = src->voxels.data();
  parallel_for(target.size[2], [&](std::int64_t k) {
    for (std::int64_t j = 0; j < target.size[1]; ++j) {
      float* row = out.voxels.data() + (k * target.size[1] + j) * target.size[0];
      const Eigen::Vector3d row0 = m * Eigen::Vector3d(0.0, static_cast<double>(j), static_cast<double>(k)) + b;
      for (std::int64_t i = 0; i < target.size[0]; ++i) {
        const Eigen::Vector3d c = row0 + m.col(0) * static_cast<double>(i);
        // Points within half a voxel of the source edge are clamped onto it (edge voxels extend to their border).
        double p[3];
        bool inside = true;
        for (int a = 0; a < 3; ++a) {
          const double hi = static_cast<double>(sn[a] - 1);
          if (c[a] < -0.5 || c[a] > hi + 0.5) inside = false;
          p[a] = std::clamp(c[a], 0.0, hi);
        }
        if (!inside) continue;
        std::int64_t i0[3];
        double f[3];
        for (int a = 0; a < 3; ++a) {
          i0[a] = std::min<std::int64_t>(static_cast<std::int64_t>(p[a]), std::max<std::int64_t>(sn[a] - 2, 0));
          f[a] = p[a] - static_cast<double>(i0[a]);
          if (sn[a] == 1) f[a] = 0.0;
        }
        const std::int64_t dx = sn[0] > 1 ? 1 : 0, dy = sn[1] > 1 ? sx : 0, dz = sn[2] > 1 ? sxy : 0;
        const float* q = sv + i0[0] + i0[1] * sx + i0[2] * sxy;
        const double c00 = q[0] * (1 - f[0]) + q[dx] * f[0];
        const double c10 = q[dy] * (1 - f[0]) + q[dy + dx] * f[0];
        const double c01 = q[dz] * (1 - f[0]) + q[dz + dx] * f[0];
        const double c11 = q[dz + dy] * (1 - f[0]) + q[dz + dy + dx] * f[0];
        const double c0 = c00 * (1 - f[1]) + c10 * f[1];
        const double c1 = c01 * (1 - f[1]) + c11 * f[1];
        row[i] = static_cast<float>(c0 * (1 - f[2]) + c1 * f[2]);
      }
    }
  });
  return out;
}

template <class T>
Image<T> resample_nearest(const Image<T>& image, const Grid<Scanner>& target, T outside) {
  Image<T> out(target, outside);
  const Eigen::Matrix3d m = image.grid.spacing.cwiseInverse().asDiagonal() * image.grid.direction.transpose() *
                            target.direction * target.spacing.asDiagonal();
  const Eigen::Vector3d b = image.grid.spacing.cwiseInverse().asDiagonal() * image.grid.direction.transpose() *
                            (target.origin - image.grid.origin);
  parallel_for(target.size[2], [&](std::int64_t k) {
    Index3 t, s;
    t[2] = k;
    for (t[1] = 0; t[1] < target.size[1]; ++t[1])
      for (t[0] = 0; t[0] < target.size[0]; ++t[0]) {
        const Eigen::Vector3d c = m * Eigen::Vector3d(static_cast<double>(t[0]), static_cast<double>(t[1]),
                                                      static_cast<double>(k)) + b;
        for (int a = 0; a < 3; ++a) s[a] = static_cast<std::int64_t>(std::floor(c[a] + 0.5));
        if (image.grid.contains(s)) out.at(t) = image.at(s);
      }
  });
  return out;
}

MultiChannelImage<Scanner> label_fractions(const Image<std::uint8_t>& labels, const Grid<Scanner>& target, int classes) {
  MultiChannelImage<Scanner> out(target, classes);
  std::vector<float> total(static_cast<std::size_t>(target.voxels()), 0.0f);
  const Eigen::Matrix3d m = target.spacing.cwiseInverse().asDiagonal() * target.direction.transpose() *
                            labels.grid.direction * labels.grid.spacing.asDiagonal();
  const Eigen::Vector3d b =
      target.spacing.cwiseInverse().asDiagonal() * target.direction.transpose() * (labels.grid.origin - target.origin);
  const Index3 n = labels.grid.size;
  const std::size_t tv = static_cast<std::size_t>(target.voxels());
  // Axis-aligned case (a scan's label map -> its canonical grid): each target coordinate depends on one source
  // index, so per-axis tables of linear-index offsets replace the per-voxel matrix product (same rounding).
  std::array<int, 3> src_of{-1, -1, -1};  // source axis feeding each target axis
  bool aligned = true;
  for (int a = 0; a < 3 && aligned; ++a) {
    int count = 0;
    for (int sa = 0; sa < 3; ++sa)
      if (std::abs(m(a, sa)) > 1e-9 * m.row(a).norm()) {
        ++count;
        src_of[static_cast<std::size_t>(a)] = sa;
      }
    aligned = count == 1;
  }
  aligned = aligned && src_of[0] != src_of[1] && src_of[0] != src_of[2] && src_of[1] != src_of[2];
  if (aligned) {
    std::array<std::vector<std::int64_t>, 3> offset;  // per source axis and index: linear offset, or -1 outside
    const std::array<std::int64_t, 3> stride{1, target.size[0], target.size[0] * target.size[1]};
    for (int a = 0; a < 3; ++a) {
      const int sa = src_of[static_cast<std::size_t>(a)];
      auto& table = offset[static_cast<std::size_t>(sa)];
      table.assign(static_cast<std::size_t>(n[sa]), -1);
      for (std::int64_t x = 0; x < n[sa]; ++x) {
        const auto t = static_cast<std::int64_t>(std::floor(b[a] + m(a, sa) * static_cast<double>(x) + 0.5));
        if (t >= 0 && t < target.size[a]) table[static_cast<std::size_t>(x)] = t * stride[static_cast<std::size_t>(a)];
      }
    }
    for (std::int64_t k = 0; k < n[2]; ++k) {
      const std::int64_t ok = offset[2][static_cast<std::size_t>(k)];
      if (ok < 0) continue;
      for (std::int64_t j = 0; j < n[1]; ++j) {
        const std::int64_t oj = offset[1][static_cast<std::size_t>(j)];
        if (oj < 0) continue;
        const std::uint8_t* src = &labels.at(Index3{{0, j, k}});
        for (std::int64_t i = 0; i < n[0]; ++i) {
          const std::int64_t oi = offset[0][static_cast<std::size_t>(i)];
          if (oi < 0) continue;
          const auto v = static_cast<std::size_t>(ok + oj + oi);
          total[v] += 1.0f;
          const int label = src[i];
          if (label >= 1 && label <= classes) out.data[static_cast<std::size_t>(label - 1) * tv + v] += 1.0f;
        }
      }
    }
  }
  for (std::int64_t k = 0; k < n[2] && !aligned; ++k)
    for (std::int64_t j = 0; j < n[1]; ++j) {
      const Eigen::Vector3d row0 = m * Eigen::Vector3d(0.0, static_cast<double>(j), static_cast<double>(k)) + b;
      const std::uint8_t* src = &labels.at(Index3{{0, j, k}});
      for (std::int64_t i = 0; i < n[0]; ++i) {
        const Eigen::Vector3d c = row0 + m.col(0) * static_cast<double>(i);
        Index3 t;
        for (int a = 0; a < 3; ++a) t[a] = static_cast<std::int64_t>(std::floor(c[a] + 0.5));
        if (!target.contains(t)) continue;
        const std::size_t v = target.linear(t);
        total[v] += 1.0f;
        const int label = src[i];
        if (label >= 1 && label <= classes) out.data[static_cast<std::size_t>(label - 1) * tv + v] += 1.0f;
      }
    }
  for (int c = 0; c < classes; ++c) {
    float* ch = out.channel(c);
    for (std::size_t v = 0; v < tv; ++v)
      if (total[v] > 0.0f) ch[v] /= total[v];
  }
  // Where the source is coarser than the target (5 mm slices onto 3 mm), some target voxels inside the label map
  // receive no source centre: they take the label of the source voxel they lie in (nearest neighbour).
  const Eigen::Matrix3d to_source = labels.grid.spacing.cwiseInverse().asDiagonal() *
                                    labels.grid.direction.transpose() * target.direction *
                                    target.spacing.asDiagonal();
  const Eigen::Vector3d source_offset = labels.grid.spacing.cwiseInverse().asDiagonal() *
                                        labels.grid.direction.transpose() * (target.origin - labels.grid.origin);
  for (std::int64_t k = 0; k < target.size[2]; ++k)
    for (std::int64_t j = 0; j < target.size[1]; ++j)
      for (std::int64_t i = 0; i < target.size[0]; ++i) {
        const Index3 t{{i, j, k}};
        const std::size_t v = target.linear(t);
        if (total[v] > 0.0f) continue;
        const Eigen::Vector3d c = to_source * Eigen::Vector3d(static_cast<double>(i), static_cast<double>(j),
                                                              static_cast<double>(k)) + source_offset;
        Index3 s;
        for (int a = 0; a < 3; ++a) s[a] = static_cast<std::int64_t>(std::floor(c[a] + 0.5));
        if (!labels.grid.contains(s)) continue;
        const int label = labels.at(s);
        if (label >= 1 && label <= classes) out.data[static_cast<std::size_t>(label - 1) * tv + v] = 1.0f;
      }
  return out;
}

PreprocessResult preprocess(const Image<float>& scan_hu, const PreprocessOptions& options) {
  PreprocessResult result;
  result.reorientation = canonical_reorientation(scan_hu.grid.direction);
  result.canonical_grid = reorient_grid(scan_hu.grid, result.reorientation);
  // Resampling straight from the input grid gives the same values as reorienting first (world positions are
  // identical) without a full-resolution copy.
  const Grid<Scanner> grid = isotropic_grid(result.canonical_grid, options.spacing_mm);
  const Image<float> hu = resample_linear(scan_hu, grid, -1024.0f, true);
  const int channels = static_cast<int>(options.windows_hu.size());
  result.network_input = MultiChannelImage<Scanner>(grid, channels);
  const std::size_t n = hu.voxels.size();
  for (int c = 0; c < channels; ++c) {
    const float lo = options.windows_hu[static_cast<std::size_t>(c)].first;
    const float hi = options.windows_hu[static_cast<std::size_t>(c)].second;
    float* dst = result.network_input.channel(c);
    for (std::size_t v = 0; v < n; ++v) dst[v] = std::clamp((hu.voxels[v] - lo) / (hi - lo), 0.0f, 1.0f);
  }
  return result;
}

#define CTARR_INSTANTIATE(T)                                                   \
  template Image<T> reorient<T>(const Image<T>&, const Reorientation&); \
  template Image<T> resample_nearest<T>(const Image<T>&, const Grid<Scanner>&, T);
CTARR_INSTANTIATE(float)
CTARR_INSTANTIATE(std::uint8_t)
CTARR_INSTANTIATE(std::uint16_t)
CTARR_INSTANTIATE(std::int16_t)
#undef CTARR_INSTANTIATE

}  // namespace ctarr
