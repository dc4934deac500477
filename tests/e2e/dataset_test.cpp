// Dataset mode end to end (../shared/data): an MSD-style dataset made from the TotalSegmentator example CT, plus a
// copy whose voxel array is turned 90° in-plane under an unchanged header, cropped with --seg-dir through the CLI;
// the summary is checked against numbers computed here from the written files, the label crops are uncropped back,
// and resume / --overwrite / --shard / SIGINT behave.
#include "ctarr/io.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

namespace ctarr::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

Image<std::uint8_t> to_u8(const Image<std::uint16_t>& in) {
  Image<std::uint8_t> out(in.grid);
  for (std::size_t n = 0; n < in.voxels.size(); ++n) out.voxels[n] = static_cast<std::uint8_t>(in.voxels[n]);
  return out;
}

// The dataset: imagesTr/<id>_0000.nii.gz, labelsTr/<id>.nii.gz (1 liver, 2 spleen, 3 kidneys), dataset.json, and
// the TotalSegmentator segmentations in seg/<id>.nii.gz. Even copies keep the header's orientation, odd ones are
// turned.
struct Dataset {
  std::string dir, seg_dir;
  std::vector<std::string> ids;
};

Dataset make_dataset(const std::string& data, const std::string& root, int copies) {
  const std::string ts = data + "/totalseg_example/";
  const Scan ct = read_scan(ts + "example_ct.nii.gz");
  const Image<std::uint16_t> seg = read_label_map(ts + "example_seg_fast_force_split.nii.gz");
  // TotalSegmentator v2 ids: 1 spleen, 2 kidney_right, 3 kidney_left, 5 liver.
  Image<std::uint8_t> labels(seg.grid, 0);
  for (std::size_t n = 0; n < seg.voxels.size(); ++n) {
    const std::uint16_t v = seg.voxels[n];
    labels.voxels[n] = v == 5 ? 1 : v == 1 ? 2 : (v == 2 || v == 3) ? 3 : 0;
  }
  Dataset d{root + "/ds", root + "/seg", {}};
  for (const char* sub : {"/imagesTr", "/labelsTr"}) fs::create_directories(d.dir + sub);
  fs::create_directories(d.seg_dir);
  const Image<float> ct_turned = turned(ct.image);
  const Image<std::uint8_t> labels_turned = turned(labels), seg_turned = turned(to_u8(seg));
  const Image<std::uint8_t> seg_u8 = to_u8(seg);
  for (int n = 0; n < copies; ++n) {
    char id[16];
    std::snprintf(id, sizeof id, "case_%03d", n + 1);
    d.ids.push_back(id);
    const bool turn = n % 2 == 1;
    write_image(turn ? ct_turned : ct.image, d.dir + "/imagesTr/" + id + "_0000.nii.gz", PixelType::Int16);
    write_image(turn ? labels_turned : labels, d.dir + "/labelsTr/" + std::string(id) + ".nii.gz");
    write_image(turn ? seg_turned : seg_u8, d.seg_dir + "/" + std::string(id) + ".nii.gz");
  }
  std::ofstream(d.dir + "/dataset.json")
      << R"({"name": "ctarr-e2e", "labels": {"background": 0, "liver": 1, "spleen": 2, "kidneys": 3},
             "numTraining": )" << copies << R"(, "training": []})";
  return d;
}

std::string crop_command(const Dataset& d, const std::string& out, const std::string& extra = "") {
  return ctarr_binary() + " crop --device cpu --region liver --dataset " + d.dir + " --seg-dir " + d.seg_dir + " -o " + out +
         (extra.empty() ? "" : " " + extra);
}

