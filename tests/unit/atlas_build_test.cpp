#include "ctarr/atlas.hpp"

#include "ctarr/error.hpp"
#include "ctarr/io.hpp"
#include "ctarr/log.hpp"
#include "ctarr/preprocess.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <sstream>

namespace ctarr::test {
namespace {

Eigen::Affine3d scale_shift(const Eigen::Vector3d& scale, const Eigen::Vector3d& shift) {
  Eigen::Affine3d m = Eigen::Affine3d::Identity();
  m.linear() = scale.asDiagonal();
  m.translation() = shift;
  return m;
}

// The phantom's trunk (the parts between the neck and the pelvis, to keep the test fast).
std::vector<BodyPart> trunk() {
  std::vector<BodyPart> parts;
  for (const BodyPart& p : body_parts())
    if (p.centre_mm.z() > 170.0 && p.centre_mm.z() < 450.0) parts.push_back(p);
  return parts;
}

// The trunk as a hard label map in a scanner frame where x_scanner = body_to_scanner * x_body.
Image<std::uint8_t> body_labels(const Eigen::Affine3d& body_to_scanner, double spacing_mm) {
  const Eigen::Affine3d scanner_to_body = body_to_scanner.inverse();
  const Grid<Scanner> grid =
      grid_covering(scanner_to_body, Eigen::Vector3d(-100, -65, 130), Eigen::Vector3d(100, 65, 470), spacing_mm);
  const MultiChannelImage<Scanner> soft = render_parts(grid, trunk(), scanner_to_body, 1.0);
  Image<std::uint8_t> labels(grid, 0);
  const auto n = static_cast<std::size_t>(grid.voxels());
  for (std::size_t v = 0; v < n; ++v) {
    float best = 0.5f;
    for (int c = 0; c < kNumClasses; ++c)
      if (soft.data[static_cast<std::size_t>(c) * n + v] > best) {
        best = soft.data[static_cast<std::size_t>(c) * n + v];
        labels.voxels[v] = static_cast<std::uint8_t>(c + 1);
      }
  }
  return labels;
}

// CTARR_TEST_VERBOSE=1 prints the library's log with timestamps.
void maybe_verbose() {
  if (!std::getenv("CTARR_TEST_VERBOSE")) return;
  static const auto t0 = std::chrono::steady_clock::now();
  set_log_sink([](LogLevel, const std::string& m) {
    std::cout << "    " << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s  " << m
              << "\n";
  });
}

// Three copies of the body under known scales and shifts; the atlas is built at 6 mm to stay fast.
struct Built {
  std::vector<Eigen::Affine3d> truth;  // body -> scanner of each source
  std::vector<Landmarks<Scanner>> source_landmarks;
  AtlasModel atlas;
};

const Built& built() {
  static const Built b = [] {
    maybe_verbose();
    Built out;
    out.truth = {scale_shift({1, 1, 1}, {0, 0, 0}), scale_shift({1.08, 1.08, 1.08}, {20, -15, 30}),
                 scale_shift({0.94, 0.96, 0.93}, {-12, 10, -25})};
    TempDir dir;
    std::vector<AtlasSource> sources;
    for (std::size_t s = 0; s < out.truth.size(); ++s) {
      const Image<std::uint8_t> labels = body_labels(out.truth[s], 4.0);
      out.source_landmarks.push_back(extract_landmarks(label_fractions(labels, labels.grid, kNumClasses)));
      const std::string path = dir.file("source" + std::to_string(s) + ".nii.gz");
      write_image(labels, path);
      sources.push_back(AtlasSource{path, "synthetic body " + std::to_string(s)});
    }
    BuildAtlasOptions options;
    options.spacing_mm = 6.0;
    options.margin_mm = 12.0;
    options.command = "atlas_build_test";
    options.licence = "test";
    out.atlas = build_atlas(sources, options);
    return out;
  }();
  return b;
}

void GridIsIdentityDirectionWithTheRequestedSpacingAnd19Channels() {
  const AtlasModel& a = built().atlas;
  EXPECT_EQ(a.masks.channels, kNumClasses);
  EXPECT_TRUE(a.masks.grid.direction.isApprox(Eigen::Matrix3d::Identity()));
  EXPECT_TRUE(a.masks.grid.spacing.isApprox(Eigen::Vector3d::Constant(6.0)));
  EXPECT_EQ(a.id.rfind("ctarr-atlas-", 0), 0u) << a.id;
  for (float v : a.masks.data) {
    ASSERT_GE(v, 0.0f);
    ASSERT_LE(v, 1.0f + 1e-5f);
  }
}

void LandmarksSitAtTheMeanOfTheKnownTransforms() {
  const Built& b = built();
  // The mean space is the mean of the sources' body -> scanner maps; a landmark of the body is where each source
  // has it, mapped back by that source's truth (averaged over the sources to cancel rendering noise).
  Eigen::Matrix4d mean = Eigen::Matrix4d::Zero();
  for (const Eigen::Affine3d& t : b.truth) mean += t.matrix() / static_cast<double>(b.truth.size());
  const Eigen::Affine3d mean_map(mean);
  double worst = 0.0;
  int checked = 0;
  for (std::size_t c = 0; c < static_cast<std::size_t>(kNumClasses); ++c) {
    if (b.source_landmarks[0].volume_ml[c] <= 0.0) {
      EXPECT_EQ(b.atlas.landmarks.volume_ml[c], 0.0) << "channel " << c << " is in no source";
      continue;
    }
    ++checked;
    Eigen::Vector3d body = Eigen::Vector3d::Zero();
    for (std::size_t s = 0; s < b.truth.size(); ++s)
      body += b.truth[s].inverse() * b.source_landmarks[s].centre_mm[c] / static_cast<double>(b.truth.size());
    const Eigen::Vector3d expected = mean_map * body;
    const double err = (b.atlas.landmarks.centre_mm[c] - expected).norm();
    worst = std::max(worst, err);
    EXPECT_LT(err, 3.0) << "channel " << c << ": atlas " << b.atlas.landmarks.centre_mm[c].transpose() << ", expected "
                        << expected.transpose();
  }
  EXPECT_GE(checked, 8);
  std::cout << "[ atlas   ] largest landmark error " << worst << " mm over " << checked << " classes\n";
}

void MeanVolumeMatchesTheMeanSpace() {
  const Built& b = built();
  // Volumes scale with det of the map: the atlas volume of a class is its body volume times det(mean map).
  Eigen::Matrix4d mean = Eigen::Matrix4d::Zero();
  for (const Eigen::Affine3d& t : b.truth) mean += t.matrix() / static_cast<double>(b.truth.size());
  const double det_mean = mean.topLeftCorner<3, 3>().determinant();
  for (std::size_t c :
       {std::size_t{9}, std::size_t{6}, std::size_t{12}}) {  // the phantom's liver, left lung, left kidney
    double body = 0.0;
    for (std::size_t s = 0; s < b.truth.size(); ++s)
      body +=
          b.source_landmarks[s].volume_ml[c] / b.truth[s].linear().determinant() / static_cast<double>(b.truth.size());
    EXPECT_NEAR(b.atlas.landmarks.volume_ml[c], body * det_mean, 0.05 * body * det_mean) << "channel " << c;
  }
}

void ManifestRecordsFrameSourcesAndFitChecks() {
  const nlohmann::json m = nlohmann::json::parse(built().atlas.manifest_json);
  const Grid<Atlas>& g = built().atlas.masks.grid;
  EXPECT_EQ(m.at("frame"), "atlas");
  EXPECT_EQ(m.at("units"), "mm");
  EXPECT_EQ(m.at("world"), "LPS");
  EXPECT_EQ(m.at("command"), "atlas_build_test");
  EXPECT_EQ(m.at("licence"), "test");
  EXPECT_EQ(m.at("id"), built().atlas.id);
  EXPECT_EQ(m.at("channels"), kNumClasses);
  for (int a = 0; a < 3; ++a) {  // the manifest's grid is the atlas image's grid
    EXPECT_EQ(m.at("shape")[a].get<std::int64_t>(), g.size[static_cast<std::size_t>(a)]) << "axis " << a;
    EXPECT_NEAR(m.at("spacing_mm")[a].get<double>(), g.spacing[a], 1e-9) << "axis " << a;
    EXPECT_NEAR(m.at("origin_mm")[a].get<double>(), g.origin[a], 1e-6) << "axis " << a;
    for (int b = 0; b < 3; ++b) EXPECT_NEAR(m.at("direction")[a][b].get<double>(), g.direction(a, b), 1e-12);
  }
  ASSERT_EQ(m.at("classes").size(), static_cast<std::size_t>(kNumClasses));
  for (std::size_t c = 0; c < static_cast<std::size_t>(kNumClasses); ++c)
    EXPECT_EQ(m.at("classes")[c], class_names()[c]);
  ASSERT_EQ(m.at("sources").size(), 3u);
  for (const nlohmann::json& src : m.at("sources")) {
    EXPECT_EQ(src.at("sha256").get<std::string>().size(), 64u);
    EXPECT_TRUE(src.at("to_mean_space").is_array());
    EXPECT_TRUE(src.contains("fit_to_atlas"));
  }
  EXPECT_EQ(m.at("sources")[2].at("note"), "synthetic body 2");
  EXPECT_TRUE(m.at("procedure").is_string());
}

void FitsItselfWithoutMovingAndEverySourceFitsIt() {
  // The checks build_atlas records in the manifest: the atlas fitted to itself, every source fitted to the atlas.
  const nlohmann::json checks = nlohmann::json::parse(built().atlas.manifest_json).at("checks");
  EXPECT_LT(checks.at("self_fit").at("max_displacement_mm").get<double>(), 1.0);
  EXPECT_EQ(checks.at("self_fit").at("orientation"), "identity");
  const nlohmann::json& dice = checks.at("source_fit_dice");
  ASSERT_EQ(dice.size(), 3u);
  for (std::size_t i = 0; i < dice.size(); ++i) EXPECT_GT(dice[i].get<double>(), 0.8) << "source " << i;
}

// One test (one atlas build, ~1-2 s) with the checks as named steps.
TEST(BuildAtlas, ThreeScaledCopiesGiveTheirMeanShape) {
  {
    SCOPED_TRACE("GridIsIdentityDirectionWithTheRequestedSpacingAnd19Channels");
    GridIsIdentityDirectionWithTheRequestedSpacingAnd19Channels();
  }
  {
    SCOPED_TRACE("LandmarksSitAtTheMeanOfTheKnownTransforms");
    LandmarksSitAtTheMeanOfTheKnownTransforms();
  }
  {
    SCOPED_TRACE("MeanVolumeMatchesTheMeanSpace");
    MeanVolumeMatchesTheMeanSpace();
  }
  {
    SCOPED_TRACE("ManifestRecordsFrameSourcesAndFitChecks");
    ManifestRecordsFrameSourcesAndFitChecks();
  }
  {
    SCOPED_TRACE("FitsItselfWithoutMovingAndEverySourceFitsIt");
    FitsItselfWithoutMovingAndEverySourceFitsIt();
  }
}

TEST(BuildAtlas, RefusesLabelMapsWithMoreThan19Classes) {
  TempDir dir;
  Grid<Scanner> g;
  g.size = Index3{{8, 8, 8}};
  Image<std::uint8_t> labels(g, 0);
  labels.at(Index3{{3, 3, 3}}) = 42;
  write_image(labels, dir.file("bad.nii.gz"));
  try {
    build_atlas({AtlasSource{dir.file("bad.nii.gz"), ""}}, BuildAtlasOptions{});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::UnreadableInput);
    EXPECT_NE(std::string(e.what()).find("bad.nii.gz"), std::string::npos) << e.what();
  }
}

TEST(BuildAtlas, RefusesAnEmptySourceList) {
  try {
    build_atlas({}, BuildAtlasOptions{});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Usage);
  }
}

}  // namespace
}  // namespace ctarr::test
