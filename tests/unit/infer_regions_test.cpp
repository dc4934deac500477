#include "ctarr/infer_regions.hpp"

#include "ctarr/error.hpp"
#include "support/png.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>

namespace ctarr::test {
namespace {


// A 3 mm atlas grid, 40 x 40 x 40 voxels, voxel (0,0,0) at (-60, -60, -60) mm.
Grid<Atlas> atlas_grid() {
  Grid<Atlas> g;
  g.size = Index3{{40, 40, 40}};
  g.spacing = Eigen::Vector3d::Constant(3.0);
  g.origin = Eigen::Vector3d::Constant(-60.0);
  return g;
}

struct Blob {
  Eigen::Vector3d centre_mm;  // atlas mm
  Eigen::Vector3d radii_mm;
};

// One case: a 2 mm scanner grid with an oblique direction covering the atlas box [lower, upper] (atlas mm) under
// x_atlas = scanner_to_atlas * x_scanner; mask = the blobs (given in atlas mm) drawn through the map.
RegionCase make_case(const std::string& name, const Eigen::Affine3d& scanner_to_atlas, const std::vector<Blob>& blobs,
                     const Eigen::Vector3d& lower = Eigen::Vector3d::Constant(-55.0),
                     const Eigen::Vector3d& upper = Eigen::Vector3d::Constant(55.0)) {
  RegionCase c;
  c.name = name;
  c.scanner_to_atlas = Affine<Scanner, Atlas>(scanner_to_atlas);
  c.mask = Image<std::uint8_t>(grid_covering(scanner_to_atlas, lower, upper, 2.0, oblique_direction(15.0)), 0);
  const Index3& n = c.mask.grid.size;
  for (std::int64_t k = 0; k < n[2]; ++k)
    for (std::int64_t j = 0; j < n[1]; ++j)
      for (std::int64_t i = 0; i < n[0]; ++i) {
        const Index3 idx{{i, j, k}};
        const Eigen::Vector3d a = scanner_to_atlas * c.mask.grid.to_world(idx).mm;
        for (const Blob& b : blobs)
          if ((a - b.centre_mm).cwiseQuotient(b.radii_mm).norm() <= 1.0) c.mask.at(idx) = 1;
      }
  return c;
}

Eigen::Affine3d scale_shift(double scale, const Eigen::Vector3d& shift) {
  Eigen::Affine3d m = Eigen::Affine3d::Identity();
  m.linear() *= scale;
  m.translation() = shift;
  return m;
}

bool holds(const Box<Atlas>& box, const Eigen::Vector3d& p) {
  return (p.array() >= box.lower.mm.array()).all() && (p.array() <= box.upper.mm.array()).all();
}

// ---- invariants first ----------------------------------------------------------------------------------------

TEST(RegionMask, IsOneExactlyWhereTheLabelIsOneOfTheValues) {
  Grid<Scanner> g;
  g.size = Index3{{5, 1, 1}};
  Image<std::uint16_t> labels(g, 0);
  labels.voxels = {0, 3, 7, 300, 3};
  const Image<std::uint8_t> m = region_mask(labels, {3, 300});
  EXPECT_EQ(m.voxels, (std::vector<std::uint8_t>{0, 1, 0, 1, 1}));
}

TEST(InferRegions, BoxIsMadeOfWholeAtlasVoxels) {
  const auto c = make_case("a", Eigen::Affine3d::Identity(), {Blob{{0.5, -10, 20}, {9, 6, 12}}});
  const InferRegionsResult r = infer_regions("blob", {c}, atlas_grid());
  ASSERT_EQ(r.region.boxes.size(), 1u);
  for (int a = 0; a < 3; ++a) {
    // voxel faces sit at -60 - 1.5 + 3 n
    const double lo = (r.region.boxes[0].lower.mm[a] + 61.5) / 3.0, hi = (r.region.boxes[0].upper.mm[a] + 61.5) / 3.0;
    EXPECT_NEAR(lo, std::round(lo), 1e-9) << "axis " << a;
    EXPECT_NEAR(hi, std::round(hi), 1e-9) << "axis " << a;
  }
  EXPECT_EQ(r.region.name, "blob");
  EXPECT_DOUBLE_EQ(r.region.margin_mm, 10.0);
}

// ---- behaviour ----------------------------------------------------------------------------------------------

TEST(InferRegions, BoxHoldsAtLeast99PercentOfEveryCasesLabel) {
  // Five cases under different fits, the organ moving a few mm from case to case.
  std::vector<RegionCase> cases;
  const std::vector<Eigen::Affine3d> fits{scale_shift(1.0, {0, 0, 0}), scale_shift(1.1, {5, -3, 8}),
                                          scale_shift(0.9, {-6, 4, -2}), scale_shift(1.05, {2, 7, -9}),
                                          scale_shift(0.95, {-4, -6, 5})};
  const std::vector<Eigen::Vector3d> moves{{0, 0, 0}, {4, -2, 3}, {-3, 3, -4}, {2, 4, -2}, {-2, -3, 5}};
  for (std::size_t n = 0; n < fits.size(); ++n)
    cases.push_back(
        make_case("case" + std::to_string(n), fits[n], {Blob{Eigen::Vector3d(5, -8, 10) + moves[n], {14, 10, 18}}}));
  const InferRegionsResult r = infer_regions("organ", cases, atlas_grid());
  ASSERT_EQ(r.region.boxes.size(), 1u);
  ASSERT_EQ(r.cases.size(), cases.size());
  for (const RegionCaseOutcome& o : r.cases) {
    EXPECT_GT(o.label_voxels, 500) << o.name;
    EXPECT_GE(o.fraction_kept, 0.99) << o.name;
    EXPECT_DOUBLE_EQ(o.fraction_kept_with_margin, 1.0) << o.name;
  }
  // and the box is tight: no wider than the union of the moved blobs plus one voxel on each side
  const Box<Atlas>& b = r.region.boxes[0];
  EXPECT_LT(b.upper.mm.x() - b.lower.mm.x(), 2 * 14 + 7 + 6 + 0.1);
  EXPECT_EQ(r.components, 1);
}

TEST(InferRegions, TwoSeparateBlobsGiveTwoBoxes) {
  const std::vector<Blob> blobs{Blob{{-30, 0, 0}, {8, 8, 10}}, Blob{{30, 0, 0}, {8, 8, 10}}};
  const std::vector<RegionCase> cases{make_case("a", Eigen::Affine3d::Identity(), blobs),
                                      make_case("b", scale_shift(1.05, {3, -2, 1}), blobs)};
  const InferRegionsResult r = infer_regions("kidneys", cases, atlas_grid());
  ASSERT_EQ(r.region.boxes.size(), 2u);
  EXPECT_EQ(r.components, 2);
  int left = 0, right = 0;
  for (const Box<Atlas>& b : r.region.boxes) {
    left += holds(b, Eigen::Vector3d(-30, 0, 0)) ? 1 : 0;
    right += holds(b, Eigen::Vector3d(30, 0, 0)) ? 1 : 0;
    EXPECT_FALSE(holds(b, Eigen::Vector3d(0, 0, 0)));
  }
  EXPECT_EQ(left, 1);
  EXPECT_EQ(right, 1);
  for (const RegionCaseOutcome& o : r.cases) EXPECT_GE(o.fraction_kept, 0.99) << o.name;
}

TEST(InferRegions, ThresholdRemovesAnOutliersStrayBlob) {
  std::vector<RegionCase> cases;
  for (int n = 0; n < 9; ++n)
    cases.push_back(
        make_case("case" + std::to_string(n), Eigen::Affine3d::Identity(), {Blob{{0, 0, 0}, {12, 12, 12}}}));
  // The outlier also has a stray blob far away: 1 case in 10 is below a threshold of 0.15.
  cases.push_back(make_case("outlier", Eigen::Affine3d::Identity(),
                            {Blob{{0, 0, 0}, {12, 12, 12}}, Blob{{35, 35, 35}, {6, 6, 6}}}));
  InferRegionsOptions options;
  options.threshold = 0.15;
  const InferRegionsResult r = infer_regions("organ", cases, atlas_grid(), options);
  ASSERT_EQ(r.region.boxes.size(), 1u);
  EXPECT_FALSE(holds(r.region.boxes[0], Eigen::Vector3d(35, 35, 35)));
  EXPECT_TRUE(holds(r.region.boxes[0], Eigen::Vector3d(0, 0, 0)));
  EXPECT_LT(r.cases.back().fraction_kept, 0.95);  // the leave-in measure shows what the outlier lost
  // A threshold below 1/10 keeps the stray blob as a second box.
  options.threshold = 0.05;
  EXPECT_EQ(infer_regions("organ", cases, atlas_grid(), options).region.boxes.size(), 2u);
}

TEST(InferRegions, LowersTheThresholdUntilEveryCaseKeepsItsLabel) {
  // Nine cases agree, one has the organ 16 mm further left: at 0.15 its far part (heat 0.1) is cut off.
  std::vector<RegionCase> cases;
  for (int n = 0; n < 9; ++n)
    cases.push_back(
        make_case("case" + std::to_string(n), Eigen::Affine3d::Identity(), {Blob{{0, 0, 0}, {10, 10, 10}}}));
  cases.push_back(make_case("shifted", Eigen::Affine3d::Identity(), {Blob{{16, 0, 0}, {10, 10, 10}}}));
  InferRegionsOptions options;
  options.threshold = 0.15;
  options.margin_mm = 2.0;
  const InferRegionsResult fixed = infer_regions("organ", cases, atlas_grid(), options);
  EXPECT_LT(fixed.cases.back().fraction_kept_with_margin, 0.9);
  EXPECT_DOUBLE_EQ(fixed.threshold, 0.15);

  options.min_fraction_kept = 0.99;
  options.min_threshold = 0.05;
  const InferRegionsResult r = infer_regions("organ", cases, atlas_grid(), options);
  EXPECT_TRUE(r.kept_target_met);
  EXPECT_LT(r.threshold, 0.1);
  EXPECT_GE(r.thresholds_tried.size(), 2u);
  EXPECT_DOUBLE_EQ(r.thresholds_tried.back(), r.threshold);
  for (const RegionCaseOutcome& o : r.cases) EXPECT_GE(o.fraction_kept_with_margin, 0.99) << o.name;
  ASSERT_EQ(r.region.boxes.size(), 1u);
}

TEST(InferRegions, CasesOutsideTheirFieldOfViewDoNotCount) {
  // Case "full" sees the whole atlas and has the organ at z = +30; case "low" sees only z < 0 and so cannot say
  // anything about z = +30. With a threshold of 0.6 the organ is kept: 1 of the 1 covering cases has it.
  const RegionCase full = make_case("full", Eigen::Affine3d::Identity(), {Blob{{0, 0, 30}, {10, 10, 10}}});
  const RegionCase low =
      make_case("low", Eigen::Affine3d::Identity(), {}, Eigen::Vector3d(-55, -55, -55), Eigen::Vector3d(55, 55, -5));
  InferRegionsOptions options;
  options.threshold = 0.6;
  const InferRegionsResult r = infer_regions("organ", {full, low}, atlas_grid(), options);
  ASSERT_EQ(r.region.boxes.size(), 1u);
  EXPECT_TRUE(holds(r.region.boxes[0], Eigen::Vector3d(0, 0, 30)));
  EXPECT_EQ(r.coverage.at(r.coverage.grid.nearest_index(Point<Atlas>{Eigen::Vector3d(0, 0, 30)})), 1);
  EXPECT_EQ(r.coverage.at(r.coverage.grid.nearest_index(Point<Atlas>{Eigen::Vector3d(0, 0, -30)})), 2);
}

TEST(InferRegions, TinyComponentsAreDropped) {
  std::vector<RegionCase> cases{make_case("a", Eigen::Affine3d::Identity(),
                                          {Blob{{0, 0, 0}, {12, 12, 12}}, Blob{{40, -40, 40}, {2.5, 2.5, 2.5}}})};
  InferRegionsOptions options;
  options.min_component_voxels = 20;  // the small blob covers at most 3 x 3 x 3 atlas voxels, the large one ~270
  const InferRegionsResult r = infer_regions("organ", cases, atlas_grid(), options);
  EXPECT_EQ(r.components, 2);
  EXPECT_EQ(r.dropped_components, 1);
  ASSERT_EQ(r.region.boxes.size(), 1u);
  EXPECT_TRUE(holds(r.region.boxes[0], Eigen::Vector3d(0, 0, 0)));
}

TEST(InferRegions, NoVoxelAboveTheThresholdIsAnError) {
  const RegionCase empty = make_case("empty", Eigen::Affine3d::Identity(), {});
  try {
    infer_regions("organ", {empty}, atlas_grid());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::FitFailed);
    EXPECT_NE(std::string(e.what()).find("threshold"), std::string::npos) << e.what();
  }
}

TEST(InferRegions, InvalidOptionsAreUsageErrors) {
  const RegionCase c = make_case("a", Eigen::Affine3d::Identity(), {Blob{{0, 0, 0}, {10, 10, 10}}});
  InferRegionsOptions bad;
  bad.threshold = 0.0;
  expect_error([&] { infer_regions("organ", {c}, atlas_grid(), bad); }, ErrorCode::Usage, {"threshold"});
  expect_error([&] { infer_regions("organ", {}, atlas_grid()); }, ErrorCode::Usage, {"no cases to infer region organ"});
  expect_error([&] { infer_regions("", {c}, atlas_grid()); }, ErrorCode::Usage, {"the region needs a name"});
}

TEST(RunInferRegions, RequestsWithoutLabelsOrInputsAreUsageErrors) {
  InferRegionRequest req;
  req.name = "liver";
  req.output = "unused.json";
  req.seg_dir = ".";
  try {
    run_infer_regions(req);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Usage);
    EXPECT_NE(std::string(e.what()).find("--label"), std::string::npos) << e.what();
  }
  req.label_values = {6};
  req.dataset_dir = ".";  // both sources given
  try {
    run_infer_regions(req);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Usage);
  }
}

