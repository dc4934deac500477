// Real data (../shared/data): the TotalSegmentator example CT with its own segmentation through `--seg`.
#include "ctarr/io.hpp"
#include "ctarr/record.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <set>

namespace ctarr::test {
namespace {

// Fraction of the voxels with a label in `labels` that fall inside the record's written boxes.
double fraction_kept(const Image<std::uint16_t>& seg, const std::set<int>& labels, const CropRecord& rec) {
  std::int64_t total = 0, kept = 0;
  for (std::int64_t k = 0; k < seg.grid.size[2]; ++k)
    for (std::int64_t j = 0; j < seg.grid.size[1]; ++j)
      for (std::int64_t i = 0; i < seg.grid.size[0]; ++i) {
        if (!labels.count(seg.at(Index3{{i, j, k}}))) continue;
        ++total;
        for (std::size_t b = 0; b < rec.boxes.size(); ++b) {
          const IndexBox& box = rec.written_range(b);
          if (!rec.boxes[b].file.empty() && i >= box.start[0] && i < box.end[0] && j >= box.start[1] && j < box.end[1] &&
              k >= box.start[2] && k < box.end[2]) {
            ++kept;
            break;
          }
        }
      }
  return total == 0 ? 0.0 : static_cast<double>(kept) / static_cast<double>(total);
}

TEST(TotalSegExample, SegCropsKeepLiverSpleenAndKidneys) {
  const auto data = shared_data_dir();
  if (!data) GTEST_SKIP() << "skipped: ../shared/data not found";
  const std::string ct = *data + "/totalseg_example/example_ct.nii.gz";
  const std::string seg = *data + "/totalseg_example/example_seg_fast_force_split.nii.gz";
  TempDir out;
  std::string log;
  ASSERT_EQ(run_command(ctarr_binary() + " crop --device cpu --region liver --region spleen --region kidneys --seg " +
                            seg + " " + ct + " -o " + out.path(), &log), 0) << log;
  const Image<std::uint16_t> labels = read_label_map(seg);
  // TotalSegmentator v2 ids: 1 spleen, 2 kidney_right, 3 kidney_left, 5 liver.
  const std::vector<std::pair<std::string, std::set<int>>> organs{{"liver", {5}}, {"spleen", {1}}, {"kidneys", {2, 3}}};
  for (const auto& [region, ids] : organs) {
    const std::string record_path = out.file("example_ct_" + region + ".json");
    const CropRecord rec = parse_crop_record(record_path, read_text_file(record_path));
    const double kept = fraction_kept(labels, ids, rec);
    EXPECT_GE(kept, 0.97) << region;
    std::cout << region << ": " << 100.0 * kept << " % of the label kept\n";
    const Scan crop = read_scan(out.file(rec.boxes.front().file));
    EXPECT_LT((crop.image.grid.origin - labels.grid.to_world(rec.written_range(0).start).mm).norm(), 1e-3)
        << "the crop's origin must be the world position of its first voxel";
  }
}

// The main job on a lying header: the example CT with its voxel array turned 90 degrees in-plane under the same
// header, cropped through the network (no --seg). The fit must find the turn and the crops must hold the organs
// (measured on the example's own segmentation, turned the same way), by default (the step-22945 model segments the
// turned array well enough that the landmark search finds the turn from the pass over the scan as stored) and with
// every turned pass run (--turned-passes-below 1.01: the pass that shows the network the upright patient, or one
// whose fit finds the same turn, is kept).
TEST(TotalSegExample, NetworkFindsAVoxelArrayTurnedAgainstItsHeader) {
  const auto data = shared_data_dir();
  if (!data) GTEST_SKIP() << "skipped: ../shared/data not found (the example's segmentation)";
  TempDir out;
  const std::string ct = out.file("turned_ct.nii.gz");
  write_image(turned(read_scan(repo_dir() + "/examples/totalseg_example/example_ct.nii.gz").image), ct, PixelType::Int16);
  const Image<std::uint16_t> labels =
      turned(read_label_map(*data + "/totalseg_example/example_seg_fast_force_split.nii.gz"));
  std::string log;
  std::string orientation_by_default;
  for (const std::string passes_option : {"", " --turned-passes-below 1.01"}) {
    const std::string dir = out.file(passes_option.empty() ? "crops" : "crops_all_passes");
    ASSERT_EQ(run_command(ctarr_binary() + " crop --device cpu --region liver --region spleen --region kidneys" +
                              passes_option + " " + ct + " -o " + dir, &log), 0) << log;
    const std::vector<std::pair<std::string, std::set<int>>> organs{{"liver", {5}}, {"spleen", {1}}, {"kidneys", {2, 3}}};
    for (const auto& [region, ids] : organs) {
      const std::string record_path = dir + "/turned_ct_" + region + ".json";
      const std::string text = read_text_file(record_path);
      const nlohmann::json record = nlohmann::json::parse(text);
      const std::string orientation = record.at("transform").at("orientation");
      EXPECT_NE(orientation, "identity") << region << passes_option;
      if (orientation_by_default.empty()) orientation_by_default = orientation;
      EXPECT_EQ(orientation, orientation_by_default) << region << passes_option;
      const nlohmann::json& passes = record.at("fit").at("network_passes");
      if (!passes_option.empty()) {
        EXPECT_EQ(passes.size(), 8u) << "every orientation candidate: " << passes.dump();
      }
      int kept_passes = 0;
      for (const nlohmann::json& p : passes) {
        if (!p.at("kept").get<bool>()) continue;
        ++kept_passes;
        EXPECT_EQ(p.at("orientation"), orientation) << "the kept pass's fit is the record's";
      }
      EXPECT_EQ(kept_passes, 1);
      const double kept = fraction_kept(labels, ids, parse_crop_record(record_path, text));
      std::cout << region << passes_option << ": " << 100.0 * kept << " % kept, orientation " << orientation
                << ", passes " << passes.dump() << "\n";
      EXPECT_GE(kept, 0.97) << region << passes_option;
    }
  }
  // --turned-passes-below 0: one pass only (its fit may be refused: exit 6, the case the turned passes are for)
  const int rc = run_command(ctarr_binary() + " crop --device cpu --region liver --turned-passes-below 0 " + ct +
                                 " -o " + out.file("one_pass"), &log);
  ASSERT_TRUE(rc == 0 || rc == 6) << log;
  EXPECT_EQ(log.find("turned passes"), std::string::npos) << log;
  if (rc == 0) {
    const nlohmann::json one = nlohmann::json::parse(read_text_file(out.file("one_pass/turned_ct_liver.json")));
    EXPECT_EQ(one.at("fit").at("network_passes").size(), 1u);
  }
}

TEST(TotalSegExample, DicomSlabReadsToTheGeometryOfItsSegmentation) {
  const auto data = shared_data_dir();
  if (!data) GTEST_SKIP() << "skipped: ../shared/data not found";
  const Scan scan = read_scan(*data + "/totalseg_example/dicom_slab");
  const Image<std::uint16_t> seg = read_label_map(*data + "/totalseg_example/dicom_slab_seg.nii.gz");
  EXPECT_EQ(scan.image.grid.size, seg.grid.size);
  EXPECT_LT((scan.image.grid.origin - seg.grid.origin).norm(), 1e-3);
  EXPECT_LT((scan.image.grid.spacing - seg.grid.spacing).norm(), 1e-3);
  EXPECT_LT((scan.image.grid.direction - seg.grid.direction).norm(), 1e-4);
}

}  // namespace
}  // namespace ctarr::test