json read_json(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

std::map<std::string, json> rows_by_case(const json& summary) {
  std::map<std::string, json> rows;
  for (const json& r : summary.at("cases")) rows[r.at("case").get<std::string>()] = r;
  return rows;
}

bool inside(std::int64_t i, std::int64_t j, std::int64_t k, const Index3& s, const Index3& e) {
  return i >= s[0] && i < e[0] && j >= s[1] && j < e[1] && k >= s[2] && k < e[2];
}

// Files under `dir` whose name marks an unfinished write (io.hpp writes ".<stem>.tmp<pid>_<n><ext>" and renames).
std::vector<std::string> temporary_files(const std::string& dir) {
  std::vector<std::string> found;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.find(".tmp") != std::string::npos || name[0] == '.') found.push_back(e.path().string());
  }
  return found;
}

class DatasetMode : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto data = shared_data_dir();
    if (!data) GTEST_SKIP() << "skipped: ../shared/data not found";
    data_ = *data;
  }
  std::string data_;
  TempDir tmp_;
};

TEST_F(DatasetMode, SummaryMatchesTheWrittenFilesAndLabelCropsUncropExactly) {
  const Dataset d = make_dataset(data_, tmp_.path(), 2);
  const std::string out = tmp_.file("out");
  std::string log;
  ASSERT_EQ(run_command(crop_command(d, out), &log), 0) << log;
  const json summary = read_json(out + "/summary.json");
  EXPECT_EQ(summary["counts"]["ok"], 2) << summary.dump(2);
  auto rows = rows_by_case(summary);
  std::vector<Index3> box_sizes;
  for (const std::string& id : d.ids) {
    SCOPED_TRACE(id);
    const json& row = rows.at(id);
    EXPECT_EQ(row["status"], "ok");
    ASSERT_EQ(row["boxes"].size(), 1u);
    const Scan image = read_scan(d.dir + "/imagesTr/" + id + "_0000.nii.gz");
    const Image<std::uint16_t> labels = read_label_map(d.dir + "/labelsTr/" + id + ".nii.gz");
    const Scan crop = read_scan(out + "/imagesTr/" + id + "_0000.nii.gz");
    const Image<std::uint16_t> label_crop = read_label_map(out + "/labelsTr/" + id + ".nii.gz");

    // The box: where the crop's first voxel sits in the input grid, and its size.
    const Eigen::Vector3d ci = image.image.grid.to_continuous_index(crop.image.grid.to_world(Index3{{0, 0, 0}})).v;
    Index3 start, end;
    for (int a = 0; a < 3; ++a) {
      start[a] = std::llround(ci[a]);
      EXPECT_NEAR(ci[a], static_cast<double>(start[a]), 1e-3) << "crop voxels sit on input voxels";
      end[a] = start[a] + crop.image.grid.size[a];
      EXPECT_EQ(row["boxes"][0]["index_start"][a].get<std::int64_t>(), start[a]) << a;
      EXPECT_EQ(row["boxes"][0]["index_end"][a].get<std::int64_t>(), end[a]) << a;
    }
    EXPECT_EQ(label_crop.grid.size, crop.image.grid.size);
    box_sizes.push_back(crop.image.grid.size);

    // Voxel reduction from the files.
    EXPECT_NEAR(row["voxel_reduction"].get<double>(),
                static_cast<double>(crop.image.grid.voxels()) / static_cast<double>(image.image.grid.voxels()), 1e-12);
    EXPECT_LT(row["voxel_reduction"].get<double>(), 0.6) << "a liver crop is much smaller than a torso CT";

    // Kept fractions and losses per face, counted from the label files.
    std::map<int, std::int64_t> total, kept;
    std::map<int, std::array<std::int64_t, 6>> lost;
    for (std::int64_t k = 0; k < labels.grid.size[2]; ++k)
      for (std::int64_t j = 0; j < labels.grid.size[1]; ++j)
        for (std::int64_t i = 0; i < labels.grid.size[0]; ++i) {
          const int v = labels.at(Index3{{i, j, k}});
          if (!v) continue;
          ++total[v];
          const std::int64_t p[3] = {i, j, k};
          for (int a = 0; a < 3; ++a) {
            if (p[a] < start[a]) ++lost[v][static_cast<std::size_t>(2 * a)];
            if (p[a] >= end[a]) ++lost[v][static_cast<std::size_t>(2 * a + 1)];
          }
        }
    for (std::uint16_t v : label_crop.voxels)
      if (v) ++kept[v];
    ASSERT_EQ(row["labels"].size(), total.size());
    for (const json& l : row["labels"]) {
      const int v = l["value"].get<int>();
      SCOPED_TRACE("label " + std::to_string(v));
      EXPECT_EQ(l["voxels"].get<std::int64_t>(), total[v]);
      EXPECT_EQ(l["kept"].get<std::int64_t>(), kept[v]);
      EXPECT_NEAR(l["fraction_kept"].get<double>(), static_cast<double>(kept[v]) / static_cast<double>(total[v]), 1e-12);
      const char* faces[6] = {"x-", "x+", "y-", "y+", "z-", "z+"};
      for (std::size_t f = 0; f < 6; ++f) EXPECT_EQ(l["lost_beyond_face"][faces[f]].get<std::int64_t>(), lost[v][f]) << faces[f];
    }
    EXPECT_GE(static_cast<double>(kept[1]) / static_cast<double>(total[1]), 0.97) << "the liver crop keeps the liver";
    std::cout << id << ": box " << start << "-" << end << ", voxel reduction " << row["voxel_reduction"] << ", liver kept "
              << static_cast<double>(kept[1]) / static_cast<double>(total[1]) << ", orientation " << row["orientation"] << "\n";

    // Uncrop the label crop (the record's, via --labels) and the image crop (given explicitly).
    const std::string record = out + "/records/" + id + "_liver.json";
    ASSERT_EQ(run_command(ctarr_binary() + " uncrop " + record + " --labels -o " + tmp_.file(id + "_labels.nii.gz"), &log), 0) << log;
    ASSERT_EQ(run_command(ctarr_binary() + " uncrop " + record + " " + out + "/imagesTr/" + id + "_0000.nii.gz -o " +
                              tmp_.file(id + "_image.nii.gz"), &log), 0) << log;
    const Image<std::uint16_t> back = read_label_map(tmp_.file(id + "_labels.nii.gz"));
    const Scan back_image = read_scan(tmp_.file(id + "_image.nii.gz"));
    ASSERT_EQ(back.grid.size, labels.grid.size);
    EXPECT_LT((back.grid.origin - labels.grid.origin).norm(), 1e-3);
    EXPECT_EQ(back_image.info.stored_type, PixelType::Int16);
    const float scan_min = *std::min_element(image.image.voxels.begin(), image.image.voxels.end());
    std::int64_t mismatches = 0, image_mismatches = 0;
    for (std::int64_t k = 0; k < labels.grid.size[2]; ++k)
      for (std::int64_t j = 0; j < labels.grid.size[1]; ++j)
        for (std::int64_t i = 0; i < labels.grid.size[0]; ++i) {
          const Index3 idx{{i, j, k}};
          const bool in = inside(i, j, k, start, end);
          if (back.at(idx) != (in ? labels.at(idx) : 0)) ++mismatches;
          if (back_image.image.at(idx) != (in ? image.image.at(idx) : scan_min)) ++image_mismatches;
        }
    EXPECT_EQ(mismatches, 0) << "labels: original inside the box, 0 outside";
    EXPECT_EQ(image_mismatches, 0) << "image: original inside the box, the scan minimum outside";
  }
  // The turned copy: the orientation search noticed, and the box turned with the anatomy.
  EXPECT_EQ(rows.at("case_001")["orientation"], "identity");
  EXPECT_NE(rows.at("case_002")["orientation"], "identity");
  const json codes = rows.at("case_002")["warning_codes"];
  EXPECT_NE(std::find(codes.begin(), codes.end(), "header_orientation"), codes.end()) << codes;
  EXPECT_NEAR(static_cast<double>(box_sizes[1][0]), static_cast<double>(box_sizes[0][1]), 3.0);
  EXPECT_NEAR(static_cast<double>(box_sizes[1][1]), static_cast<double>(box_sizes[0][0]), 3.0);
  // CSV: a line per case, kept fraction columns per label.
  std::ifstream csv(out + "/summary.csv");
  std::string header, line;
  std::getline(csv, header);
  EXPECT_NE(header.find("kept_1,lost_faces_1,kept_2"), std::string::npos) << header;
  int lines = 0;
  while (std::getline(csv, line)) ++lines;
  EXPECT_EQ(lines, 2);
  // dataset.json: both cases listed, the rest kept.
  const json ds = read_json(out + "/dataset.json");
  EXPECT_EQ(ds["numTraining"], 2);
  EXPECT_EQ(ds["labels"]["liver"], 1);
  EXPECT_EQ(ds["training"][1]["label"], "./labelsTr/case_002.nii.gz");
  EXPECT_TRUE(temporary_files(out).empty());
}

