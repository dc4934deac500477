#include "ctarr/record.hpp"

#include "support/support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace ctarr::test {
namespace {

CropRecord sample_record() {
  CropRecord r;
  r.input = "/data/scan.nii.gz";
  r.scan_info.format = "nifti";
  r.input_grid = index_ramp({10, 9, 8}, oblique_direction(17.0)).grid;
  r.region = "liver";
  r.options.margin_mm = 10.0;
  r.options.pad = true;
  r.options.pad_value = -1024.0f;
  CropRecordBox b;
  b.box.requested = IndexBox{Index3{{-2, 1, 0}}, Index3{{6, 9, 4}}};
  b.box.clipped = IndexBox{Index3{{0, 1, 0}}, Index3{{6, 9, 4}}};
  b.box.was_clipped = true;
  b.file = "scan_liver.nii.gz";
  r.boxes.push_back(b);
  r.initial.orientation = "rot90";
  r.initial.classes_seen = {14, 15};
  r.refined.rotation = Eigen::AngleAxisd(3.14159265358979323846 / 2, Eigen::Vector3d::UnitZ()).toRotationMatrix();
  r.refined.scale = Eigen::Vector3d(1.1, 0.9, 1.0);
  r.refined.translation_mm = Eigen::Vector3d(3, -4, 5);
  r.refined.dice = 0.83;
  r.warnings = {"box 1 of region liver was clipped"};
  return r;
}

TEST(CropRecord, ParsesBackToTheWrittenGeometryAndBoxes) {
  const CropRecord r = sample_record();
  const ParsedCropRecord p = parse_crop_record("rec.json", crop_record_json(r));
  EXPECT_EQ(p.input, r.input);
  EXPECT_EQ(p.input_grid.size, r.input_grid.size);
  EXPECT_LT((p.input_grid.origin - r.input_grid.origin).norm(), 1e-12);
  EXPECT_LT((p.input_grid.direction - r.input_grid.direction).norm(), 1e-12);
  ASSERT_EQ(p.boxes.size(), 1u);
  // padded crops are written over the requested range
  EXPECT_EQ(p.boxes[0].first.start, (Index3{{-2, 1, 0}}));
  EXPECT_EQ(p.boxes[0].second, "scan_liver.nii.gz");
}

TEST(CropRecord, TransformMatricesAreInversesAndMatchTheParameters) {
  const CropRecord r = sample_record();
  const nlohmann::json j = nlohmann::json::parse(crop_record_json(r));
  Eigen::Matrix4d s2a, a2s;
  for (int i = 0; i < 4; ++i)
    for (int k = 0; k < 4; ++k) {
      s2a(i, k) = j["transform"]["scanner_to_atlas_4x4"][i][k].get<double>();
      a2s(i, k) = j["transform"]["atlas_to_scanner_4x4"][i][k].get<double>();
    }
  EXPECT_LT((s2a * a2s - Eigen::Matrix4d::Identity()).norm(), 1e-9);
  EXPECT_LT((s2a.topLeftCorner<3, 3>() - r.refined.scale.asDiagonal() * r.refined.rotation).norm(), 1e-12);
  EXPECT_EQ(j["fit"]["classes_seen"][0], "liver");  // 0-based class 14
  EXPECT_EQ(j["transform"]["orientation"], "rot90");
  EXPECT_EQ(j["boxes"][0]["clipped"], true);
  EXPECT_EQ(j["warnings"].size(), 1u);
}

TEST(CropRecord, MalformedRecordNamesTheFile) {
  try {
    parse_crop_record("/x/rec.json", "{\"input\": 3}");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::UnreadableInput);
    EXPECT_NE(std::string(e.what()).find("/x/rec.json"), std::string::npos);
  }
}

}  // namespace
}  // namespace ctarr::test