// A dataset folder is listed as `crop --dataset` lists it (find_dataset_cases): without images*/ it is unreadable
// (exit 3, as for crop; infer-region once said Usage); with images but no label map of their name, a Usage error.
TEST(RunInferRegions, DatasetFolderNeedsImagesAndLabelsSubfolders) {
  TempDir dir;
  InferRegionRequest req;
  req.name = "liver";
  req.label_values = {6};
  req.output = dir.file("liver.json");
  req.dataset_dir = dir.path();
  expect_error([&] { run_infer_regions(req); }, ErrorCode::UnreadableInput, {dir.path(), "no images*/ sub-folder"});
  touch(dir.file("imagesTr/a_0000.nii.gz"));
  expect_error([&] { run_infer_regions(req); }, ErrorCode::Usage,
               {dir.path(), "no image has a label map of its name"});
  EXPECT_FALSE(std::filesystem::exists(req.output));
}

// One lister for crop and infer-region: every images*/ folder (not only the first), hidden files skipped, any
// four-digit channel suffix stripped, the case's first channel segmented, names unique across subsets.
TEST(ListRegionCases, DatasetIsListedAsCropListsIt) {
  TempDir d;
  for (const char* f : {"imagesTr/b_002_0001.nii.gz", "imagesTr/b_002_0000.nii.gz", "imagesTr/a_001_0000.nii.gz",
                        "imagesTr/._a_001_0000.nii.gz", "labelsTr/a_001.nii.gz", "labelsTr/._b_002.nii.gz",
                        "labelsTr/b_002.nii.gz", "imagesTs/c_003_0000.nii.gz", "imagesTs/d_004_0000.nii.gz",
                        "labelsTs/c_003.nrrd"})
    touch(d.file(f));
  InferRegionRequest req;
  req.dataset_dir = d.path();
  std::vector<std::string> unpaired;
  const std::vector<RegionCaseFiles> cases = list_region_cases(req, &unpaired);
  ASSERT_EQ(cases.size(), 3u);
  EXPECT_EQ(cases[0].name, "imagesTr/a_001");
  EXPECT_EQ(cases[0].image, d.file("imagesTr/a_001_0000.nii.gz"));
  EXPECT_EQ(cases[0].labels, d.file("labelsTr/a_001.nii.gz"));
  EXPECT_EQ(cases[1].name, "imagesTr/b_002");
  EXPECT_EQ(cases[1].image, d.file("imagesTr/b_002_0000.nii.gz"));  // the first channel, not the first listed
  EXPECT_EQ(cases[1].labels, d.file("labelsTr/b_002.nii.gz"));
  EXPECT_EQ(cases[2].name, "imagesTs/c_003");
  EXPECT_EQ(cases[2].labels, d.file("labelsTs/c_003.nrrd"));
  for (const RegionCaseFiles& c : cases) EXPECT_TRUE(c.seg.empty()) << c.name;
  EXPECT_EQ(unpaired, std::vector<std::string>{"imagesTs/d_004"});
  // one images*/ folder: the names are the bare ids
  std::filesystem::remove_all(d.file("imagesTs"));
  unpaired.clear();
  const std::vector<RegionCaseFiles> train = list_region_cases(req, &unpaired);
  ASSERT_EQ(train.size(), 2u);
  EXPECT_EQ(train[0].name, "a_001");
  EXPECT_TRUE(unpaired.empty());
}