TEST_F(DatasetMode, RerunSkipsDoneCasesOverwriteRedoesThemExistingFilesAreKept) {
  const Dataset d = make_dataset(data_, tmp_.path(), 2);
  const std::string out = tmp_.file("out");
  std::string log;
  ASSERT_EQ(run_command(crop_command(d, out), &log), 0) << log;
  const std::string crop2 = out + "/imagesTr/case_002_0000.nii.gz";
  const auto written = fs::last_write_time(crop2);

  // Rerun: both skipped, nothing rewritten, the summary still has their numbers.
  ASSERT_EQ(run_command("(" + crop_command(d, out, "--json") + " 2>/dev/null)", &log), 0) << log;  // stdout only
  const json printed = json::parse(log);
  ASSERT_EQ(printed.size(), 2u);
  EXPECT_EQ(printed[0]["status"], "skipped");
  EXPECT_EQ(printed[0]["input"]["path"], d.dir + "/imagesTr/case_001_0000.nii.gz");
  auto rows = rows_by_case(read_json(out + "/summary.json"));
  EXPECT_EQ(rows.at("case_002")["status"], "skipped");
  EXPECT_GT(rows.at("case_002")["fit_dice"].get<double>(), 0.5);
  EXPECT_EQ(fs::last_write_time(crop2), written);

  // A crop without its record is not overwritten: that case fails, the other is skipped, exit 9.
  fs::remove(out + "/records/case_002_liver.json");
  EXPECT_EQ(run_command(crop_command(d, out), &log), 9) << log;
  EXPECT_NE(log.find("--overwrite"), std::string::npos) << log;
  EXPECT_EQ(fs::last_write_time(crop2), written);
  rows = rows_by_case(read_json(out + "/summary.json"));
  EXPECT_EQ(rows.at("case_002")["status"], "failed");
  EXPECT_EQ(rows.at("case_002")["error_code"], 7);
  EXPECT_EQ(rows.at("case_001")["status"], "skipped");

  // --overwrite redoes every case.
  ASSERT_EQ(run_command(crop_command(d, out, "--overwrite"), &log), 0) << log;
  rows = rows_by_case(read_json(out + "/summary.json"));
  EXPECT_EQ(rows.at("case_001")["status"], "ok");
  EXPECT_EQ(rows.at("case_002")["status"], "ok");
  EXPECT_TRUE(fs::exists(out + "/records/case_002_liver.json"));

  // Other crop options are not taken for "done": the cases fail, naming the difference, and nothing is replaced.
  const auto redone = fs::last_write_time(crop2);
  EXPECT_EQ(run_command(crop_command(d, out, "--margin 25"), &log), 9) << log;
  EXPECT_NE(log.find("other options"), std::string::npos) << log;
  EXPECT_NE(log.find("margin"), std::string::npos) << log;
  EXPECT_EQ(fs::last_write_time(crop2), redone);
}

