// End to end on synthetic scans rendered from the shipped atlas under known transforms (header lies included):
// the fit must recover the transform within 3 mm and 2 % (chest-only scans 3 %), and the crops must hold >= 99 % of
// the organ.
#include "ctarr/classes.hpp"
#include "ctarr/io.hpp"
#include "ctarr/log.hpp"
#include "ctarr/pipeline.hpp"
#include "ctarr/regions.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <iostream>
#include <filesystem>
#include <fstream>
#include <random>

namespace ctarr::test {
namespace {

constexpr double kPi = 3.14159265358979323846;

const AtlasModel& shipped_atlas() {
  static const AtlasModel atlas = load_atlas(repo_dir() + "/atlas");
  return atlas;
}

// Hard labels of the atlas: the most likely class where its mean mask is >= 0.5.
Image<std::uint8_t, Atlas> atlas_labels() {
  const auto& m = shipped_atlas().masks;
  Image<std::uint8_t, Atlas> out(m.grid, 0);
  const std::size_t n = static_cast<std::size_t>(m.grid.voxels());
  for (std::size_t v = 0; v < n; ++v) {
    float best = 0.5f;
    for (int c = 0; c < m.channels; ++c)
      if (m.data[static_cast<std::size_t>(c) * n + v] >= best) {
        best = m.data[static_cast<std::size_t>(c) * n + v];
        out.voxels[v] = static_cast<std::uint8_t>(c + 1);
      }
  }
  return out;
}

struct Case {
  std::string name;
  Eigen::Matrix3d rotation;      // atlas -> scanner linear part (before scale)
  Eigen::Vector3d scale;         // atlas -> scanner, per atlas axis
  Eigen::Vector3d translation;   // mm
  std::pair<int, int> z_classes; // field of view along atlas z: from the bottom of class a to the top of class b
  std::string region;            // region whose crop must hold its organ
  int organ_label;               // label the crop must hold
  // Tolerances: the 3 mm and 2 % (measured worst 2.1 mm and 1.9 %, on the head-only scan).
  double scale_tolerance = 0.02;
  double landmark_tolerance_mm = 3.0;
};

Eigen::Matrix3d rot_z(double deg) { return Eigen::AngleAxisd(deg * kPi / 180.0, Eigen::Vector3d::UnitZ()).toRotationMatrix(); }
Eigen::Matrix3d zflip() { return Eigen::Vector3d(1, 1, -1).asDiagonal(); }

// z extent (atlas mm) of a class in the atlas labels.
std::pair<double, double> class_z_range(const Image<std::uint8_t, Atlas>& labels, int label) {
  double lo = 1e9, hi = -1e9;
  for (std::int64_t k = 0; k < labels.grid.size[2]; ++k)
    for (std::int64_t j = 0; j < labels.grid.size[1]; ++j)
      for (std::int64_t i = 0; i < labels.grid.size[0]; ++i)
        if (labels.at(Index3{{i, j, k}}) == label) {
          const double z = labels.grid.to_world(Index3{{i, j, k}}).mm.z();
          lo = std::min(lo, z);
          hi = std::max(hi, z);
        }
  return {lo, hi};
}

// The most likely class at an atlas point, from the trilinearly interpolated mean masks (>= 0.5), 0 otherwise.
std::uint8_t soft_label_at(const Point<Atlas>& p) {
  const auto& m = shipped_atlas().masks;
  const ContinuousIndex ci = m.grid.to_continuous_index(p);
  std::int64_t i0[3];
  double f[3];
  for (int a = 0; a < 3; ++a) {
    if (ci.v[a] < 0.0 || ci.v[a] > static_cast<double>(m.grid.size[a] - 1)) return 0;
    i0[a] = std::min<std::int64_t>(static_cast<std::int64_t>(ci.v[a]), m.grid.size[a] - 2);
    f[a] = ci.v[a] - static_cast<double>(i0[a]);
  }
  const std::size_t n = static_cast<std::size_t>(m.grid.voxels());
  double best = 0.5;
  std::uint8_t label = 0;
  for (int c = 0; c < m.channels; ++c) {
    const float* ch = m.channel(c);
    double v = 0.0;
    for (int corner = 0; corner < 8; ++corner) {
      double w = 1.0;
      Index3 q;
      for (int a = 0; a < 3; ++a) {
        const int bit = (corner >> a) & 1;
        q[a] = i0[a] + bit;
        w *= bit ? f[a] : 1.0 - f[a];
      }
      if (w > 0.0) v += w * ch[m.grid.linear(q)];
    }
    if (v >= best) {
      best = v;
      label = static_cast<std::uint8_t>(c + 1);
    }
  }
  (void)n;
  return label;
}

struct Rendered {
  Image<std::uint8_t> labels;  // scanner grid
  Image<float> ct;             // same grid, HU
  Affine<Atlas, Scanner> truth;
};

float hu_of(int label, std::mt19937& rng) {
  std::normal_distribution<float> noise(0.0f, 15.0f);
  static const float hu[20] = {-1000, 900, 700, 700, 700, 700, 700, 600, 700, 700, 700,
                               35,    -850, -850, 40, 60, 50, 30, 30, 10};
  return hu[label] + noise(rng);
}

// Renders the atlas labels into a 2.5 x 2.5 x 3 mm scanner grid (identity header) under the case's transform,
// restricted to the case's z field of view.
Rendered render(const Case& c) {
  const Image<std::uint8_t, Atlas> al = atlas_labels();
  Eigen::Affine3d t = Eigen::Affine3d::Identity();
  t.linear() = c.rotation * c.scale.asDiagonal();
  t.translation() = c.translation;
  Rendered r{{}, {}, Affine<Atlas, Scanner>(t)};

  const double z_lo = class_z_range(al, c.z_classes.first).first - 15.0;
  const double z_hi = class_z_range(al, c.z_classes.second).second + 15.0;
  // Bounding box (scanner mm) of the atlas slab between z_lo and z_hi.
  Box<Atlas> slab;
  slab.lower.mm = al.grid.origin;
  slab.upper.mm = al.grid.origin + (al.grid.size_vector() - Eigen::Vector3d::Ones()).cwiseProduct(al.grid.spacing);
  slab.lower.mm.z() = std::max(slab.lower.mm.z(), z_lo);
  slab.upper.mm.z() = std::min(slab.upper.mm.z(), z_hi);
  const Box<Scanner> sb = transform_box(r.truth, slab);
  Grid<Scanner> g;
  g.spacing = Eigen::Vector3d(2.5, 2.5, 3.0);
  g.origin = sb.lower.mm;
  for (int a = 0; a < 3; ++a)
    g.size[a] = static_cast<std::int64_t>(std::ceil((sb.upper.mm[a] - sb.lower.mm[a]) / g.spacing[a])) + 1;

  r.labels = Image<std::uint8_t>(g, 0);
  r.ct = Image<float>(g, -1000.0f);
  (void)al;
  std::mt19937 rng(7);
  const Affine<Scanner, Atlas> inv = r.truth.inverse();
  for (std::int64_t k = 0; k < g.size[2]; ++k)
    for (std::int64_t j = 0; j < g.size[1]; ++j)
      for (std::int64_t i = 0; i < g.size[0]; ++i) {
        const Index3 idx{{i, j, k}};
        const Point<Atlas> pa = inv(g.to_world(idx));
        std::uint8_t label = 0;
        if (pa.mm.z() >= z_lo && pa.mm.z() <= z_hi) label = soft_label_at(pa);
        r.labels.at(idx) = label;
        r.ct.at(idx) = hu_of(label, rng);
      }
  return r;
}

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class KnownTransform : public ::testing::TestWithParam<Case> {};

TEST_P(KnownTransform, FitRecoversTheTransformAndTheCropHoldsTheOrgan) {
  const Case& c = GetParam();
  const Rendered r = render(c);
  TempDir dir;
  const std::string seg_path = dir.file("seg.nii.gz");
  write_image(r.labels, seg_path);

  PipelineOptions po;
  po.atlas_dir = repo_dir() + "/atlas";
  po.regions_dir = repo_dir() + "/regions";
  po.device.text = "cpu";
  Pipeline pipeline(po);
  if (std::getenv("CTARR_TEST_LOG"))  // the fit's own log lines, for diagnosing a miss
    set_log_sink([](LogLevel level, const std::string& m) {
      if (level != LogLevel::Debug || std::string(std::getenv("CTARR_TEST_LOG")) == "debug") std::cerr << m << '\n';
    });
  const Segmentation seg = pipeline.segmentation_from_labels(seg_path);
  const Fit fit = pipeline.fit(seg);

  // 1. transform: the fitted scanner->atlas map sends every visible organ's centre where the truth does.
  const Affine<Scanner, Atlas> truth_s2a = r.truth.inverse();
  const Landmarks<Scanner> lm = extract_landmarks(seg.soft_masks);
  double worst = 0.0;
  for (int cls : fit.initial.classes_seen) {
    const Point<Scanner> p{lm.centre_mm[static_cast<std::size_t>(cls)]};
    const double err = (fit.scanner_to_atlas(p).mm - truth_s2a(p).mm).norm();
    worst = std::max(worst, err);
  }
  const double dice_truth = soft_dice(seg.soft_masks, pipeline.atlas().masks, truth_s2a, fit.initial.weights);
  const double dice_fit = soft_dice(seg.soft_masks, pipeline.atlas().masks, fit.scanner_to_atlas, fit.initial.weights);
  RefineOptions sharp;
  sharp.target_sharpness = pipeline.options().refine.target_sharpness;
  std::cout << c.name << ": sharpened Dice at fit "
            << soft_dice(seg.soft_masks, pipeline.atlas().masks, fit.scanner_to_atlas, fit.initial.weights, sharp)
            << ", at truth " << soft_dice(seg.soft_masks, pipeline.atlas().masks, truth_s2a, fit.initial.weights, sharp)
            << "\n";
  std::cout << c.name << ": orientation " << fit.initial.orientation << ", worst landmark error " << worst
            << " mm, Dice at fit " << dice_fit << ", at truth " << dice_truth << "\n";
  EXPECT_LE(worst, c.landmark_tolerance_mm) << c.name << ": orientation " << fit.initial.orientation << ", Dice " << fit.refined.dice;
  // Scale: compare the linear parts column by column (the recovered map's length along each scanner axis).
  const Eigen::Matrix3d lin_fit = fit.scanner_to_atlas.matrix().linear();
  const Eigen::Matrix3d lin_true = truth_s2a.matrix().linear();
  std::cout << c.name << ": scale ratios";
  for (int a = 0; a < 3; ++a) std::cout << ' ' << lin_fit.col(a).norm() / lin_true.col(a).norm();
  std::cout << '\n';
  for (int a = 0; a < 3; ++a) {
    EXPECT_NEAR(lin_fit.col(a).norm() / lin_true.col(a).norm(), 1.0, c.scale_tolerance) << c.name << " axis " << a;
    EXPECT_GT(lin_fit.col(a).normalized().dot(lin_true.col(a).normalized()), 0.999) << c.name << " axis " << a;
  }

  // 2. crop: the region's boxes hold >= 99 % of the organ's voxels.
  const Region region = find_region(po.regions_dir, c.region);
  CropOptions options;
  options.margin_mm = region.margin_mm;
  std::int64_t organ = 0, kept = 0;
  std::vector<MappedBox> boxes;
  for (const Box<Atlas>& b : region.boxes) boxes.push_back(map_box(b, fit.scanner_to_atlas.inverse(), r.labels.grid, options));
  for (std::int64_t k = 0; k < r.labels.grid.size[2]; ++k)
    for (std::int64_t j = 0; j < r.labels.grid.size[1]; ++j)
      for (std::int64_t i = 0; i < r.labels.grid.size[0]; ++i) {
        if (r.labels.at(Index3{{i, j, k}}) != c.organ_label) continue;
        ++organ;
        for (const MappedBox& m : boxes)
          if (i >= m.clipped.start[0] && i < m.clipped.end[0] && j >= m.clipped.start[1] && j < m.clipped.end[1] &&
              k >= m.clipped.start[2] && k < m.clipped.end[2]) {
            ++kept;
            break;
          }
      }
  ASSERT_GT(organ, 0) << c.name;
  EXPECT_GE(static_cast<double>(kept) / static_cast<double>(organ), 0.99) << c.name;
}

// Labels: 1 skull, 2-4 C/T/L spine, 8 sacrum, 11 brain, 12/13 lungs, 14 heart, 15 liver, 19 bladder.
INSTANTIATE_TEST_SUITE_P(
    SyntheticScans, KnownTransform,
    ::testing::Values(
        Case{"whole_body_shift_scale", Eigen::Matrix3d::Identity(), {1.06, 0.95, 1.03}, {30, -20, 50}, {19, 1}, "liver", 15},
        Case{"whole_body_rot90", rot_z(90), {1, 1, 1}, {-40, 10, 0}, {19, 1}, "liver", 15},
        Case{"whole_body_rot180_zflip", rot_z(180) * zflip(), {1.04, 1.04, 1.0}, {0, 0, -100}, {19, 1}, "liver", 15},
        // Chest only, 3 %: with the atlas of 13 bodies (docs/REGIONS.md) the fit's scale along one in-plane axis is
        // 2.4 % / 2.3 % off (was < 1.9 % with the two-phantom atlas) while its Dice beats the truth's (0.673 vs
        // 0.669): the objective's optimum for a chest cut from a blurrier mean, not the optimiser, sets it.
        Case{"chest_only_rot270", rot_z(270), {1, 1, 1}, {25, 0, 10}, {15, 13}, "lungs", 13, 0.03},
        Case{"chest_only_zflip", zflip(), {1.03, 1.03, 1.03}, {0, 15, 30}, {15, 13}, "heart", 14, 0.03},
        Case{"pelvis_only_shift", Eigen::Matrix3d::Identity(), {1, 1, 1}, {-15, 20, -60}, {19, 8}, "urinary_bladder", 19},
        Case{"head_only_shift", Eigen::Matrix3d::Identity(), {1, 1, 1}, {10, -30, 40}, {2, 1}, "brain", 11}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

}  // namespace
}  // namespace ctarr::test