TEST(ListRegionCases, SegmentationFolderSkipsHiddenFilesAndRefusesTwoFilesOfOneCase) {
  TempDir d;
  for (const char* f : {"seg/a.nii.gz", "seg/._a.nii.gz", "seg/b/liver.nii.gz", "seg/c.nii.gz", "seg/notes.txt",
                        "labels/a.nii", "labels/b.nrrd", "labels/._c.nii.gz"})
    touch(d.file(f));
  InferRegionRequest req;
  req.seg_dir = d.file("seg");
  req.labels_dir = d.file("labels");
  std::vector<std::string> unpaired;
  const std::vector<RegionCaseFiles> cases = list_region_cases(req, &unpaired);
  ASSERT_EQ(cases.size(), 2u);
  EXPECT_EQ(cases[0].name, "a");
  EXPECT_EQ(cases[0].seg, d.file("seg/a.nii.gz"));
  EXPECT_EQ(cases[0].labels, d.file("labels/a.nii"));
  EXPECT_EQ(cases[1].name, "b");
  EXPECT_EQ(cases[1].seg, d.file("seg/b"));  // a folder of TotalSegmentator masks
  EXPECT_EQ(unpaired, std::vector<std::string>{"c"});  // its only label map is hidden
  touch(d.file("seg/a.nrrd"));
  expect_error([&] { list_region_cases(req, &unpaired); }, ErrorCode::Usage,
               {"two entries for case a", d.file("seg/a.nii.gz"), d.file("seg/a.nrrd")});
  req.seg_dir = d.file("missing");
  expect_error([&] { list_region_cases(req, &unpaired); }, ErrorCode::UnreadableInput, {d.file("missing")});
}