TEST_F(DatasetMode, ShardsSplitTheCasesAndAnUnreadableCaseDoesNotStopTheBatch) {
  const Dataset d = make_dataset(data_, tmp_.path(), 3);
  // case_003's image is not an image: it fails, the others go on.
  std::ofstream(d.dir + "/imagesTr/case_003_0000.nii.gz", std::ios::trunc) << "not an image";
  const std::string out = tmp_.file("out");
  std::string log;
  EXPECT_EQ(run_command(crop_command(d, out, "--shard 2/2"), &log), 2) << log;
  EXPECT_NE(log.find("0-based"), std::string::npos) << log;
  // Shard 0 of 2: case_001 and case_003 (sorted positions 0 and 2); case_003 fails -> 9.
  EXPECT_EQ(run_command(crop_command(d, out, "--shard 0/2"), &log), 9) << log;
  EXPECT_EQ(run_command(crop_command(d, out, "--shard 1/2"), &log), 0) << log;
  const auto shard0 = rows_by_case(read_json(out + "/summary_shard-0-of-2.json"));
  const auto shard1 = rows_by_case(read_json(out + "/summary_shard-1-of-2.json"));
  ASSERT_EQ(shard0.size(), 2u);
  ASSERT_EQ(shard1.size(), 1u);
  EXPECT_EQ(shard0.at("case_001")["status"], "ok");
  EXPECT_EQ(shard0.at("case_003")["status"], "failed");
  EXPECT_EQ(shard0.at("case_003")["error_code"], 3);
  EXPECT_NE(shard0.at("case_003")["error"].get<std::string>().find("case_003_0000.nii.gz"), std::string::npos);
  EXPECT_EQ(shard1.at("case_002")["status"], "ok");
  EXPECT_FALSE(fs::exists(out + "/labelsTr/case_003.nii.gz")) << "nothing of a failed case stays";
  // dataset.json lists what all shards finished.
  EXPECT_EQ(read_json(out + "/dataset.json")["numTraining"], 2);
}

