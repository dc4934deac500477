#include "ctarr/refine.hpp"

#include "ctarr/log.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <random>

namespace ctarr::test {
namespace {

Eigen::Affine3d make_affine(const Eigen::Matrix3d& linear, const Eigen::Vector3d& translation) {
  Eigen::Affine3d m = Eigen::Affine3d::Identity();
  m.linear() = linear;
  m.translation() = translation;
  return m;
}

Eigen::Matrix3d rotation_named(const std::string& name) {
  for (const auto& c : orientation_candidates(false))
    if (c.name == name) return c.rotation;
  throw std::runtime_error("no candidate " + name);
}

// The synthetic body atlas, 72 x 48 x 216 voxels at 3 mm, rendered once.
const MultiChannelImage<Atlas>& atlas() {
  static const MultiChannelImage<Atlas> a = render_body(body_atlas_grid(3.0));
  return a;
}
const Landmarks<Atlas>& atlas_landmarks() {
  static const Landmarks<Atlas> lm = extract_landmarks(atlas());
  return lm;
}

// CTARR_TEST_VERBOSE=1 prints the library's log (every refine iteration).
void maybe_verbose() {
  if (std::getenv("CTARR_TEST_VERBOSE"))
    set_log_sink([](LogLevel, const std::string& m) { std::cout << "    " << m << "\n"; });
}

const Eigen::Vector3d kTranslation(30, -20, 50);
const Eigen::Vector3d kLower(-106.5, -70.5, -30.0), kUpper(106.5, 70.5, 615.0);  // whole body, atlas mm

// Scan grid (3 mm) covering the body from z = 150 to 450 mm (atlas mm) seen through `truth`.
Grid<Scanner> abdomen_grid(const Eigen::Affine3d& truth) {
  return grid_covering(truth, Eigen::Vector3d(kLower.x(), kLower.y(), 150.0),
                       Eigen::Vector3d(kUpper.x(), kUpper.y(), 450.0), 3.0);
}

struct Scenario {
  std::string name;
  Eigen::Matrix3d rotation;      // truth: x_atlas = diag(scale) * rotation * x_scan + kTranslation
  Eigen::Vector3d scale;
  double z_lower, z_upper;       // field of view along the body axis, atlas mm (full width and depth)
  Eigen::Matrix3d direction = Eigen::Matrix3d::Identity();  // scan grid direction
  bool searched = true;          // expected from the landmark fit
  // Optional perturbation of the landmark fit, to test refine's capture range independently of the landmarks.
  Eigen::Vector3d start_offset_mm = Eigen::Vector3d::Zero();  // added to the atlas pivot
  double start_scale_factor = 1.0;                            // multiplies the isotropic scale
  double spacing_mm = 3.0;
};

struct Outcome {
  RefineResult result;
  InitialFit init;
  double init_error_mm = 0.0;    // |start(c) - truth(c)| at the scan's field-of-view centre c
  double centre_error_mm = 0.0;  // |fit(c) - truth(c)|
  double max_error_mm = 0.0;     // max over the scan's voxel-box corners
  double truth_dice = 0.0;       // soft Dice of the true transform, computed as refine computes it
  double seconds = 0.0, cpu_seconds = 0.0;
};

Outcome run(const Scenario& s) {
  maybe_verbose();
  const Eigen::Affine3d truth = make_affine(s.scale.asDiagonal() * s.rotation, kTranslation);
  const Grid<Scanner> grid = grid_covering(truth, Eigen::Vector3d(kLower.x(), kLower.y(), s.z_lower),
                                           Eigen::Vector3d(kUpper.x(), kUpper.y(), s.z_upper), s.spacing_mm,
                                           s.direction);
  const auto scan = render_body(grid, truth);
  Outcome o;
  o.init = initial_fit(extract_landmarks(scan), atlas_landmarks());
  o.init.pivot_to_mm += s.start_offset_mm;
  o.init.scale *= s.start_scale_factor;
  const auto t0 = std::chrono::steady_clock::now();
  const std::clock_t c0 = std::clock();
  o.result = refine_transform(scan, atlas(), o.init);
  o.cpu_seconds = static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
  o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  o.truth_dice = soft_dice(scan, atlas(), Affine<Scanner, Atlas>(truth), o.init.weights);
  const Eigen::Vector3d c = grid.centre().mm;
  o.init_error_mm = (o.init.transform()(Point<Scanner>{c}).mm - truth * c).norm();
  const auto fit = o.result.transform();
  o.centre_error_mm = (fit(Point<Scanner>{c}).mm - truth * c).norm();
  for (int k = 0; k < 8; ++k) {
    Index3 corner;
    for (int a = 0; a < 3; ++a) corner[a] = ((k >> a) & 1) ? grid.size[a] - 1 : 0;
    const Eigen::Vector3d x = grid.to_world(corner).mm;
    o.max_error_mm = std::max(o.max_error_mm, (fit(Point<Scanner>{x}).mm - truth * x).norm());
  }
  std::cout << "[ refine  ] " << s.name << ": grid " << grid.size << ", " << o.init.classes_seen.size()
            << " classes seen, orientation " << o.init.orientation << "; Dice " << o.result.initial_dice << " -> "
            << o.result.dice << " (truth " << o.truth_dice << "), " << o.result.iterations << " iterations, "
            << o.seconds << " s (cpu " << o.cpu_seconds << " s); scale (" << o.result.scale.transpose()
            << "); centre error " << o.init_error_mm << " -> " << o.centre_error_mm << " mm, corners <= "
            << o.max_error_mm << " mm\n";
  return o;
}

void expect_recovered(const Scenario& s, const Outcome& o) {
  EXPECT_EQ(o.init.searched, s.searched);
  EXPECT_LT((o.result.rotation - s.rotation).norm(), 1e-9);
  EXPECT_LT(o.centre_error_mm, 3.0);
  for (int a = 0; a < 3; ++a) EXPECT_NEAR(o.result.scale[a], s.scale[a], 0.02 * s.scale[a]) << "axis " << a;
  EXPECT_GE(o.result.dice, o.result.initial_dice);
  EXPECT_GT(o.result.dice, o.truth_dice - 0.01);
}

// ---- invariants first ----------------------------------------------------------------------------------------

TEST(RefineResult, ScannerToAtlasMapsScanPivotToAtlasPivotPlusTranslation) {
  RefineResult r;
  r.rotation = rotation_named("rot90+zflip");
  r.scale = Eigen::Vector3d(0.9, 1.1, 1.3);
  r.translation_mm = Eigen::Vector3d(4, -5, 6);
  r.pivot_from_mm = Eigen::Vector3d(10, 20, 300);
  r.pivot_to_mm = Eigen::Vector3d(-1, 2, 250);
  const auto map = r.transform();
  EXPECT_LT((map(Point<Scanner>{r.pivot_from_mm}).mm - (r.pivot_to_mm + r.translation_mm)).norm(), 1e-9);
  const Eigen::Vector3d x(7, -8, 9);
  const Eigen::Vector3d expected =
      r.scale.asDiagonal() * (r.rotation * (x - r.pivot_from_mm)) + r.pivot_to_mm + r.translation_mm;
  EXPECT_LT((map(Point<Scanner>{x}).mm - expected).norm(), 1e-9);
}

TEST(SoftDice, IsHighestAtTheTruthAndFallsWithMisalignment) {
  const Eigen::Affine3d truth = make_affine(rotation_named("rot90"), kTranslation);
  const auto scan = render_body(abdomen_grid(truth), truth);
  const auto w = initial_fit(extract_landmarks(scan), atlas_landmarks()).weights;
  const double at_truth = soft_dice(scan, atlas(), Affine<Scanner, Atlas>(truth), w);
  Eigen::Affine3d shifted = truth;
  shifted.translation() += Eigen::Vector3d(0, 0, 10);
  const double off = soft_dice(scan, atlas(), Affine<Scanner, Atlas>(shifted), w);
  EXPECT_GT(at_truth, 0.7);
  EXPECT_LE(at_truth, 1.0);
  EXPECT_LT(off, at_truth - 0.05);
}

TEST(Refine, StaysPutWhenStartedAtTheTruth) {
  maybe_verbose();
  const Eigen::Affine3d truth = make_affine(rotation_named("rot90"), kTranslation);
  const auto scan = render_body(abdomen_grid(truth), truth);
  InitialFit init = initial_fit(extract_landmarks(scan), atlas_landmarks());  // for its weights
  init.rotation = truth.linear();
  init.scale = 1.0;
  init.pivot_to_mm = truth * init.pivot_from_mm;
  const RefineResult r = refine_transform(scan, atlas(), init);
  EXPECT_LT(r.translation_mm.norm(), 1.0);
  EXPECT_LT((r.scale - Eigen::Vector3d::Ones()).cwiseAbs().maxCoeff(), 0.01);
  EXPECT_GE(r.dice, r.initial_dice);
}

// ---- recovery of known transforms ----------------------------------------------------------------------------

TEST(Refine, RecoversAnisotropicScaleOfARotatedWholeBodyScan) {
  Scenario s{"whole body, rot90, z scale 1.1", rotation_named("rot90"), Eigen::Vector3d(1.0, 1.0, 1.1), -30, 615};
  s.spacing_mm = 4.0;
  const Outcome o = run(s);
  expect_recovered(s, o);
  EXPECT_GT(o.result.dice, o.result.initial_dice + 0.01);
}

TEST(Refine, RecoversAChestOnlyScanWithZFlipAndXScale) {
  const Scenario s{"chest, zflip, x scale 1.1", rotation_named("zflip"), Eigen::Vector3d(1.1, 1.0, 1.0), 275, 450};
  expect_recovered(s, run(s));
}

TEST(Refine, RecoversALowerChestScanWithTruncatedOrgans) {
  // The liver, stomach and spleen are cut by the field of view: their scan centroids are biased.
  const Scenario s{"lower chest, rot270+zflip, y scale 0.95", rotation_named("rot270+zflip"),
                   Eigen::Vector3d(1.0, 0.95, 1.0), 230, 430};
  expect_recovered(s, run(s));
}

TEST(Refine, RecoversAPelvisOnlyScanRotated180) {
  const Scenario s{"pelvis, rot180", rotation_named("rot180"), Eigen::Vector3d(1.0, 1.0, 1.0), -30, 150};
  expect_recovered(s, run(s));
}

TEST(Refine, RecoversTheTranslationOfAHeadOnlyScan) {
  Scenario s{"head only", Eigen::Matrix3d::Identity(), Eigen::Vector3d(1.0, 1.0, 1.0), 430, 615};
  s.searched = false;
  expect_recovered(s, run(s));
}

TEST(Refine, RecoversFromAStartOffBy15mmAnd6Percent) {
  Scenario s{"abdomen, start off by (12, -6, 15) mm and x0.94", rotation_named("rot90"),
             Eigen::Vector3d(1.0, 1.0, 1.05), 120, 420};
  s.start_offset_mm = Eigen::Vector3d(12, -6, 15);
  s.start_scale_factor = 0.94;
  const Outcome o = run(s);
  EXPECT_GT(o.init_error_mm, 15.0);
  expect_recovered(s, o);
}

TEST(Refine, HandlesAScanGridRotated90Degrees) {
  Scenario s{"abdomen, grid direction rot90, truth rot270", rotation_named("rot270"), Eigen::Vector3d(1.0, 1.05, 1.0),
             150, 450};
  s.direction = rotation_named("rot90");
  expect_recovered(s, run(s));
}

TEST(Refine, HandlesAnObliqueScanGrid) {
  Scenario s{"abdomen, oblique grid, truth rot180+zflip", rotation_named("rot180+zflip"),
             Eigen::Vector3d(1.0, 1.0, 1.0), 150, 450};
  s.direction = oblique_direction(20.0);
  s.spacing_mm = 4.0;  // the oblique grid's box is large; 4 mm keeps the test fast
  expect_recovered(s, run(s));
}

TEST(Refine, RecoversAChestScanFromAStart37mmOff) {
  Scenario s{"chest, zflip, start off by (-20, 15, -25) mm and x0.93", rotation_named("zflip"),
             Eigen::Vector3d(1.0, 1.0, 1.0), 275, 450};
  s.start_offset_mm = Eigen::Vector3d(-20, 15, -25);
  s.start_scale_factor = 0.93;
  const Outcome o = run(s);
  EXPECT_GT(o.init_error_mm, 35.0);
  expect_recovered(s, o);
}

TEST(Refine, RecoversAHeadOnlyScanFromAStart24mmOff) {
  Scenario s{"head only, start off by (10, 10, -20) mm", Eigen::Matrix3d::Identity(), Eigen::Vector3d(1.0, 1.0, 1.0),
             430, 615};
  s.searched = false;
  s.start_offset_mm = Eigen::Vector3d(10, 10, -20);
  const Outcome o = run(s);
  EXPECT_GT(o.init_error_mm, 20.0);
  expect_recovered(s, o);
}

// Prints the time of a realistic fit (a benchmark number, not a gate: CI machines differ and share their cores).
TEST(Refine, RecoversA100x100x150Scan) {
  // 100 x 100 x 150 voxels at 3 mm (300 x 300 x 450 mm), against the 72 x 48 x 216 atlas at 3 mm.
  maybe_verbose();
  const Eigen::Affine3d truth =
      make_affine(Eigen::Matrix3d(Eigen::Vector3d(1.0, 1.0, 1.05).asDiagonal()), kTranslation);
  Grid<Scanner> grid;
  grid.size = Index3{{100, 100, 150}};
  grid.spacing = Eigen::Vector3d::Constant(3.0);
  grid.origin = truth.inverse() * Eigen::Vector3d(-148.5, -148.5, 100.0);
  const auto scan = render_body(grid, truth);
  const InitialFit init = initial_fit(extract_landmarks(scan), atlas_landmarks());
  const auto t0 = std::chrono::steady_clock::now();
  const std::clock_t c0 = std::clock();
  const RefineResult r = refine_transform(scan, atlas(), init);
  const double cpu = static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "[ refine  ] 100x100x150 scan at 3 mm: " << seconds << " s (cpu " << cpu << " s), " << r.iterations
            << " iterations, Dice " << r.initial_dice << " -> " << r.dice << "\n";
  EXPECT_LT((r.transform()(grid.centre()).mm - truth * grid.centre().mm).norm(), 3.0);
}

// 30 draws (about 5 s with the fused Dice pass; it was disabled at 10+ s with LibTorch autograd): random orientation,
// per-axis scale in [0.9, 1.1], field of view 180-480 mm long anywhere along the body, and every other case a start
// perturbed by up to 15 mm per axis and 5 % in scale. Cases the landmark fit cannot solve by design (fewer than 4
// classes seen and a rotated scan) are skipped. Prints the error distribution and holds it to bounds about 2-3x the
// measured one (seed 12345: median 0.30 mm / 0.46 %, 90th percentile 0.93 mm / 2.2 %, 3 of 30 outside 3 mm / 2 %);
// SEED=n picks another draw.
TEST(Refine, StressRandomTransformsAndFieldsOfView) {
  std::mt19937 rng(std::getenv("SEED") ? static_cast<unsigned>(std::atoi(std::getenv("SEED"))) : 12345u);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  const auto candidates = orientation_candidates(false);
  std::vector<double> errors_mm, scale_errors;
  int bad = 0;
  for (int n = 0; n < 30; ++n) {
    Scenario s{"", candidates[rng() % candidates.size()].rotation,
               Eigen::Vector3d(0.9 + 0.2 * uniform(rng), 0.9 + 0.2 * uniform(rng), 0.9 + 0.2 * uniform(rng)), 0, 0};
    const double length = 180 + 300 * uniform(rng);
    s.z_lower = -30 + (645 - length) * uniform(rng);
    s.z_upper = s.z_lower + length;
    if (n % 2) {
      s.start_offset_mm = Eigen::Vector3d(30 * uniform(rng) - 15, 30 * uniform(rng) - 15, 30 * uniform(rng) - 15);
      s.start_scale_factor = 0.95 + 0.1 * uniform(rng);
    }
    s.name = "random " + std::to_string(n) + ", z " + std::to_string(static_cast<int>(s.z_lower)) + ".." +
             std::to_string(static_cast<int>(s.z_upper)) + (n % 2 ? ", perturbed start" : "");
    const Outcome o = run(s);
    if (!o.init.searched && !s.rotation.isIdentity()) continue;
    double scale_error = 0.0;
    for (int a = 0; a < 3; ++a) scale_error = std::max(scale_error, std::abs(o.result.scale[a] / s.scale[a] - 1.0));
    errors_mm.push_back(o.centre_error_mm);
    scale_errors.push_back(scale_error);
    if (o.centre_error_mm > 3.0 || scale_error > 0.02) {
      ++bad;
      std::cout << "    outside 3 mm / 2 %: true scale (" << s.scale.transpose() << ")\n";
    }
  }
  std::sort(errors_mm.begin(), errors_mm.end());
  std::sort(scale_errors.begin(), scale_errors.end());
  const std::size_t m = errors_mm.size();
  std::cout << "[ stress  ] " << m << " cases, " << bad << " outside 3 mm / 2 %; centre error median "
            << errors_mm[m / 2] << " mm, 90th " << errors_mm[m * 9 / 10] << " mm, max " << errors_mm[m - 1]
            << " mm; worst per-axis scale error median " << 100 * scale_errors[m / 2] << " %, 90th "
            << 100 * scale_errors[m * 9 / 10] << " %, max " << 100 * scale_errors[m - 1] << " %\n";
  EXPECT_GE(m, 20u) << "too few cases were solvable by design";
  EXPECT_LT(errors_mm[m / 2], 1.0);
  EXPECT_LT(scale_errors[m / 2], 0.01);
  EXPECT_LT(errors_mm[m * 9 / 10], 3.0);
  EXPECT_LT(scale_errors[m * 9 / 10], 0.05);
  EXPECT_LE(bad, 6) << "of " << m;
}

// ---- errors --------------------------------------------------------------------------------------------------

TEST(Refine, NoClassSeenThrowsFitFailed) {
  Grid<Scanner> g;
  g.size = Index3{{8, 8, 8}};
  const MultiChannelImage<Scanner> empty(g, kNumClasses, 0.0f);
  try {
    refine_transform(empty, atlas(), InitialFit{});
    FAIL() << "expected FitFailed";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::FitFailed);
  }
}

TEST(Refine, UnknownDeviceIsAUsageError) {
  Grid<Scanner> g;
  g.size = Index3{{8, 8, 8}};
  const MultiChannelImage<Scanner> scan(g, kNumClasses, 0.0f);
  InitialFit init;
  init.classes_seen = {0};
  init.weights[0] = 1.0;
  RefineOptions opt;
  opt.device = "gpu-please";
  try {
    refine_transform(scan, atlas(), init, opt);
    FAIL() << "expected Usage";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Usage);
  }
}

TEST(Refine, RejectsMasksWithTheWrongChannelCount) {
  Grid<Scanner> g;
  g.size = Index3{{8, 8, 8}};
  const MultiChannelImage<Scanner> scan(g, 3, 0.0f);
  InitialFit init;
  init.classes_seen = {0};
  init.weights[0] = 1.0;
  expect_error([&] { refine_transform(scan, atlas(), init); }, ErrorCode::Internal, {"have 3 channels"});
}

}  // namespace
}  // namespace ctarr::test
