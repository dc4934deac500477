#include "ctarr/regions.hpp"

#include "ctarr/error.hpp"
#include "ctarr/io.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>

namespace ctarr::test {
namespace {

TEST(Regions, RoundTripThroughJson) {
  TempDir dir;
  Region r;
  r.name = "liver";
  r.margin_mm = 7.5;
  r.boxes.push_back(Box<Atlas>{{Eigen::Vector3d(-100, -50, 10)}, {Eigen::Vector3d(-20, 60, 150.5)}});
  r.provenance_json = R"({"command":"test"})";
  save_region(r, dir.file("liver.json"));
  const Region back = find_region(dir.path(), "liver");
  EXPECT_EQ(back.name, "liver");
  EXPECT_DOUBLE_EQ(back.margin_mm, 7.5);
  ASSERT_EQ(back.boxes.size(), 1u);
  EXPECT_EQ(back.boxes[0].upper.mm, Eigen::Vector3d(-20, 60, 150.5));
}

TEST(Regions, MalformedFilesNameTheFileAndTheProblem) {
  TempDir dir;
  const std::vector<std::pair<std::string, std::string>> cases{
      {"{not json", "malformed"},
      {R"({"name":"x","boxes":[{"lower":[0,0,0],"upper":[1,-1,1]}]})", "lower > upper"},
      {R"({"name":"x","boxes":[]})", "non-empty"},
      {R"({"name":"x","frame":"scanner","boxes":[{"lower":[0,0,0],"upper":[1,1,1]}]})", "frame"},
      {R"({"name":"x","boxes":[{"lower":[0,0],"upper":[1,1,1]}]})", "3 numbers"},
  };
  for (const auto& [text, expected] : cases) {
    write_text_file(dir.file("bad.json"), text);
    try {
      load_region(dir.file("bad.json"));
      ADD_FAILURE() << "accepted: " << text;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::UnreadableInput);
      EXPECT_NE(std::string(e.what()).find(dir.file("bad.json")), std::string::npos);
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
  }
}

TEST(Regions, ARegionInferredOnAnotherAtlasIsRefusedNamingTheFileAndBothAtlases) {
  TempDir dir;
  const std::string box = R"("boxes":[{"lower":[0,0,0],"upper":[1,1,1]}])";
  write_text_file(dir.file("old.json"), R"({"name":"liver",)" + box + R"(,"provenance":{"atlas_id":"ctarr-atlas-old"}})");
  write_text_file(dir.file("same.json"), R"({"name":"liver",)" + box + R"(,"provenance":{"atlas_id":"ctarr-atlas-new"}})");
  write_text_file(dir.file("unnamed.json"), R"({"name":"liver",)" + box + "}");
  const Region old = load_region(dir.file("old.json"));
  EXPECT_EQ(old.atlas_id, "ctarr-atlas-old");
  EXPECT_EQ(old.file, dir.file("old.json"));
  try {
    check_region_atlas(old, "ctarr-atlas-new", "some/atlas");
    ADD_FAILURE() << "a region of another atlas was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::ModelFailure);
    for (const std::string& s : {dir.file("old.json"), std::string("ctarr-atlas-old"), std::string("ctarr-atlas-new"),
                                 std::string("some/atlas")})
      EXPECT_NE(std::string(e.what()).find(s), std::string::npos) << e.what();
  }
  EXPECT_TRUE(check_region_atlas(load_region(dir.file("same.json")), "ctarr-atlas-new", "some/atlas"));
  EXPECT_FALSE(check_region_atlas(load_region(dir.file("unnamed.json")), "ctarr-atlas-new", "some/atlas"));
  write_text_file(dir.file("bad.json"), R"({"name":"liver",)" + box + R"(,"provenance":{"atlas_id":7}})");
  expect_error([&] { load_region(dir.file("bad.json")); }, ErrorCode::UnreadableInput,
               {dir.file("bad.json"), "malformed"});
}

TEST(Regions, UnknownNameListsTheAvailableOnes) {
  TempDir dir;
  Region r;
  r.name = "spleen";
  r.boxes.push_back(Box<Atlas>{{Eigen::Vector3d::Zero()}, {Eigen::Vector3d::Ones()}});
  save_region(r, dir.file("spleen.json"));
  try {
    find_region(dir.path(), "pancreaz");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Usage);
    EXPECT_NE(std::string(e.what()).find("spleen"), std::string::npos);
  }
}

TEST(Regions, OverlappingBoxesMergeAndSeparateOnesStay) {
  std::vector<Box<Atlas>> boxes{{{Eigen::Vector3d(0, 0, 0)}, {Eigen::Vector3d(10, 10, 10)}},
                                {{Eigen::Vector3d(5, 5, 5)}, {Eigen::Vector3d(20, 12, 11)}},
                                {{Eigen::Vector3d(50, 0, 0)}, {Eigen::Vector3d(60, 10, 10)}}};
  const auto merged = merge_overlapping(boxes);
  ASSERT_EQ(merged.size(), 2u);
  EXPECT_EQ(merged[0].upper.mm, Eigen::Vector3d(20, 12, 11));
}

}  // namespace
}  // namespace ctarr::test