// ---- leave-one-out and the report ---------------------------------------------------------------------------

// Five cases under different fits, the organ moving a few mm; optionally the last one's organ 45 mm away.
std::vector<RegionCase> five_cases(bool last_is_outlier) {
  const std::vector<Eigen::Affine3d> fits{scale_shift(1.0, {0, 0, 0}), scale_shift(1.1, {5, -3, 8}),
                                          scale_shift(0.9, {-6, 4, -2}), scale_shift(1.05, {2, 7, -9}),
                                          scale_shift(0.95, {-4, -6, 5})};
  std::vector<Eigen::Vector3d> moves{{0, 0, 0}, {4, -2, 3}, {-3, 3, -4}, {2, 4, -2}, {-2, -3, 5}};
  if (last_is_outlier) moves.back() = Eigen::Vector3d(0, 0, -45);
  std::vector<RegionCase> cases;
  for (std::size_t n = 0; n < fits.size(); ++n)
    cases.push_back(
        make_case("case" + std::to_string(n), fits[n], {Blob{Eigen::Vector3d(5, -8, 10) + moves[n], {14, 10, 12}}}));
  return cases;
}

TEST(LeaveOneOut, SimilarCasesKeepTheirLabelInTheOthersBoxes) {
  const std::vector<RegionCase> cases = five_cases(false);
  const std::vector<LeaveOneOutCase> loo = leave_one_out("organ", cases, atlas_grid());
  ASSERT_EQ(loo.size(), cases.size());
  for (const LeaveOneOutCase& c : loo) {
    EXPECT_TRUE(c.inferred) << c.name;
    EXPECT_EQ(c.boxes.size(), 1u) << c.name;
    EXPECT_GT(c.label_voxels, 500) << c.name;
    EXPECT_GE(c.fraction_kept, 0.8) << c.name;  // the others' union misses a few mm of a moved organ
    EXPECT_GE(c.fraction_kept_with_margin, 0.99) << c.name;
    EXPECT_LE(c.fraction_kept, c.fraction_kept_with_margin) << c.name;
  }
}

