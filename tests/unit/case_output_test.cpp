// A crop case's files (case_output.hpp): the transaction that leaves nothing of a failed case, the layout of the
// output names, and resume from the records an earlier run wrote.
#include "ctarr/case_output.hpp"

#include "support/support.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <stdexcept>

namespace ctarr::test {
namespace {

namespace fs = std::filesystem;

bool exists(const std::string& path) { return fs::exists(path); }

Image<float> small_image() { return index_ramp({3, 3, 3}, Eigen::Matrix3d::Identity()); }

DatasetCase single_case(const std::string& input) {
  DatasetCase c;
  c.id = image_stem(input);
  c.images = {input};
  c.channel_suffixes = {""};
  return c;
}

Region region(const std::string& name, std::size_t boxes, double margin_mm = 10.0) {
  Region r;
  r.name = name;
  r.boxes.assign(boxes, Box<Atlas>{{Eigen::Vector3d::Zero()}, {Eigen::Vector3d::Ones()}});
  r.margin_mm = margin_mm;
  return r;
}

}  // namespace

TEST(CaseTransaction, LeavingTheScopeWithoutCommitRemovesEveryFileTheCaseWrote) {
  TempDir dir;
  const std::string crop = dir.file("sub/a_liver.nii.gz"), record = dir.file("a_liver.json");
  const std::string preview = dir.file("a_preview.png");
  try {
    CaseTransaction files(false);
    files.write_image(small_image(), crop, PixelType::Int16);
    files.write_text(record, "{}");
    files.write_preview(RgbImage(4, 3), preview);
    EXPECT_TRUE(exists(crop) && exists(record) && exists(preview));
    EXPECT_EQ(files.written(), (std::vector<std::string>{crop, record, preview}));
    throw std::runtime_error("the case fails on the way");
  } catch (const std::runtime_error&) {
  }
  EXPECT_FALSE(exists(crop));
  EXPECT_FALSE(exists(record));
  EXPECT_FALSE(exists(preview));
}

TEST(CaseTransaction, CommittedFilesStay) {
  TempDir dir;
  {
    CaseTransaction files(false);
    files.write_text(dir.file("r.json"), "{}");
    files.commit();
    files.roll_back();  // nothing since the commit
  }
  EXPECT_TRUE(exists(dir.file("r.json")));
}

TEST(CaseTransaction, AFileFromElsewhereIsRefusedAndKeptUnlessOverwriting) {
  TempDir dir;
  const std::string path = dir.file("a_liver.json");
  write_text_file(path, "earlier");
  {
    CaseTransaction files(false);
    expect_error([&] { files.write_text(path, "now"); }, ErrorCode::OutputNotWritable, {path, "--overwrite"});
  }
  EXPECT_EQ(read_text_file(path), "earlier");  // neither replaced nor removed by the rollback
  {
    CaseTransaction files(true);
    files.write_text(path, "now");
    files.write_text(path, "again");  // the case's own file may be written twice
    files.commit();
  }
  EXPECT_EQ(read_text_file(path), "again");
  // The preview is the case's whatever an earlier run left: rewritten, and removed when the case fails.
  const std::string preview = dir.file("a_preview.png");
  write_text_file(preview, "old picture");
  {
    CaseTransaction files(false);
    files.write_preview(RgbImage(2, 2), preview);
  }
  EXPECT_FALSE(exists(preview));
}

TEST(CaseTransaction, ThePictureOfARefusedFitStaysWhenTheCaseFails) {
  TempDir dir;
  const std::string picture = dir.file("out/a_preview.png");
  {
    CaseTransaction files(false);
    files.write_text(dir.file("a.json"), "{}");
    files.write_failure_picture(RgbImage(2, 2), picture);
    EXPECT_EQ(files.failure_picture(), picture);
  }
  EXPECT_TRUE(exists(picture));
  EXPECT_FALSE(exists(dir.file("a.json")));
}

TEST(CaseLayout, SingleInputsBesideTheirRecordsDatasetsInSubsetsAndRegionFolders) {
  const CaseLayout single{"/out", ".nii.gz", false, false};
  const DatasetCase a = single_case("/data/scan_7.nii.gz");
  EXPECT_EQ(single.record_path(a, region("liver", 1)), "/out/scan_7_liver.json");
  EXPECT_EQ(single.image_path(a, region("liver", 1), 0, 0), "/out/scan_7_liver.nii.gz");
  EXPECT_EQ(single.image_path(a, region("ribs", 2), 1, 0), "/out/scan_7_ribs_2.nii.gz");

  const CaseLayout dataset{"/out", ".nii.gz", true, true};
  DatasetCase c;
  c.id = "case_001";
  c.subset = "imagesTr";
  c.images = {"/d/imagesTr/case_001_0000.nii.gz", "/d/imagesTr/case_001_0001.nii.gz"};
  c.channel_suffixes = {"_0000", "_0001"};
  EXPECT_EQ(dataset.record_path(c, region("liver", 1)), "/out/records/case_001_liver.json");
  EXPECT_EQ(dataset.root(region("liver", 1)), "/out/liver");
  EXPECT_EQ(dataset.image_path(c, region("liver", 1), 0, 1), "/out/liver/imagesTr/case_001_0001.nii.gz");
  EXPECT_EQ(dataset.image_path(c, region("ribs", 2), 1, 0), "/out/ribs/imagesTr/case_001_2_0000.nii.gz");
  EXPECT_EQ(dataset.label_path(c, region("liver", 1), 0), "/out/liver/labelsTr/case_001.nii.gz");
}

TEST(ResumeCase, ARegionIsDoneOnlyWithItsRecordItsFilesAndTheSameInputAndOptions) {
  TempDir dir;
  const CaseLayout layout{dir.path(), ".nii.gz", false, false};
  const DatasetCase c = single_case("/data/scan.nii.gz");
  const Region liver = region("liver", 1, 10.0);
  // What an earlier run wrote: the record (with the region's 10 mm margin in effect) and its crop.
  CropRecord rec;
  rec.input = "/data/scan.nii.gz";
  rec.input_grid = small_image().grid;
  rec.region = "liver";
  rec.options = effective_crop_options(CropOptions{}, liver);
  CropRecordBox box;
  box.box.requested = box.box.clipped = IndexBox{Index3{{0, 0, 0}}, Index3{{2, 2, 2}}};
  box.file = "scan_liver.nii.gz";
  box.output_grid = small_image().grid;
  rec.boxes.push_back(box);
  const std::string record_path = layout.record_path(c, liver);
  write_text_file(record_path, crop_record_json(rec));
  write_image(small_image(), dir.file("scan_liver.nii.gz"));

  const CaseResume done = resume_case(c, {liver}, layout, CropOptions{}, false);
  EXPECT_TRUE(done.pending.empty());
  ASSERT_EQ(done.done_rows.size(), 1u);
  EXPECT_EQ(done.done_rows[0].status, "skipped");

  EXPECT_EQ(resume_case(c, {liver}, layout, CropOptions{}, true).pending, (std::vector<std::size_t>{0}));

  CropOptions other;
  other.margin_mm = 5.0;
  const CaseResume stale = resume_case(c, {liver}, layout, other, false);
  EXPECT_EQ(stale.pending, (std::vector<std::size_t>{0}));
  EXPECT_NE(stale.stale.find("margin 10"), std::string::npos) << stale.stale;

  fs::remove(dir.file("scan_liver.nii.gz"));  // a crop gone: redo, not stale
  const CaseResume redo = resume_case(c, {liver}, layout, CropOptions{}, false);
  EXPECT_EQ(redo.pending, (std::vector<std::size_t>{0}));
  EXPECT_TRUE(redo.stale.empty());
}

}  // namespace ctarr::test