TEST_F(DatasetMode, SigintStopsBetweenCasesLeavesNoPartialFilesAndARerunResumes) {
  constexpr int kCases = 6;
  const Dataset d = make_dataset(data_, tmp_.path(), kCases);
  const std::string out = tmp_.file("out");
  const std::string err = tmp_.file("stderr.txt");
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string cmd = "exec " + crop_command(d, out) + " 2>" + err;
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // Wait for the first finished case, then interrupt the second.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(300);
  while (!fs::exists(out + "/records/case_001_liver.json") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_EQ(kill(pid, SIGINT), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  std::ifstream log_in(err);
  const std::string log((std::istreambuf_iterator<char>(log_in)), std::istreambuf_iterator<char>());
  ASSERT_TRUE(WIFEXITED(status)) << log;
  EXPECT_EQ(WEXITSTATUS(status), 130) << log;

  EXPECT_TRUE(temporary_files(out).empty());
  // No partial case: every crop belongs to a case whose record exists.
  int records = 0;
  for (const auto& e : fs::directory_iterator(out + "/records")) records += e.path().extension() == ".json";
  for (const auto& e : fs::directory_iterator(out + "/imagesTr")) {
    const std::string id = e.path().filename().string().substr(0, 8);
    EXPECT_TRUE(fs::exists(out + "/records/" + id + "_liver.json")) << e.path();
  }
  EXPECT_GE(records, 1);
  EXPECT_LT(records, kCases);
  const json stopped = read_json(out + "/summary.json");
  EXPECT_EQ(stopped["counts"]["ok"].get<int>(), records) << "the summary covers the cases finished";
  std::cout << "SIGINT after case_001: " << records << " of " << kCases << " cases finished\n";

  // The rerun resumes: the finished cases are skipped, the others done.
  std::string rerun_log;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(run_command(crop_command(d, out), &rerun_log), 0) << rerun_log;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const json done = read_json(out + "/summary.json");
  EXPECT_EQ(done["counts"]["skipped"].get<int>(), records);
  EXPECT_EQ(done["counts"]["ok"].get<int>(), kCases - records);
  EXPECT_EQ(read_json(out + "/dataset.json")["numTraining"], kCases);
  std::cout << "rerun: " << kCases - records << " cases in " << seconds << " s ("
            << 60.0 * (kCases - records) / seconds << " scans/minute incl. start-up)\n";
}

}  // namespace
}  // namespace ctarr::test