TEST(LeaveOneOut, BoxesEqualThoseInferredFromTheOtherCasesAlone) {
  const std::vector<RegionCase> cases = five_cases(true);
  const std::vector<LeaveOneOutCase> loo = leave_one_out("organ", cases, atlas_grid());
  for (std::size_t k : {std::size_t{0}, std::size_t{4}}) {
    std::vector<RegionCase> others = cases;
    others.erase(others.begin() + static_cast<std::ptrdiff_t>(k));
    const InferRegionsResult r = infer_regions("organ", others, atlas_grid());
    ASSERT_EQ(loo[k].boxes.size(), r.region.boxes.size()) << k;
    for (std::size_t b = 0; b < r.region.boxes.size(); ++b) {
      EXPECT_LT((loo[k].boxes[b].lower.mm - r.region.boxes[b].lower.mm).norm(), 1e-9) << k;
      EXPECT_LT((loo[k].boxes[b].upper.mm - r.region.boxes[b].upper.mm).norm(), 1e-9) << k;
    }
    EXPECT_DOUBLE_EQ(loo[k].threshold, r.threshold);
  }
}

TEST(LeaveOneOut, AnOutlierKeepsLittleOfItsLabelWhenLeftOut) {
  const std::vector<RegionCase> cases = five_cases(true);
  // in-sample, the outlier's blob (1 of 5 cases = 0.2 >= 0.1) is part of the region ...
  const InferRegionsResult in = infer_regions("organ", cases, atlas_grid());
  EXPECT_GE(in.cases.back().fraction_kept_with_margin, 0.99);
  // ... left out, nothing of the others is there
  const std::vector<LeaveOneOutCase> loo = leave_one_out("organ", cases, atlas_grid());
  EXPECT_LT(loo.back().fraction_kept_with_margin, 0.3);
  for (std::size_t k = 0; k + 1 < loo.size(); ++k) EXPECT_GE(loo[k].fraction_kept_with_margin, 0.95) << loo[k].name;
}

