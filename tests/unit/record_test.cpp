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
  b.output_grid = subgrid(r.input_grid, b.box.requested);
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
  const CropRecord p = parse_crop_record("rec.json", crop_record_json(r));
  EXPECT_EQ(p.input, r.input);
  EXPECT_EQ(p.input_grid.size, r.input_grid.size);
  EXPECT_LT((p.input_grid.origin - r.input_grid.origin).norm(), 1e-12);
  EXPECT_LT((p.input_grid.direction - r.input_grid.direction).norm(), 1e-12);
  ASSERT_EQ(p.boxes.size(), 1u);
  // padded crops are written over the requested range
  EXPECT_EQ(p.written_range(0).start, (Index3{{-2, 1, 0}}));
  EXPECT_EQ(p.boxes[0].file, "scan_liver.nii.gz");
}

// The one record type round-trips: every field written is read back, so writing what was read gives the same text.
// sample_record() is filled further here so that every optional part (channels, DICOM, labels, preview, network
// passes, candidates, provenance) is in the text.
TEST(CropRecord, ReadBackAndWrittenAgainItIsTheSameText) {
  CropRecord r = sample_record();
  r.case_id = "case_007";
  r.channel_inputs = {"/data/scan_0000.nii.gz", "/data/scan_0001.nii.gz"};
  r.label_input = "/data/labels/case_007.nii.gz";
  r.scan_info.stored_type = PixelType::Int16;
  r.scan_info.series_uid = "1.2.3";
  r.scan_info.series_description = "abdomen 1.5 mm";
  r.scan_info.slices_read = 212;
  r.reorientation.axis = {1, 0, 2};
  r.reorientation.flip = {true, false, true};
  r.region_provenance_json = R"({"command":"ctarr infer-region","threshold":0.5})";
  r.options.target_spacing_mm = Eigen::Vector3d(1.5, 1.5, 3.0);
  r.options.z_only = true;
  r.boxes[0].box.atlas_box = Box<Atlas>{{Eigen::Vector3d(-10.25, 3, 7)}, {Eigen::Vector3d(40, 50.5, 61)}};
  r.boxes[0].box.scanner_box = Box<Scanner>{{Eigen::Vector3d(-1, -2, -3)}, {Eigen::Vector3d(4, 5, 6)}};
  r.boxes[0].box.fraction_inside = 0.8125;
  r.boxes[0].output_grid = subgrid(r.input_grid, r.boxes[0].box.requested);
  r.boxes[0].channel_files = {"scan_liver_0000.nii.gz", "scan_liver_0001.nii.gz"};
  r.boxes[0].label_file = "labels/scan_liver.nii.gz";
  CropRecordBox missed;
  missed.box.requested = IndexBox{Index3{{20, 20, 20}}, Index3{{25, 25, 25}}};
  missed.box.clipped = IndexBox{Index3{{10, 9, 8}}, Index3{{10, 9, 8}}};
  missed.box.misses_scan = true;
  r.boxes.push_back(missed);
  r.initial.searched = true;
  r.initial.scale = 1.07;
  r.initial.classes_left_out = {3};
  r.initial.candidates = {{"identity", Eigen::Matrix3d::Identity(), 12.5}, {"rot90", Eigen::Matrix3d::Identity(), 4.25}};
  r.refined.initial_dice = 0.61;
  r.refined.iterations = 140;
  r.refined.pivot_from_mm = Eigen::Vector3d(1, 2, 3);
  r.refined.pivot_to_mm = Eigen::Vector3d(-4, 5, -6);
  r.network_passes = {{"identity", 0.21, 3, "identity", 0.36, "", false}, {"rot270", 0.6, 9, "rot90", 1.8, "", true},
                      {"zflip", 0.0, 0, "", 0.0, "too few classes", false}};
  r.segmentation_source = "network:ctarr-unet-v2";
  r.model_id = "ctarr-unet-v2";
  r.atlas_id = "ctarr-atlas-1";
  r.warning_codes = {"box_clipped"};
  LabelKept l;
  l.value = 2;
  l.voxels = 90;
  l.kept = 80;
  l.lost_beyond[1] = 10;
  l.touching[4] = 6;
  r.labels = {l};
  PreviewRecord pr;
  pr.file = "scan_preview.png";
  pr.pixel_mm = 1.75;
  pr.views_top = 40;
  pr.coronal_left = 2;
  pr.sagittal_left = 300;
  pr.axial = {{"liver", 2, 500, 37}};
  r.preview = pr;

  const std::string text = crop_record_json(r);
  const CropRecord back = parse_crop_record("rec.json", text);
  EXPECT_EQ(crop_record_json(back), text);
  EXPECT_EQ(nlohmann::json::parse(text).at("record_version"), kCropRecordVersion);
  EXPECT_EQ(back.scan_info.stored_type, PixelType::Int16);
  EXPECT_EQ(back.initial.classes_seen, r.initial.classes_seen);
  EXPECT_TRUE(back.boxes[1].box.misses_scan);
  EXPECT_EQ(back.boxes[1].box.clipped.end, missed.box.clipped.end);
  EXPECT_EQ(back.written_range(1).start, missed.box.requested.start);  // padded: the whole box
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

TEST(CropRecord, ANewerVersionIsRefusedAndARecordWithoutVersionIsReadAsVersionOne) {
  nlohmann::json j = nlohmann::json::parse(crop_record_json(sample_record()));
  j["record_version"] = kCropRecordVersion + 1;
  expect_error([&] { (void)parse_crop_record("/x/rec.json", j.dump()); }, ErrorCode::UnreadableInput,
               {"/x/rec.json", "record_version " + std::to_string(kCropRecordVersion + 1), "newer"});
  j.erase("record_version");
  EXPECT_EQ(parse_crop_record("/x/rec.json", j.dump()).region, "liver");
}

TEST(CropRecord, SummaryStoredInTheRecordReadsBackForResumedRuns) {
  CropRecord r = sample_record();
  r.case_id = "case_007";
  r.label_input = "/data/labelsTr/case_007.nii.gz";
  LabelKept l;
  l.value = 3;
  l.voxels = 10;
  l.kept = 7;
  l.lost_beyond[5] = 3;
  r.labels = {l};
  r.warning_codes = {"box_clipped"};
  r.boxes[0].output_grid.size = Index3{{8, 8, 4}};
  r.boxes[0].label_file = "../labelsTr/case_007.nii.gz";
  const std::string text = crop_record_json(r);
  const CropSummary s = parse_crop_summary("rec.json", text);
  EXPECT_EQ(s.case_id, "case_007");
  EXPECT_EQ(s.region, "liver");
  EXPECT_DOUBLE_EQ(s.fit_dice, 0.83);
  EXPECT_EQ(s.orientation, "rot90");
  ASSERT_EQ(s.boxes.size(), 1u);
  EXPECT_EQ(s.boxes[0].written.start, (Index3{{-2, 1, 0}}));  // padded: the requested range
  EXPECT_EQ(s.crop_voxels, 256);
  EXPECT_EQ(s.input_voxels, 10 * 9 * 8);
  EXPECT_DOUBLE_EQ(s.voxel_reduction(), 256.0 / 720.0);
  ASSERT_EQ(s.labels.size(), 1u);
  EXPECT_EQ(s.labels[0].kept, 7);
  EXPECT_EQ(s.labels[0].lost_beyond[5], 3);
  EXPECT_EQ(s.warning_codes, std::vector<std::string>{"box_clipped"});
  const CropRecord p = parse_crop_record("rec.json", text);
  EXPECT_EQ(p.boxes[0].label_file, "../labelsTr/case_007.nii.gz");
  ASSERT_TRUE(p.options.pad_value.has_value());
  EXPECT_EQ(*p.options.pad_value, -1024.0f);
}

TEST(CropRecord, SummaryCsvHasOneLinePerRowAndAColumnPairPerLabel) {
  CropSummary ok;
  ok.case_id = "a";
  ok.region = "liver";
  LabelKept l;
  l.value = 2;
  l.voxels = 4;
  l.kept = 1;
  l.lost_beyond[1] = 3;
  ok.labels = {l};
  ok.warnings = {"x, with a comma"};
  CropSummary bad;
  bad.case_id = "b";
  bad.region = "liver";
  bad.status = "failed";
  bad.error = "b.nii.gz: unreadable";
  const std::string csv = summary_csv({ok, bad});
  EXPECT_NE(csv.find(",kept_2,lost_faces_2,"), std::string::npos) << csv;
  EXPECT_NE(csv.find(",0.25,x+:3,"), std::string::npos) << csv;
  EXPECT_NE(csv.find("\"x, with a comma\""), std::string::npos) << csv;
  EXPECT_NE(csv.find("b,liver,failed"), std::string::npos) << csv;
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 3);
  const nlohmann::json j = nlohmann::json::parse(summary_json({ok, bad}));
  EXPECT_EQ(j["counts"]["ok"], 1);
  EXPECT_EQ(j["counts"]["failed"], 1);
  EXPECT_EQ(j["cases"][1]["error"], "b.nii.gz: unreadable");
}

}  // namespace
}  // namespace ctarr::test
