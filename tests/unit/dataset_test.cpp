#include "ctarr/dataset.hpp"

#include "ctarr/error.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>

namespace ctarr::test {
namespace {

namespace fs = std::filesystem;

TEST(Dataset, FindsNnUNetCasesWithChannelsLabelsAndSubsets) {
  TempDir d;
  for (const char* f : {"imagesTr/b_002_0000.nii.gz", "imagesTr/b_002_0001.nii.gz", "imagesTr/a_001_0000.nii.gz",
                        "imagesTr/._a_001_0000.nii.gz", "imagesTr/notes.txt", "labelsTr/a_001.nii.gz",
                        "labelsTr/b_002.nii.gz", "imagesTs/c_003_0000.nii.gz", "dataset.json"})
    touch(d.file(f));
  const std::vector<DatasetCase> cases = find_dataset_cases(d.path());
  ASSERT_EQ(cases.size(), 3u);
  EXPECT_EQ(cases[0].subset, "imagesTr");
  EXPECT_EQ(cases[0].id, "a_001");
  ASSERT_EQ(cases[0].images.size(), 1u);  // the hidden "._" file is ignored
  EXPECT_EQ(cases[1].id, "b_002");
  ASSERT_EQ(cases[1].images.size(), 2u);
  EXPECT_EQ(cases[1].channel_suffixes, (std::vector<std::string>{"_0000", "_0001"}));
  EXPECT_EQ(fs::path(cases[1].images[1]).filename(), "b_002_0001.nii.gz");
  ASSERT_TRUE(cases[1].label.has_value());
  EXPECT_EQ(fs::path(*cases[1].label).filename(), "b_002.nii.gz");
  EXPECT_EQ(cases[2].subset, "imagesTs");
  EXPECT_FALSE(cases[2].label.has_value());
}

TEST(Dataset, MsdNamesWithoutChannelSuffixAreCasesToo) {
  TempDir d;
  touch(d.file("imagesTr/liver_3.nii.gz"));
  touch(d.file("labelsTr/liver_3.nii.gz"));
  const auto cases = find_dataset_cases(d.path());
  ASSERT_EQ(cases.size(), 1u);
  EXPECT_EQ(cases[0].id, "liver_3");
  EXPECT_EQ(cases[0].channel_suffixes.front(), "");
  EXPECT_TRUE(cases[0].label.has_value());
}

TEST(Dataset, FolderWithoutImagesFoldersIsUnreadable) {
  TempDir d;
  touch(d.file("scans/x.nii.gz"));
  try {
    find_dataset_cases(d.path());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::UnreadableInput);
    EXPECT_NE(std::string(e.what()).find(d.path()), std::string::npos);
  }
}

TEST(Dataset, SegmentationIsFoundByCaseIdImageNameOrMaskFolder) {
  TempDir d;
  touch(d.file("segs/a_001.nii.gz"));
  touch(d.file("segs/b_002_0000.nrrd"));
  fs::create_directories(d.file("segs/c_003"));
  DatasetCase a{"a_001", "imagesTr", {"/x/a_001_0000.nii.gz"}, {"_0000"}, std::nullopt, std::nullopt};
  DatasetCase b{"b_002", "imagesTr", {"/x/b_002_0000.nii.gz"}, {"_0000"}, std::nullopt, std::nullopt};
  DatasetCase c{"c_003", "imagesTr", {"/x/c_003_0000.nii.gz"}, {"_0000"}, std::nullopt, std::nullopt};
  DatasetCase e{"e_005", "imagesTr", {"/x/e_005_0000.nii.gz"}, {"_0000"}, std::nullopt, std::nullopt};
  EXPECT_EQ(find_segmentation(d.file("segs"), a), d.file("segs/a_001.nii.gz"));
  EXPECT_EQ(find_segmentation(d.file("segs"), b), d.file("segs/b_002_0000.nrrd"));
  EXPECT_EQ(find_segmentation(d.file("segs"), c), d.file("segs/c_003"));
  EXPECT_FALSE(find_segmentation(d.file("segs"), e).has_value());
}

TEST(LabelsKept, CountsKeptVoxelsLostFacesAndTouchingFaces) {
  Grid<Scanner> g;
  g.size = Index3{{10, 8, 6}};
  Image<float> labels(g, 0.0f);
  // label 1: a bar along i from 2 to 7 at (j, k) = (4, 3); label 2: one voxel at (1, 1, 1).
  for (std::int64_t i = 2; i < 8; ++i) labels.at(Index3{{i, 4, 3}}) = 1.0f;
  labels.at(Index3{{1, 1, 1}}) = 2.0f;
  const IndexBox box{Index3{{4, 2, 0}}, Index3{{10, 8, 6}}};  // i >= 4; touches the scan border at x+, y+, z-, z+
  const std::vector<LabelKept> kept = labels_kept(labels, {box});
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[0].value, 1);
  EXPECT_EQ(kept[0].voxels, 6);
  EXPECT_EQ(kept[0].kept, 4);  // i = 4..7
  EXPECT_EQ(kept[0].lost_beyond[0], 2);  // x-
  EXPECT_EQ(kept[0].touching[0], 1);     // (4, 4, 3) lies on the inner x- face
  EXPECT_EQ(kept[0].touching[1], 0);     // x+ face is the scan border
  EXPECT_DOUBLE_EQ(kept[0].fraction_kept(), 4.0 / 6.0);
  EXPECT_EQ(kept[1].value, 2);
  EXPECT_EQ(kept[1].kept, 0);
  EXPECT_EQ(kept[1].lost_beyond[0], 1);  // x-
  EXPECT_EQ(kept[1].lost_beyond[2], 1);  // y-
}