TEST(LeaveOneOut, NeedsTwoCases) {
  const std::vector<RegionCase> one{make_case("a", Eigen::Affine3d::Identity(), {Blob{{0, 0, 0}, {9, 9, 9}}})};
  try {
    leave_one_out("organ", one, atlas_grid());
    FAIL() << "expected Usage";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Usage);
  }
}

TEST(RegionReport, WritesPictureJsonAndTableBesideTheRegion) {
  TempDir dir;
  const std::vector<RegionCase> cases = five_cases(true);
  const InferRegionsResult r = infer_regions("organ", cases, atlas_grid());
  const std::vector<LeaveOneOutCase> loo = leave_one_out("organ", cases, atlas_grid());
  const RegionReportPaths paths = region_report_paths(dir.file("organ.json"));
  EXPECT_EQ(paths.png, dir.file("organ_report.png"));
  EXPECT_EQ(paths.markdown, dir.file("organ_report.md"));
  write_region_report(r, loo, paths);

  const DecodedPng png = decode_png(read_file_bytes(paths.png));
  EXPECT_GE(png.height, 400u);  // the 120 mm atlas grid zoomed to at least 400 pixels
  const auto j = nlohmann::json::parse(read_file_bytes(paths.json));
  ASSERT_EQ(j.at("cases").size(), 5u);
  EXPECT_LT(j.at("cases")[4].at("leave_one_out").at("fraction_kept_with_margin").get<double>(), 0.3);
  EXPECT_GE(j.at("cases")[4].at("in_sample").at("fraction_kept_with_margin").get<double>(), 0.99);
  EXPECT_DOUBLE_EQ(j.at("summary").at("leave_one_out").at("fraction_kept_with_margin").at("lowest").get<double>(),
                   loo.back().fraction_kept_with_margin);
  const std::string md = read_file_bytes(paths.markdown);
  EXPECT_NE(md.find("| case4 |"), std::string::npos) << md;
  EXPECT_NE(md.find("organ_report.png"), std::string::npos) << md;
}

}  // namespace
}  // namespace ctarr::test
