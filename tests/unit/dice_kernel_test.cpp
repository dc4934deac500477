// The fit's fused Dice pass (src/detail/dice_kernel) against a plain trilinear sampler written here, finite
// differences, and LibTorch's grid_sample + autograd (RefineOptions::reference_autograd) through the public API.
#include "ctarr/refine.hpp"

#include "../../src/detail/dice_kernel.hpp"  // private to refine, tested directly
#include "support/support.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace ctarr::test {
namespace {

using detail::ChannelLastVolume;
using detail::DiceMap;
using detail::DiceTerms;

ChannelLastVolume smooth_volume(std::int64_t nx, std::int64_t ny, std::int64_t nz, int channels, unsigned seed) {
  ChannelLastVolume v;
  v.size[0] = nx, v.size[1] = ny, v.size[2] = nz;
  v.channels = channels;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> phase(0.0, 6.28);
  std::vector<double> ph(static_cast<std::size_t>(3 * channels));
  for (double& p : ph) p = phase(rng);
  for (std::int64_t k = 0; k < nz; ++k)
    for (std::int64_t j = 0; j < ny; ++j)
      for (std::int64_t i = 0; i < nx; ++i)
        for (int c = 0; c < channels; ++c) {
          const auto u = static_cast<std::size_t>(3 * c);
          const double s = std::sin(0.31 * static_cast<double>(i) + ph[u]) *
                           std::sin(0.23 * static_cast<double>(j) + ph[u + 1]) *
                           std::sin(0.17 * static_cast<double>(k) + ph[u + 2]);
          v.data.push_back(static_cast<float>(std::max(0.0, s)));  // zeros over large parts, as in masks
        }
  return v;
}

// Trilinear sample of channel c at q, zero outside, after sharpening every grid value (the definition).
double sample(const ChannelLastVolume& v, int c, const Eigen::Vector3d& q, double k) {
  const Eigen::Vector3d f(std::floor(q[0]), std::floor(q[1]), std::floor(q[2]));
  double sum = 0.0;
  for (int n = 0; n < 8; ++n) {
    double w = 1.0;
    std::int64_t idx[3];
    for (int a = 0; a < 3; ++a) {
      const int bit = (n >> a) & 1;
      idx[a] = static_cast<std::int64_t>(f[a]) + bit;
      const double frac = q[a] - f[a];
      w *= bit ? frac : 1.0 - frac;
    }
    bool inside = true;
    for (int a = 0; a < 3; ++a) inside = inside && idx[a] >= 0 && idx[a] < v.size[a];
    const double raw =
        inside ? v.data[static_cast<std::size_t>(((idx[2] * v.size[1] + idx[1]) * v.size[0] + idx[0]) * v.channels + c)]
               : 0.0;
    sum += w * std::clamp(0.5 + k * (raw - 0.5), 0.0, 1.0);
  }
  return sum;
}

DiceMap oblique_map() {
  DiceMap m;
  m.scan_index_to_y = Eigen::AngleAxisd(0.3, Eigen::Vector3d(1, 2, 3).normalized()).toRotationMatrix() * 4.0;
  m.y_offset = Eigen::Vector3d(-20, -25, -15);
  // atlas: 2.5 x 3 x 3.5 mm voxels along axes turned by 0.2 rad
  m.atlas_mm_to_index = Eigen::Vector3d(1 / 2.5, 1 / 3.0, 1 / 3.5).asDiagonal() *
                        Eigen::AngleAxisd(0.2, Eigen::Vector3d::UnitZ()).toRotationMatrix().transpose();
  m.scale = Eigen::Vector3d(1.05, 0.97, 1.1);
  m.t = Eigen::Vector3d(55, 50, 60);  // parts of the scan fall outside the atlas grid
  return m;
}

TEST(DiceKernel, SumsMatchAPlainTrilinearSampler) {
  const ChannelLastVolume scan = smooth_volume(12, 10, 9, 3, 1);
  ChannelLastVolume atlas = smooth_volume(30, 28, 26, 3, 2);
  detail::fill_channel_max(atlas);
  const DiceMap m = oblique_map();
  for (double k : {1.0, 3.0}) {
    const DiceTerms t = detail::dice_terms(scan, atlas, m, k, false);
    std::vector<double> inter(3, 0.0), mass(3, 0.0);
    std::int64_t outside = 0;
    for (std::int64_t kk = 0; kk < scan.size[2]; ++kk)
      for (std::int64_t j = 0; j < scan.size[1]; ++j)
        for (std::int64_t i = 0; i < scan.size[0]; ++i) {
          const Eigen::Vector3d y = m.scan_index_to_y * Eigen::Vector3d(double(i), double(j), double(kk)) + m.y_offset;
          const Eigen::Vector3d q = m.atlas_mm_to_index * (m.scale.asDiagonal() * y + m.t);
          if (q.minCoeff() < -1 || q[0] > 30 || q[1] > 28 || q[2] > 26) ++outside;
          for (int c = 0; c < 3; ++c) {
            const double a = sample(atlas, c, q, k);
            const double s = scan.data[static_cast<std::size_t>(((kk * 10 + j) * 12 + i) * 3 + c)];
            inter[static_cast<std::size_t>(c)] += s * a;
            mass[static_cast<std::size_t>(c)] += a;
          }
        }
    EXPECT_GT(outside, 10) << "the test means some scan voxels to fall outside the atlas";
    for (std::size_t c = 0; c < 3; ++c) {
      EXPECT_GT(mass[c], 1.0);
      EXPECT_NEAR(t.inter[c], inter[c], 1e-4 * (1.0 + inter[c])) << "class " << c << ", sharpness " << k;
      EXPECT_NEAR(t.mass[c], mass[c], 1e-4 * (1.0 + mass[c])) << "class " << c << ", sharpness " << k;
    }
  }
}

TEST(DiceKernel, GradientsMatchFiniteDifferences) {
  const ChannelLastVolume scan = smooth_volume(12, 10, 9, 2, 3);
  ChannelLastVolume atlas = smooth_volume(30, 28, 26, 2, 4);
  detail::fill_channel_max(atlas);
  const DiceMap m = oblique_map();
  const double k = 1.5;
  const DiceTerms t = detail::dice_terms(scan, atlas, m, k, true);
  for (int a = 0; a < 3; ++a) {
    DiceMap plus = m, minus = m;
    const double hs = 1e-4;
    plus.scale[a] += hs;
    minus.scale[a] -= hs;
    const DiceTerms tp = detail::dice_terms(scan, atlas, plus, k, false), tm = detail::dice_terms(scan, atlas, minus, k, false);
    DiceMap plus_t = m, minus_t = m;
    const double ht = 2e-3;  // mm
    plus_t.t[a] += ht;
    minus_t.t[a] -= ht;
    const DiceTerms tpt = detail::dice_terms(scan, atlas, plus_t, k, false),
                    tmt = detail::dice_terms(scan, atlas, minus_t, k, false);
    for (std::size_t c = 0; c < 2; ++c) {
      const double fd_mass_s = (tp.mass[c] - tm.mass[c]) / (2 * hs), fd_inter_s = (tp.inter[c] - tm.inter[c]) / (2 * hs);
      const double fd_mass_t = (tpt.mass[c] - tmt.mass[c]) / (2 * ht),
                   fd_inter_t = (tpt.inter[c] - tmt.inter[c]) / (2 * ht);
      EXPECT_NEAR(t.mass_d_scale[c][a], fd_mass_s, 0.01 * std::abs(fd_mass_s) + 0.05) << "axis " << a << " class " << c;
      EXPECT_NEAR(t.inter_d_scale[c][a], fd_inter_s, 0.01 * std::abs(fd_inter_s) + 0.05) << "axis " << a;
      EXPECT_NEAR(t.mass_d_t[c][a], fd_mass_t, 0.01 * std::abs(fd_mass_t) + 0.005) << "axis " << a << " class " << c;
      EXPECT_NEAR(t.inter_d_t[c][a], fd_inter_t, 0.01 * std::abs(fd_inter_t) + 0.005) << "axis " << a;
      EXPECT_GT(std::abs(fd_mass_s) + std::abs(fd_mass_t), 0.1) << "a gradient that is 0 proves nothing";
    }
  }
}

TEST(DiceKernel, SkippingEmptyNeighbourhoodsChangesNothing) {
  const ChannelLastVolume scan = smooth_volume(12, 10, 9, 3, 5);
  ChannelLastVolume atlas = smooth_volume(30, 28, 26, 3, 6);
  const DiceMap m = oblique_map();
  const DiceTerms all = detail::dice_terms(scan, atlas, m, 2.0, true);
  detail::fill_channel_max(atlas);
  const DiceTerms skipping = detail::dice_terms(scan, atlas, m, 2.0, true);
  for (std::size_t c = 0; c < 3; ++c) {
    EXPECT_DOUBLE_EQ(all.mass[c], skipping.mass[c]);
    EXPECT_DOUBLE_EQ(all.inter[c], skipping.inter[c]);
    EXPECT_DOUBLE_EQ(all.mass_d_scale[c].x(), skipping.mass_d_scale[c].x());
  }
}

// ---- the fused CPU pass against LibTorch's grid_sample + autograd, through refine's public functions ----------

const MultiChannelImage<Atlas>& body_atlas() {
  static const MultiChannelImage<Atlas> a = render_body(body_atlas_grid(3.0));
  return a;
}

Eigen::Affine3d affine(const Eigen::Matrix3d& linear, const Eigen::Vector3d& translation) {
  Eigen::Affine3d m = Eigen::Affine3d::Identity();
  m.linear() = linear;
  m.translation() = translation;
  return m;
}

TEST(DiceKernel, SoftDiceEqualsTheLibTorchPath) {
  const Eigen::Affine3d truth = affine(Eigen::Vector3d(1.05, 0.95, 1.0).asDiagonal().toDenseMatrix(),
                                       Eigen::Vector3d(30, -20, 50));
  const Grid<Scanner> grid =
      grid_covering(truth, Eigen::Vector3d(-106.5, -70.5, 150.0), Eigen::Vector3d(106.5, 70.5, 450.0), 3.0);
  const auto scan = render_body(grid, truth);
  const std::array<double, kNumClasses> weights = initial_fit(extract_landmarks(scan), extract_landmarks(body_atlas())).weights;
  RefineOptions fused, reference;
  reference.reference_autograd = true;
  int compared = 0;
  for (const Eigen::Vector3d& shift : {Eigen::Vector3d(0, 0, 0), Eigen::Vector3d(12, -7, 40), Eigen::Vector3d(0, 0, 300)})
    for (double k : {1.0, 3.0}) {
      fused.target_sharpness = reference.target_sharpness = {k};
      const Affine<Scanner, Atlas> t(affine(truth.linear() * 1.02, truth.translation() + shift));
      const double a = soft_dice(scan, body_atlas(), t, weights, fused);
      const double b = soft_dice(scan, body_atlas(), t, weights, reference);
      EXPECT_NEAR(a, b, 2e-5) << "shift " << shift.transpose() << ", sharpness " << k;
      if (shift.norm() < 1.0) {  // near the truth
        EXPECT_GT(a, 0.5);
      }
      ++compared;
    }
  EXPECT_EQ(compared, 6);
}

TEST(DiceKernel, RefineEqualsTheLibTorchPath) {
  // A chest-only scan turned 270 degrees in plane, fitted from a start 15 mm and 6 % off.
  const Eigen::Matrix3d rot = Eigen::AngleAxisd(-1.5707963267948966, Eigen::Vector3d::UnitZ()).toRotationMatrix();
  const Eigen::Affine3d truth = affine(Eigen::Vector3d(1.06, 1.0, 0.97).asDiagonal() * rot, Eigen::Vector3d(30, -20, 50));
  const Grid<Scanner> grid =
      grid_covering(truth, Eigen::Vector3d(-106.5, -70.5, 330.0), Eigen::Vector3d(106.5, 70.5, 520.0), 3.0);
  const auto scan = render_body(grid, truth);
  InitialFit init = initial_fit(extract_landmarks(scan), extract_landmarks(body_atlas()));
  init.pivot_to_mm += Eigen::Vector3d(9, -6, 10);
  init.scale *= 1.06;
  RefineOptions fused, reference;
  fused.target_sharpness = reference.target_sharpness = {kFitSharpness.begin(), kFitSharpness.end()};
  reference.reference_autograd = true;
  const RefineResult a = refine_transform(scan, body_atlas(), init, fused);
  const RefineResult b = refine_transform(scan, body_atlas(), init, reference);
  EXPECT_NEAR(a.initial_dice, b.initial_dice, 2e-5);
  EXPECT_NEAR(a.dice, b.dice, 1e-4);
  EXPECT_LT((a.translation_mm - b.translation_mm).norm(), 0.1) << a.translation_mm.transpose() << " vs "
                                                                  << b.translation_mm.transpose();
  EXPECT_LT((a.scale - b.scale).cwiseAbs().maxCoeff(), 1e-3) << a.scale.transpose() << " vs " << b.scale.transpose();
  EXPECT_GT(a.dice, a.initial_dice + 0.02) << "the fit should have moved";
}

}  // namespace
}  // namespace ctarr::test
