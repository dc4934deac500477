// ctarr — canonical orientation, resampling and intensity windows.
#include "ctarr/preprocess.hpp"

#include "parallel.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>

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

}  // namespace

Image<float> resample_linear(const Image<float>& image, const Grid<Scanner>& target, float outside, bool antialias) {
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
  for (std::int64_t k = 0; k < n[2]; ++k)
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
  // Labels coarser than the target (a 6 mm or 5 mm-slice label map on the 3 mm grid) leave target voxels that no
  // label voxel centre falls in: without this, up to 7 of 8 of them stayed 0 and every class looked too small
  // ("no anatomy recognised"). Give each such voxel inside the label grid the label of its nearest label voxel.
  const Eigen::Matrix3d to_label = labels.grid.spacing.cwiseInverse().asDiagonal() * labels.grid.direction.transpose() *
                                   target.direction * target.spacing.asDiagonal();
  const Eigen::Vector3d label_b = labels.grid.spacing.cwiseInverse().asDiagonal() * labels.grid.direction.transpose() *
                                  (target.origin - labels.grid.origin);
  for (std::int64_t k = 0; k < target.size[2]; ++k)
    for (std::int64_t j = 0; j < target.size[1]; ++j)
      for (std::int64_t i = 0; i < target.size[0]; ++i) {
        const Index3 t{{i, j, k}};
        const std::size_t v = target.linear(t);
        if (total[v] > 0.0f) continue;
        const Eigen::Vector3d c = to_label * Eigen::Vector3d(static_cast<double>(i), static_cast<double>(j), static_cast<double>(k)) + label_b;
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
