// The crop plan (crop_plan.hpp) against known transforms: which voxels each region's boxes cover, with which
// options, and what the plan warns about; no file is read or written.
#include "ctarr/crop_plan.hpp"

#include "support/support.hpp"

#include <gtest/gtest.h>

namespace ctarr::test {
namespace {

// 20 x 20 x 20 voxels of 2 mm, axes the world's, voxel (0, 0, 0) centred at (10, 20, 30) mm.
Grid<Scanner> grid_2mm() {
  Grid<Scanner> g;
  g.size = {{20, 20, 20}};
  g.origin = Eigen::Vector3d(10, 20, 30);
  g.spacing = Eigen::Vector3d::Constant(2.0);
  return g;
}

Region region(const std::string& name, std::vector<Box<Atlas>> boxes, double margin_mm = 0.0) {
  Region r;
  r.name = name;
  r.boxes = std::move(boxes);
  r.margin_mm = margin_mm;
  return r;
}

Box<Atlas> atlas_box(const Eigen::Vector3d& lo, const Eigen::Vector3d& hi) { return Box<Atlas>{{lo}, {hi}}; }

// scanner -> atlas: x_atlas = x_scanner + t.
Affine<Scanner, Atlas> shift(const Eigen::Vector3d& t) {
  return Affine<Scanner, Atlas>(Eigen::Affine3d(Eigen::Translation3d(t)));
}

std::vector<std::string> codes(const RegionPlan& p) {
  std::vector<std::string> c;
  for (const PlanWarning& w : p.warnings) c.push_back(w.code);
  return c;
}

}  // namespace

TEST(CropPlan, TheRequestsMarginWinsElseTheRegionsOwn) {
  const Region r = region("liver", {}, 12.0);
  CropOptions requested;
  EXPECT_DOUBLE_EQ(*effective_crop_options(requested, r).margin_mm, 12.0);
  requested.margin_mm = 0.0;  // an explicit 0 is a margin, not "unset"
  EXPECT_DOUBLE_EQ(*effective_crop_options(requested, r).margin_mm, 0.0);
  requested.margin_mm = 3.5;
  requested.z_only = true;
  const CropOptions o = effective_crop_options(requested, r);
  EXPECT_DOUBLE_EQ(*o.margin_mm, 3.5);
  EXPECT_TRUE(o.z_only);
}

TEST(CropPlan, BoxesAreMappedIntoTheScanThroughTheInverseOfTheFit) {
  // The fit says atlas = scanner + (5, -10, 100). An atlas box [25, 35] x [15, 25] x [145, 155] mm (plus a 2 mm
  // margin: [23, 37] x [13, 27] x [143, 157]) is scanner [18, 32] x [23, 37] x [43, 57] mm: the voxels whose
  // centres 10 + 2 i lie in [18, 32] are i = 4..11; y: 20 + 2 j in [23, 37]: j = 2..8; z: 30 + 2 k in [43, 57]:
  // k = 7..13.
  const Region r = region("liver", {atlas_box({25, 15, 145}, {35, 25, 155})}, 2.0);
  const CropPlan plan = plan_crop(grid_2mm(), shift({5, -10, 100}), {r}, CropOptions{}, -1000.0f);
  ASSERT_EQ(plan.regions.size(), 1u);
  const RegionPlan& p = plan.regions[0];
  ASSERT_EQ(p.boxes.size(), 1u);
  EXPECT_EQ(p.boxes[0].requested.start, (Index3{{4, 2, 7}}));
  EXPECT_EQ(p.boxes[0].requested.end, (Index3{{12, 9, 14}}));
  EXPECT_FALSE(p.boxes[0].was_clipped);
  EXPECT_EQ(p.boxes_written(), 1u);
  EXPECT_TRUE(p.warnings.empty());
  EXPECT_LT((plan.atlas_to_scanner(Point<Atlas>{Eigen::Vector3d(5, -10, 100)}).mm).norm(), 1e-12);
}

TEST(CropPlan, WarningsNameClippedMostlyOutsideAndMissedBoxesInOrder) {
  // Scanner = atlas (identity fit). The scan covers voxel centres 10..48 x 20..58 x 30..68 mm.
  const Region r = region("three", {atlas_box({20, 30, 40}, {30, 40, 50}),     // inside
                                    atlas_box({40, 30, 40}, {80, 40, 50}),     // x beyond 48: a quarter inside
                                    atlas_box({200, 30, 40}, {210, 40, 50})});  // far outside
  const CropPlan plan = plan_crop(grid_2mm(), Affine<Scanner, Atlas>::identity(), {r}, CropOptions{}, 0.0f);
  const RegionPlan& p = plan.regions[0];
  EXPECT_EQ(p.boxes_written(), 2u);
  EXPECT_TRUE(p.boxes[1].was_clipped);
  EXPECT_LT(p.boxes[1].fraction_inside, 0.5);
  EXPECT_TRUE(p.boxes[2].misses_scan);
  EXPECT_EQ(codes(p), (std::vector<std::string>{warning_code::kBoxClipped, warning_code::kBoxMostlyOutside,
                                                warning_code::kRegionMissed}));
  EXPECT_NE(p.warnings[0].message.find("box 2 of region three was clipped"), std::string::npos) << p.warnings[0].message;
  EXPECT_NE(p.warnings[2].message.find("box 3 of region three lies outside the scan"), std::string::npos);

  // A region whose only box misses: the box's warning, then the region's.
  const CropPlan missed = plan_crop(grid_2mm(), Affine<Scanner, Atlas>::identity(),
                                    {region("gone", {atlas_box({200, 30, 40}, {210, 40, 50})})}, CropOptions{}, 0.0f);
  EXPECT_EQ(missed.regions[0].boxes_written(), 0u);
  EXPECT_EQ(codes(missed.regions[0]), (std::vector<std::string>{warning_code::kRegionMissed, warning_code::kRegionMissed}));
  EXPECT_NE(missed.regions[0].warnings[1].message.find("region gone misses the scan"), std::string::npos);
}

TEST(CropPlan, PaddingTakesTheScanMinimumUnlessAValueIsGivenAndCoversTheWholeBox) {
  const Region r = region("edge", {atlas_box({40, 30, 40}, {80, 40, 50})});
  CropOptions requested;
  const CropPlan clipped = plan_crop(grid_2mm(), Affine<Scanner, Atlas>::identity(), {r}, requested, -1024.0f);
  EXPECT_EQ(*clipped.regions[0].options.pad_value, -1024.0f);
  EXPECT_EQ(clipped.regions[0].written_range(0).end, clipped.regions[0].boxes[0].clipped.end);

  requested.pad = true;
  requested.pad_value = 7.0f;
  const CropPlan padded = plan_crop(grid_2mm(), Affine<Scanner, Atlas>::identity(), {r}, requested, -1024.0f);
  EXPECT_EQ(*padded.regions[0].options.pad_value, 7.0f);
  EXPECT_EQ(padded.regions[0].written_range(0).end, padded.regions[0].boxes[0].requested.end);
  EXPECT_GT(padded.regions[0].written_range(0).end[0], 20);  // beyond the scan
}

TEST(CropPlan, AScanPadsWithItsLowestValueFromReadScansCheckOrFromItsVoxels) {
  const Region r = region("edge", {atlas_box({40, 30, 40}, {80, 40, 50})});
  Scan scan;
  scan.image.grid = grid_2mm();
  scan.image.voxels.assign(static_cast<std::size_t>(scan.image.grid.voxels()), 40.0f);
  scan.image.voxels[17] = -900.0f;
  // built in memory: no check kept, the voxels are walked
  EXPECT_EQ(*plan_crop(scan, Affine<Scanner, Atlas>::identity(), {r}, {}).regions[0].options.pad_value, -900.0f);
  // as read_scan leaves it: its check's minimum, without a walk (a different value here shows which was used)
  scan.info.intensities = IntensityCheck{};
  scan.info.intensities->min_value = -1000.0f;
  EXPECT_EQ(*plan_crop(scan, Affine<Scanner, Atlas>::identity(), {r}, {}).regions[0].options.pad_value, -1000.0f);
}

TEST(CropPlan, VoxelRangeExtentIsTheOuterFacesOfTheVoxelsInScannerMillimetres) {
  const Grid<Scanner> g = grid_2mm();
  const Box<Scanner> b = voxel_range_extent(g, IndexBox{Index3{{1, 2, 3}}, Index3{{4, 5, 6}}});
  // voxel i covers [10 + 2 i - 1, 10 + 2 i + 1]
  EXPECT_LT((b.lower.mm - Eigen::Vector3d(11, 23, 35)).norm(), 1e-12);
  EXPECT_LT((b.upper.mm - Eigen::Vector3d(17, 29, 41)).norm(), 1e-12);
  // A grid turned 90° about z: the extent is still the box the voxels fill, in world axes.
  Grid<Scanner> turned_grid = g;
  turned_grid.direction = Eigen::AngleAxisd(3.14159265358979323846 / 2, Eigen::Vector3d::UnitZ()).toRotationMatrix();
  const Box<Scanner> t = voxel_range_extent(turned_grid, IndexBox{Index3{{0, 0, 0}}, Index3{{2, 1, 1}}});
  // i runs along world +y (4 mm of voxels), j along world -x (2 mm)
  EXPECT_NEAR(t.upper.mm.y() - t.lower.mm.y(), 4.0, 1e-9);
  EXPECT_NEAR(t.upper.mm.x() - t.lower.mm.x(), 2.0, 1e-9);
  EXPECT_NEAR(t.lower.mm.y(), 20.0 - 1.0, 1e-9);
}

TEST(CropPlan, TheRecordStartsWithTheInputsThenTheFitsThenThePlansWarnings) {
  Scan scan;
  scan.image = Image<float>(grid_2mm(), 0.0f);
  scan.info.path = "/data/a.nii.gz";
  scan.info.warnings = {"gantry tilt resampled"};
  Segmentation seg;
  seg.source = "labels:/data/a_seg.nii.gz";
  Fit fit;
  fit.warnings = {"orientation not searched"};
  fit.warning_codes = {warning_code::kFewAnatomies};
  fit.refined.dice = 0.7;
  const Region r = region("edge", {atlas_box({40, 30, 40}, {80, 40, 50})}, 4.0);
  const CropPlan plan = plan_crop(scan.image.grid, fit.scanner_to_atlas, {r}, CropOptions{}, -5.0f);
  const CropRecord record =
      start_crop_record(RecordContext{"a", {"/data/a.nii.gz", "/data/a_0001.nii.gz"}, &scan, &seg, &fit, "m1", "atlas1"},
                        plan.regions[0]);
  EXPECT_EQ(record.input, "/data/a.nii.gz");
  EXPECT_EQ(record.channel_inputs.size(), 2u);
  EXPECT_EQ(record.region, "edge");
  EXPECT_DOUBLE_EQ(*record.options.margin_mm, 4.0);
  EXPECT_EQ(*record.options.pad_value, -5.0f);
  EXPECT_EQ(record.model_id, "m1");
  EXPECT_EQ(record.atlas_id, "atlas1");
  EXPECT_DOUBLE_EQ(record.refined.dice, 0.7);
  ASSERT_EQ(record.warnings.size(), 4u);
  EXPECT_EQ(record.warnings[0], "gantry tilt resampled");
  EXPECT_EQ(record.warnings[1], "orientation not searched");
  EXPECT_EQ(record.warning_codes, (std::vector<std::string>{warning_code::kInput, warning_code::kFewAnatomies,
                                                            warning_code::kBoxClipped, warning_code::kBoxMostlyOutside}));
  EXPECT_TRUE(record.boxes.empty());  // added as they are written
}

}  // namespace ctarr::test
