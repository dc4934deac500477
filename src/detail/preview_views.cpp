// ctarr — per-view computations of the previews (detail/preview_views.hpp).
#include "detail/preview_views.hpp"

namespace ctarr::detail {

std::vector<float> resample_view(const std::vector<float>& in, std::int64_t w, std::int64_t h, double sx, double sz,
                                 std::int64_t out_w, std::int64_t out_h, double s) {
  auto at = [&](double x, double z) {
    x = std::clamp(x, 0.0, static_cast<double>(w - 1));
    z = std::clamp(z, 0.0, static_cast<double>(h - 1));
    const auto x0 = static_cast<std::int64_t>(std::floor(x)), z0 = static_cast<std::int64_t>(std::floor(z));
    const std::int64_t x1 = std::min(x0 + 1, w - 1), z1 = std::min(z0 + 1, h - 1);
    const double fx = x - static_cast<double>(x0), fz = z - static_cast<double>(z0);
    auto v = [&](std::int64_t xx, std::int64_t zz) {
      return static_cast<double>(in[static_cast<std::size_t>(zz * w + xx)]);
    };
    return (1 - fz) * ((1 - fx) * v(x0, z0) + fx * v(x1, z0)) + fz * ((1 - fx) * v(x0, z1) + fx * v(x1, z1));
  };
  const int sub_x = std::max(1, static_cast<int>(std::ceil(s / sx - 1e-9)));
  const int sub_z = std::max(1, static_cast<int>(std::ceil(s / sz - 1e-9)));
  std::vector<float> out(static_cast<std::size_t>(out_w * out_h));
  parallel_for(out_h, [&](std::int64_t r) {
    for (std::int64_t c = 0; c < out_w; ++c) {
      double sum = 0.0;
      for (int a = 0; a < sub_z; ++a)
        for (int b = 0; b < sub_x; ++b) {
          const double xmm = (static_cast<double>(c) + (b + 0.5) / sub_x) * s;  // from the first corner
          const double zmm = (static_cast<double>(r) + (a + 0.5) / sub_z) * s;
          sum += at(xmm / sx - 0.5, zmm / sz - 0.5);
        }
      out[static_cast<std::size_t>(r * out_w + c)] = static_cast<float>(sum / (sub_x * sub_z));
    }
  });
  return out;
}

ClassVolume class_volume(const MultiChannelImage<Scanner>& seg) {
  ClassVolume out;
  const Reorientation r = canonical_reorientation(seg.grid.direction);
  out.grid = reorient_grid(seg.grid, r);
  const Index3 n = out.grid.size;
  out.cls.assign(static_cast<std::size_t>(out.grid.voxels()), -1);
  const int channels = std::min(seg.channels, kNumClasses);
  parallel_for(n[2], [&](std::int64_t k) {
    for (std::int64_t j = 0; j < n[1]; ++j)
      for (std::int64_t i = 0; i < n[0]; ++i) {
        const std::size_t v = seg.grid.linear(reoriented_to_original(Index3{{i, j, k}}, seg.grid, r));
        float best = 0.5f;
        std::int8_t c_best = -1;
        for (int c = 0; c < channels; ++c)
          if (const float p = seg.channel(c)[v]; p >= best) best = p, c_best = static_cast<std::int8_t>(c);
        out.cls[out.grid.linear(Index3{{i, j, k}})] = c_best;
      }
  });
  return out;
}

ClassViews class_views(const ClassVolume& vol) {
  const Index3 n = vol.grid.size;
  const auto ni = static_cast<std::size_t>(n[0]), nj = static_cast<std::size_t>(n[1]);
  ClassViews out;
  out.coronal.assign(ni * static_cast<std::size_t>(n[2]), -1);
  out.sagittal.assign(nj * static_cast<std::size_t>(n[2]), -1);
  std::vector<std::array<std::int64_t, kNumClasses>> voxels(static_cast<std::size_t>(n[2]));
  parallel_for(n[2], [&](std::int64_t k) {
    std::vector<std::uint16_t> cor(ni * kNumClasses, 0), sag(nj * kNumClasses, 0);
    for (std::int64_t j = 0; j < n[1]; ++j)
      for (std::int64_t i = 0; i < n[0]; ++i) {
        const std::int8_t c = vol.cls[vol.grid.linear(Index3{{i, j, k}})];
        if (c < 0) continue;
        ++cor[static_cast<std::size_t>(i) * kNumClasses + static_cast<std::size_t>(c)];
        ++sag[static_cast<std::size_t>(j) * kNumClasses + static_cast<std::size_t>(c)];
        ++voxels[static_cast<std::size_t>(k)][static_cast<std::size_t>(c)];
      }
    auto dominant = [](const std::uint16_t* counts) {
      const std::uint16_t* m = std::max_element(counts, counts + kNumClasses);
      return *m ? static_cast<std::int8_t>(m - counts) : std::int8_t{-1};
    };
    for (std::size_t i = 0; i < ni; ++i) out.coronal[static_cast<std::size_t>(k) * ni + i] = dominant(&cor[i * kNumClasses]);
    for (std::size_t j = 0; j < nj; ++j) out.sagittal[static_cast<std::size_t>(k) * nj + j] = dominant(&sag[j * kNumClasses]);
  });
  for (int c = 0; c < kNumClasses; ++c) {
    std::int64_t total = 0;
    for (const auto& v : voxels) total += v[static_cast<std::size_t>(c)];
    if (static_cast<double>(total) * vol.grid.spacing.prod() >= kPresentMinMm3) out.present.insert(c);
  }
  return out;
}

std::vector<int> outlined_classes(const MultiChannelImage<Atlas>& atlas, const std::vector<int>& wanted) {
  std::vector<int> out;
  for (int c = 0; c < std::min(atlas.channels, kNumClasses); ++c)
    if (wanted.empty() || std::find(wanted.begin(), wanted.end(), c) != wanted.end()) out.push_back(c);
  return out;
}


AtlasViews atlas_views(const Grid<Scanner>& display, const MultiChannelImage<Atlas>& atlas,
                       const Affine<Scanner, Atlas>& scanner_to_atlas, const std::vector<int>& classes) {
  AtlasViews out;
  out.classes = classes;
  const double s = display.spacing[0];
  const double sb = std::max(s, atlas.grid.spacing.minCoeff() / std::max(scanner_to_atlas.matrix().linear().norm() / std::sqrt(3.0), 1e-6));
  const Grid<Scanner> gb = sb > s * (1.0 + 1e-9) ? isotropic_grid(display, sb) : display;
  const double sb_mm = gb.spacing[0];
  const Index3 n = gb.size, m = display.size;
  const auto nc = classes.size();
  const auto ni = static_cast<std::size_t>(n[0]), nj = static_cast<std::size_t>(n[1]), nk = static_cast<std::size_t>(n[2]);
  std::vector<std::vector<float>> cor(nc, std::vector<float>(ni * nk, 0.0f)), sag(nc, std::vector<float>(nj * nk, 0.0f));
  const AtlasSampler sampler(atlas, scanner_to_atlas);
  const Eigen::Matrix3d lin = gb.index_to_world_linear();
  parallel_for(n[2], [&](std::int64_t k) {
    std::array<std::size_t, 8> at{};
    std::array<double, 8> w{};
    for (std::int64_t j = 0; j < n[1]; ++j)
      for (std::int64_t i = 0; i < n[0]; ++i) {
        const Eigen::Vector3d x =
            gb.origin + lin * Eigen::Vector3d(static_cast<double>(i), static_cast<double>(j), static_cast<double>(k));
        if (!sampler.corners(x, at, w)) continue;
        for (std::size_t c = 0; c < nc; ++c) {
          const float v = sampler.value(classes[c], at, w);
          float& cv = cor[c][static_cast<std::size_t>(k) * ni + static_cast<std::size_t>(i)];
          float& sv = sag[c][static_cast<std::size_t>(k) * nj + static_cast<std::size_t>(j)];
          cv = std::max(cv, v);
          sv = std::max(sv, v);
        }
      }
  });
  for (std::size_t c = 0; c < nc; ++c) {
    // sb >= s: resample_view enlarges bilinearly, pixel centres aligned from the shared first corner
    out.coronal.push_back(resample_view(cor[c], n[0], n[2], sb_mm, sb_mm, m[0], m[2], s));
    out.sagittal.push_back(resample_view(sag[c], n[1], n[2], sb_mm, sb_mm, m[1], m[2], s));
  }
  return out;
}

}  // namespace ctarr::detail