TEST(LabelsKept, VoxelsBetweenTwoBoxesAreLostBetween) {
  Grid<Scanner> g;
  g.size = Index3{{9, 3, 3}};
  Image<float> labels(g, 3.0f);
  const std::vector<LabelKept> kept =
      labels_kept(labels, {IndexBox{Index3{{0, 0, 0}}, Index3{{3, 3, 3}}}, IndexBox{Index3{{6, 0, 0}}, Index3{{9, 3, 3}}}});
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_EQ(kept[0].kept, 54);
  EXPECT_EQ(kept[0].lost_between, 27);
  EXPECT_EQ(kept[0].lost_beyond, (std::array<std::int64_t, 6>{}));
}

TEST(DatasetJson, ListsAndCountsFollowTheWrittenCasesOtherFieldsStay) {
  const std::string in = R"({"name": "Task03_Liver", "labels": {"0": "background", "1": "liver"}, "numTraining": 131,
                             "training": [{"image": "./imagesTr/liver_0.nii.gz", "label": "./labelsTr/liver_0.nii.gz"}],
                             "test": ["./imagesTs/liver_200.nii.gz"], "numTest": 70})";
  const std::vector<DatasetEntry> entries{{"imagesTr", "liver_0", std::string("./labelsTr/liver_0.nrrd")},
                                          {"imagesTr", "liver_1", std::string("./labelsTr/liver_1.nrrd")},
                                          {"imagesTs", "liver_200", std::nullopt}};
  const nlohmann::json j = nlohmann::json::parse(updated_dataset_json("d.json", in, entries, ".nrrd", "note"));
  EXPECT_EQ(j["name"], "Task03_Liver");
  EXPECT_EQ(j["labels"]["1"], "liver");
  EXPECT_EQ(j["numTraining"], 2);
  EXPECT_EQ(j["numTest"], 1);
  EXPECT_EQ(j["training"][1]["image"], "./imagesTr/liver_1.nrrd");
  EXPECT_EQ(j["training"][1]["label"], "./labelsTr/liver_1.nrrd");
  EXPECT_EQ(j["test"][0], "./imagesTs/liver_200.nrrd");
  // nnU-Net v2 style: no lists, file_ending kept in step.
  const nlohmann::json v2 = nlohmann::json::parse(
      updated_dataset_json("d.json", R"({"numTraining": 9, "file_ending": ".nii.gz"})", entries, ".mha", ""));
  EXPECT_FALSE(v2.contains("training"));
  EXPECT_EQ(v2["numTraining"], 2);
  EXPECT_EQ(v2["file_ending"], ".mha");
  expect_error([&] { updated_dataset_json("d.json", "{not json", entries, ".mha", ""); }, ErrorCode::UnreadableInput,
               {"d.json", "is not valid JSON"});
}

}  // namespace
}  // namespace ctarr::test
