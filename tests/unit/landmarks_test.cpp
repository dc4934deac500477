#include "ctarr/landmarks.hpp"

#include "support/support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <set>

namespace ctarr::test {
namespace {

constexpr double kPi = 3.14159265358979323846;

Eigen::Affine3d make_affine(const Eigen::Matrix3d& linear, const Eigen::Vector3d& translation) {
  Eigen::Affine3d m = Eigen::Affine3d::Identity();
  m.linear() = linear;
  m.translation() = translation;
  return m;
}

const OrientationCandidate& candidate_named(const std::string& name) {
  static const std::vector<OrientationCandidate> all = orientation_candidates(true);
  for (const auto& c : all)
    if (c.name == name) return c;
  throw std::runtime_error("no candidate " + name);
}

// Atlas rendered once for all tests (3 mm, 72 x 48 x 216) and its landmarks.
const Landmarks<Atlas>& atlas_landmarks() {
  static const Landmarks<Atlas> lm = extract_landmarks(render_body(body_atlas_grid(3.0)));
  return lm;
}

// A scan of the body (or of the body box [lower, upper]) seen through x_atlas = scan_to_atlas * x_scan.
MultiChannelImage<Scanner> scan_of(const Eigen::Affine3d& scan_to_atlas, const Eigen::Vector3d& lower,
                                   const Eigen::Vector3d& upper, double spacing_mm,
                                   const Eigen::Matrix3d& direction = Eigen::Matrix3d::Identity()) {
  return render_body(grid_covering(scan_to_atlas, lower, upper, spacing_mm, direction), scan_to_atlas);
}

const Eigen::Vector3d kBodyLower(-106.5, -70.5, -30.0), kBodyUpper(106.5, 70.5, 615.0);

// ---- invariants first ----------------------------------------------------------------------------------------

TEST(InitialFit, ScannerToAtlasMapsScanPivotToAtlasPivot) {
  InitialFit fit;
  fit.rotation = candidate_named("rot270+zflip").rotation;
  fit.scale = 1.2;
  fit.pivot_from_mm = Eigen::Vector3d(10, -40, 300);
  fit.pivot_to_mm = Eigen::Vector3d(-3, 7, 250);
  const auto map = fit.transform();
  EXPECT_LT((map(Point<Scanner>{fit.pivot_from_mm}).mm - fit.pivot_to_mm).norm(), 1e-9);
  // and it is the similarity scale * R about the pivots
  const Eigen::Vector3d x(5, 6, 7);
  const Eigen::Vector3d expected = fit.scale * fit.rotation * (x - fit.pivot_from_mm) + fit.pivot_to_mm;
  EXPECT_LT((map(Point<Scanner>{x}).mm - expected).norm(), 1e-9);
}

TEST(OrientationCandidates, IdentityFirstThenDistinctOrthogonalMatrices) {
  for (bool xy : {false, true}) {
    const auto cands = orientation_candidates(xy);
    ASSERT_EQ(cands.size(), xy ? 16u : 8u);
    EXPECT_EQ(cands[0].name, "identity");
    EXPECT_TRUE(cands[0].rotation.isIdentity(0.0));
    std::set<std::string> names;
    for (std::size_t a = 0; a < cands.size(); ++a) {
      names.insert(cands[a].name);
      EXPECT_TRUE((cands[a].rotation.transpose() * cands[a].rotation).isIdentity(1e-12)) << cands[a].name;
      // z stays on the z axis (in-plane rotations and z flips only)
      EXPECT_DOUBLE_EQ(std::abs(cands[a].rotation(2, 2)), 1.0) << cands[a].name;
      for (std::size_t b = 0; b < a; ++b)
        EXPECT_GT((cands[a].rotation - cands[b].rotation).norm(), 0.5) << cands[a].name << " vs " << cands[b].name;
    }
    EXPECT_EQ(names.size(), cands.size());
  }
}

TEST(OrientationCandidates, Rot90TurnsXIntoY) {
  const auto& r = candidate_named("rot90").rotation;
  EXPECT_LT((r * Eigen::Vector3d::UnitX() - Eigen::Vector3d::UnitY()).norm(), 1e-12);
  const auto& f = candidate_named("zflip").rotation;
  EXPECT_LT((f * Eigen::Vector3d::UnitZ() + Eigen::Vector3d::UnitZ()).norm(), 1e-12);
}

// ---- landmarks -----------------------------------------------------------------------------------------------

TEST(ExtractLandmarks, SingleEllipsoidGivesItsCentreAndVolume) {
  Grid<Scanner> g;
  g.size = Index3{{48, 44, 52}};
  g.spacing = Eigen::Vector3d(1.0, 1.1, 1.2);
  g.direction = oblique_direction(25.0);
  g.origin = Eigen::Vector3d(3.3, -7.1, 12.7) - g.index_to_world_linear() * Eigen::Vector3d(23.2, 21.7, 26.1);
  const BodyPart part{7, Eigen::Vector3d(3.3, -7.1, 12.7), Eigen::Vector3d(14.0, 10.0, 18.0)};
  // A sharp edge (0.3 mm): a logistic edge of width w inflates the volume by ~pi^2 w^2 / R^2.
  const auto masks = render_parts(g, {part}, Eigen::Affine3d::Identity(), 0.3);
  const auto lm = extract_landmarks(masks);
  EXPECT_LT((lm.centre_mm[7] - part.centre_mm).norm(), 0.1) << lm.centre_mm[7].transpose();
  const double expected_ml = 4.0 / 3.0 * kPi * part.radii_mm.prod() / 1000.0;
  std::cout << "[ landmark] ellipsoid centre error " << (lm.centre_mm[7] - part.centre_mm).norm() << " mm, volume "
            << lm.volume_ml[7] << " ml (analytic " << expected_ml << " ml)\n";
  EXPECT_NEAR(lm.volume_ml[7], expected_ml, 0.01 * expected_ml);
  for (int c = 0; c < kNumClasses; ++c)
    if (c != 7) {
      EXPECT_EQ(lm.volume_ml[static_cast<std::size_t>(c)], 0.0);
    }
}

TEST(ExtractLandmarks, VolumeIsProbabilityMassTimesVoxelVolume) {
  Grid<Atlas> g;
  g.size = Index3{{4, 3, 2}};
  g.spacing = Eigen::Vector3d(2.0, 2.5, 4.0);  // 20 mm^3 = 0.02 ml per voxel
  MultiChannelImage<Atlas> m(g, kNumClasses, 0.0f);
  m.channel(3)[0] = 1.0f;   // voxel (0,0,0)
  m.channel(3)[23] = 0.5f;  // voxel (3,2,1)
  const auto lm = extract_landmarks(m);
  EXPECT_NEAR(lm.volume_ml[3], 1.5 * 0.02, 1e-12);
  const Eigen::Vector3d expected =
      (1.0 * g.to_world(Index3{{0, 0, 0}}).mm + 0.5 * g.to_world(Index3{{3, 2, 1}}).mm) / 1.5;
  EXPECT_LT((lm.centre_mm[3] - expected).norm(), 1e-9);
}

TEST(ExtractLandmarks, MinProbabilityLeavesOutVoxelsBelowIt) {
  Grid<Atlas> g;
  g.size = Index3{{4, 3, 2}};
  g.spacing = Eigen::Vector3d(2.0, 2.5, 4.0);  // 0.02 ml per voxel
  MultiChannelImage<Atlas> m(g, kNumClasses, 0.0f);
  m.channel(3)[0] = 1.0f;
  m.channel(3)[23] = 0.5f;
  EXPECT_NEAR(extract_landmarks(m, 0.5f).volume_ml[3], 1.5 * 0.02, 1e-12);  // the floor itself counts
  const auto lm = extract_landmarks(m, 0.6f);
  EXPECT_NEAR(lm.volume_ml[3], 0.02, 1e-12);
  EXPECT_LT((lm.centre_mm[3] - g.to_world(Index3{{0, 0, 0}}).mm).norm(), 1e-9);
}

// A network unsure of two organs the scan does not hold spreads 4 % of each over the whole volume (measured on a
// real abdominal CT: the kidneys' diffuse mass reached 52-95 % of the atlas kidneys). Counted in full they are
// "seen", with centres at the middle of the scan; with the network floor (LandmarkOptions) they are not.
TEST(InitialFit, DiffuseProbabilityOfAbsentOrgansIsNotSeenWithTheNetworkFloor) {
  const Eigen::Affine3d truth = make_affine(candidate_named("zflip").rotation, Eigen::Vector3d(30, -20, 50));
  auto scan = scan_of(truth, Eigen::Vector3d(-106.5, -70.5, 275.0), Eigen::Vector3d(106.5, 70.5, 450.0), 6.0);
  for (int c : {14, 16}) std::fill(scan.channel(c), scan.channel(c) + scan.grid.voxels(), 0.04f);
  const InitialFit counted = initial_fit(extract_landmarks(scan), atlas_landmarks());
  ASSERT_NE(std::find(counted.classes_seen.begin(), counted.classes_seen.end(), 14), counted.classes_seen.end())
      << "the test needs the diffuse mass to be large enough to be seen without the floor";
  const InitialFit floored =
      initial_fit(extract_landmarks(scan, LandmarkOptions{}.min_network_probability), atlas_landmarks());
  EXPECT_EQ(floored.classes_seen, (std::vector<int>{3, 6, 7, 8}));  // thoracic spine, lungs, heart
  EXPECT_EQ(floored.orientation, "zflip");
}

TEST(ExtractLandmarks, DoNotDependOnTheGridDirection) {
  const Eigen::Affine3d id = Eigen::Affine3d::Identity();
  const auto straight = extract_landmarks(scan_of(id, kBodyLower, kBodyUpper, 4.0));
  const auto oblique = extract_landmarks(scan_of(id, kBodyLower, kBodyUpper, 4.0, oblique_direction(30.0)));
  for (std::size_t c = 0; c < static_cast<std::size_t>(kNumClasses); ++c) {
    EXPECT_LT((straight.centre_mm[c] - oblique.centre_mm[c]).norm(), 0.5) << "class " << c;
    EXPECT_NEAR(straight.volume_ml[c], oblique.volume_ml[c], 0.02 * straight.volume_ml[c]) << "class " << c;
    EXPECT_LT((straight.centre_mm[c] - body_parts()[c].centre_mm).norm(), 0.5) << "class " << c;
  }
}

TEST(ExtractLandmarks, RejectsWrongChannelCount) {
  Grid<Scanner> g;
  g.size = Index3{{2, 2, 2}};
  MultiChannelImage<Scanner> m(g, 3, 0.0f);
  expect_error([&] { extract_landmarks(m); }, ErrorCode::Internal, {"soft masks have 3 channels"});
}

// ---- initial fit ---------------------------------------------------------------------------------------------

class InitialFitOrientation : public ::testing::TestWithParam<std::string> {};

TEST_P(InitialFitOrientation, FindsTheRotationOfAWholeBodyScan) {
  const Eigen::Matrix3d q = candidate_named(GetParam()).rotation;
  const Eigen::Affine3d truth = make_affine(q, Eigen::Vector3d(30, -20, 50));  // x_atlas = truth * x_scan
  const auto scan = scan_of(truth, kBodyLower, kBodyUpper, 6.0);
  const InitialFit fit = initial_fit(extract_landmarks(scan), atlas_landmarks());
  EXPECT_TRUE(fit.searched);
  EXPECT_EQ(fit.classes_seen.size(), static_cast<std::size_t>(kNumClasses));
  EXPECT_EQ(fit.orientation, GetParam());
  EXPECT_LT((fit.rotation - q).norm(), 1e-12);
  EXPECT_NEAR(fit.scale, 1.0, 0.01);
  EXPECT_EQ(fit.candidates.size(), 8u);
  // the fitted map agrees with the truth across the body
  for (const auto& part : body_parts()) {
    const Eigen::Vector3d x_scan = truth.inverse() * part.centre_mm;
    EXPECT_LT((fit.transform()(Point<Scanner>{x_scan}).mm - part.centre_mm).norm(), 2.0);
  }
  double wsum = 0.0;
  for (double w : fit.weights) wsum += w;
  EXPECT_NEAR(wsum, 1.0, 1e-12);
}

INSTANTIATE_TEST_SUITE_P(AllCandidates, InitialFitOrientation,
                         ::testing::Values("identity", "rot90", "rot180", "rot270", "zflip", "rot90+zflip",
                                           "rot180+zflip", "rot270+zflip"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& ch : n)
                             if (ch == '+') ch = '_';
                           return n;
                         });

TEST(InitialFit, FindsIsotropicScale) {
  const Eigen::Affine3d truth = make_affine(1.15 * candidate_named("rot90").rotation, Eigen::Vector3d(-10, 5, 20));
  const InitialFit fit = initial_fit(extract_landmarks(scan_of(truth, kBodyLower, kBodyUpper, 6.0)), atlas_landmarks());
  EXPECT_EQ(fit.orientation, "rot90");
  EXPECT_NEAR(fit.scale, 1.15, 0.01);
}

TEST(InitialFit, ChestOnlyScanWithZFlipIsFound) {
  const Eigen::Affine3d truth = make_affine(candidate_named("zflip").rotation, Eigen::Vector3d(30, -20, 50));
  const auto scan = scan_of(truth, Eigen::Vector3d(-106.5, -70.5, 275.0), Eigen::Vector3d(106.5, 70.5, 450.0), 6.0);
  const InitialFit fit = initial_fit(extract_landmarks(scan), atlas_landmarks());
  EXPECT_TRUE(fit.searched);
  EXPECT_EQ(fit.classes_seen, (std::vector<int>{3, 6, 7, 8}));  // thoracic spine, lungs, heart
  EXPECT_EQ(fit.orientation, "zflip");
}

TEST(InitialFit, PelvisOnlyScanRotated180IsFound) {
  const Eigen::Affine3d truth = make_affine(candidate_named("rot180").rotation, Eigen::Vector3d(30, -20, 50));
  const auto scan = scan_of(truth, Eigen::Vector3d(-106.5, -70.5, -30.0), Eigen::Vector3d(106.5, 70.5, 150.0), 6.0);
  const InitialFit fit = initial_fit(extract_landmarks(scan), atlas_landmarks());
  EXPECT_TRUE(fit.searched);
  EXPECT_GE(fit.classes_seen.size(), 5u);
  EXPECT_EQ(fit.orientation, "rot180");
}

// A head-only scan (skull and face) whose segmentation also calls part of the head "femur", with the skull's whole
// mass (as the network called 680 ml of a real head CT's brain bladder): the femur's translation lies ~50 cm away
// from the two that agree and is left out, although it weighs as much as the skull.
TEST(InitialFit, TranslationOnlyLeavesOutAClassThatDisagreesWithTheOthers) {
  const Eigen::Affine3d truth = make_affine(Eigen::Matrix3d::Identity(), Eigen::Vector3d(30, -20, 50));
  auto scan = scan_of(truth, Eigen::Vector3d(-106.5, -70.5, 430.0), Eigen::Vector3d(106.5, 70.5, 615.0), 6.0);
  std::fill(scan.channel(2), scan.channel(2) + scan.grid.voxels(), 0.0f);  // no cervical spine: two head classes
  const InitialFit clean = initial_fit(extract_landmarks(scan), atlas_landmarks());
  ASSERT_EQ(clean.classes_seen, (std::vector<int>{0, 1}));
  ASSERT_TRUE(clean.classes_left_out.empty());
  const std::size_t skull = 0;
  const int far = 18;  // the phantom's pelvic class at index 18: copy the skull's mass into it
  ASSERT_EQ(std::find(clean.classes_seen.begin(), clean.classes_seen.end(), far), clean.classes_seen.end());
  std::copy(scan.channel(static_cast<int>(skull)), scan.channel(static_cast<int>(skull)) + scan.grid.voxels(), scan.channel(far));
  const InitialFit fit = initial_fit(extract_landmarks(scan), atlas_landmarks());
  EXPECT_EQ(fit.classes_left_out, std::vector<int>{far});
  EXPECT_EQ(fit.classes_seen, clean.classes_seen);
  EXPECT_EQ(fit.weights[static_cast<std::size_t>(far)], 0.0);
  const Eigen::Vector3d skull_scan = truth.inverse() * body_parts()[skull].centre_mm;
  EXPECT_LT((fit.transform()(Point<Scanner>{skull_scan}).mm - body_parts()[skull].centre_mm).norm(), 5.0);
}

// The thoracic CTA's case: a turned network pass sees only the lungs and the heart (three classes, translation only),
// the voxel array turned 180 deg in-plane against its header. Each class proposes atlas - R scan with the pass's
// rotation R; taking R as the identity reversed the 230 mm between the lungs' centres, and the correct pass lost both
// lungs ("lung_left is 99 mm away ...").
TEST(InitialFit, TranslationOnlyComparesTheClassesUnderTheTurnedPassRotation) {
  const auto index_of = [](const std::string& name) {
    const auto& names = class_names();
    return static_cast<std::size_t>(std::find(names.begin(), names.end(), name) - names.begin());
  };
  const std::size_t lung_left = index_of("lung_left"), lung_right = index_of("lung_right"), heart = index_of("heart");
  ASSERT_LT(std::max({lung_left, lung_right, heart}), static_cast<std::size_t>(kNumClasses));
  const Eigen::Matrix3d turn = candidate_named("rot180").rotation;
  const Eigen::Vector3d shift(12.0, -30.0, 40.0);  // x_atlas = turn x_scan + shift
  Landmarks<Scanner> scan;
  Landmarks<Atlas> atlas;
  atlas.centre_mm[lung_left] = Eigen::Vector3d(115.0, 0.0, 380.0);
  atlas.centre_mm[lung_right] = Eigen::Vector3d(-115.0, 0.0, 385.0);
  atlas.centre_mm[heart] = Eigen::Vector3d(20.0, -40.0, 340.0);
  for (std::size_t c : {lung_left, lung_right, heart}) {
    atlas.volume_ml[c] = scan.volume_ml[c] = 800.0;
    scan.centre_mm[c] = turn.transpose() * (atlas.centre_mm[c] - shift);
  }
  LandmarkOptions options;
  options.translation_only_orientation = candidate_named("rot180");
  const InitialFit fit = initial_fit(scan, atlas, options);
  EXPECT_FALSE(fit.searched);
  EXPECT_TRUE(fit.classes_left_out.empty());
  EXPECT_EQ(fit.classes_seen.size(), 3u);
  EXPECT_EQ(fit.orientation, "rot180");
  for (std::size_t c : {lung_left, lung_right, heart})
    EXPECT_LT((fit.transform()(Point<Scanner>{scan.centre_mm[c]}).mm - atlas.centre_mm[c]).norm(), 1e-9)
        << class_names()[c];
  // the same landmarks with the rotation assumed to be the identity (the as-stored pass) do disagree: the lungs are
  // 230 mm apart in x in the atlas and -230 mm apart in the scan
  const InitialFit unturned = initial_fit(scan, atlas);
  EXPECT_FALSE(unturned.classes_left_out.empty());
}

TEST(InitialFit, HeadOnlyScanIsTranslationOnly) {
  const Eigen::Affine3d truth = make_affine(Eigen::Matrix3d::Identity(), Eigen::Vector3d(30, -20, 50));
  const auto scan = scan_of(truth, Eigen::Vector3d(-106.5, -70.5, 430.0), Eigen::Vector3d(106.5, 70.5, 615.0), 6.0);
  const InitialFit fit = initial_fit(extract_landmarks(scan), atlas_landmarks());
  EXPECT_FALSE(fit.searched);
  EXPECT_LT(fit.classes_seen.size(), 4u);
  EXPECT_GE(fit.classes_seen.size(), 1u);
  EXPECT_TRUE(fit.rotation.isIdentity(0.0));
  EXPECT_EQ(fit.scale, 1.0);
  // translation: the skull centre lands within a few mm of the truth
  const Eigen::Vector3d skull_scan = truth.inverse() * body_parts()[0].centre_mm;
  EXPECT_LT((fit.transform()(Point<Scanner>{skull_scan}).mm - body_parts()[0].centre_mm).norm(), 5.0);
}

TEST(InitialFit, WeightsAreVolumeRatiosCappedAtOneAndNormalised) {
  Landmarks<Scanner> scan;
  Landmarks<Atlas> atlas;
  for (std::size_t c = 0; c < static_cast<std::size_t>(kNumClasses); ++c) {
    atlas.volume_ml[c] = 100.0;
    atlas.centre_mm[c] = Eigen::Vector3d(static_cast<double>(c), 0, 10.0 * static_cast<double>(c));
    scan.centre_mm[c] = atlas.centre_mm[c] + Eigen::Vector3d(1, 2, 3);
  }
  scan.volume_ml[0] = 300.0;  // capped at 1
  scan.volume_ml[1] = 50.0;   // 0.5
  scan.volume_ml[2] = 24.0;   // 0.24 < 0.25: not seen
  const InitialFit fit = initial_fit(scan, atlas);
  EXPECT_EQ(fit.classes_seen, (std::vector<int>{0, 1}));
  EXPECT_NEAR(fit.weights[0], 1.0 / 1.5, 1e-12);
  EXPECT_NEAR(fit.weights[1], 0.5 / 1.5, 1e-12);
  EXPECT_EQ(fit.weights[2], 0.0);
  EXPECT_FALSE(fit.searched);
  EXPECT_LT((fit.pivot_to_mm + Eigen::Vector3d(1, 2, 3) - fit.pivot_from_mm).norm(), 1e-12);
}

TEST(InitialFit, EmptyMasksThrowFitFailed) {
  Grid<Scanner> g;
  g.size = Index3{{10, 10, 10}};
  const MultiChannelImage<Scanner> empty(g, kNumClasses, 0.0f);
  try {
    initial_fit(extract_landmarks(empty), atlas_landmarks());
    FAIL() << "expected FitFailed";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::FitFailed);
    EXPECT_NE(std::string(e.what()).find("no anatomy recognised"), std::string::npos);
  }
}

}  // namespace
}  // namespace ctarr::test
