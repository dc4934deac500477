// The real binary: help/version, a crop from a synthetic scan with --seg, and one bad input per error class.
#include "ctarr/classes.hpp"
#include "ctarr/components.hpp"
#include "ctarr/io.hpp"
#include "ctarr/network.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

namespace ctarr::test {
namespace {

namespace fs = std::filesystem;

std::string ctarr(const std::string& args) { return ctarr_binary() + " " + args; }

bool folder_has_images(const std::string& dir) {
  if (!fs::exists(dir)) return false;
  for (const auto& e : fs::directory_iterator(dir))
    if (has_image_extension(e.path().string()) || e.path().extension() == ".tmp") return true;
  return false;
}

TEST(Cli, HelpAndVersionExitZero) {
  std::string out;
  EXPECT_EQ(run_command(ctarr("--help"), &out), 0);
  EXPECT_NE(out.find("crop"), std::string::npos);
  EXPECT_EQ(run_command(ctarr("--version"), &out), 0);
  EXPECT_NE(out.find("ctarr "), std::string::npos);
  EXPECT_EQ(run_command(ctarr("crop --help"), &out), 0);
  EXPECT_NE(out.find("--target-spacing"), std::string::npos);
}

TEST(Cli, UsageErrorsExitTwo) {
  std::string out;
  EXPECT_EQ(run_command(ctarr(""), &out), 2);
  EXPECT_EQ(run_command(ctarr("crop in.nii.gz"), &out), 2);  // no --region
  for (const char* margin : {"-5", "1e9", "nan"}) {  // a negative margin was once taken as "not given"
    EXPECT_EQ(run_command(ctarr(std::string("crop --region liver --margin ") + margin + " in.nii.gz"), &out), 2)
        << margin << ": " << out;
    EXPECT_NE(out.find("--margin"), std::string::npos) << out;
  }
  for (const char* pad : {"12abc", "nan", "inf", "1e40"}) {  // "12abc" was once taken as 12
    EXPECT_EQ(run_command(ctarr(std::string("crop --region liver --pad '") + pad + "' in.nii.gz"), &out), 2)
        << pad << ": " << out;
    EXPECT_NE(out.find("--pad"), std::string::npos) << out;
  }
  EXPECT_EQ(run_command(ctarr("frobnicate"), &out), 2);
}

TEST(Cli, RegionsListsTheShippedRegions) {
  std::string out;
  ASSERT_EQ(run_command(ctarr("regions"), &out), 0) << out;
  for (const char* name : {"liver", "lungs", "pancreas", "brain", "urinary_bladder"})
    EXPECT_NE(out.find(name), std::string::npos) << name;
}

Image<float> small_volume(const Index3& size, double spacing = 2.0) {
  Grid<Scanner> g;
  g.size = size;
  g.spacing = Eigen::Vector3d::Constant(spacing);
  return Image<float>(g, -1000.0f);
}

// `segment` on a 3 mm CT of 128 x 64 x 64 voxels whose upper half in x is air. An InstanceNorm model: the reference
// layout has 3 tiles of 64^3, the one over the air is skipped by the fast path only; --reference-inference runs all
// of them. A tile-independent model (the shipped one): both run the whole volume in one pass, the fast path over the
// body's in-plane box only (x 8..55 grown by 24 voxels and rounded to 8: 0..80), the reference over the whole plane in
// float32. The label maps of both paths agree (bfloat16 or float32).
TEST(Cli, ReferenceInferenceRunsEveryTileAndTheFastPathSkipsAir) {
  TempDir dir;
  Image<float> ct = small_volume(Index3{{128, 64, 64}}, 3.0);
  for (std::int64_t k = 0; k < 64; ++k)
    for (std::int64_t j = 8; j < 56; ++j)
      for (std::int64_t i = 8; i < 56; ++i) ct.at(Index3{{i, j, k}}) = (i / 8 + j / 8) % 2 ? 40.0f : 300.0f;
  write_image(ct, dir.file("ct.nii.gz"), PixelType::Int16);
  std::string fast, reference;
  ASSERT_EQ(run_command(ctarr("-v segment --device cpu -o " + dir.file("fast.nii.gz") + " " + dir.file("ct.nii.gz")),
                        &fast), 0) << fast;
  ASSERT_EQ(run_command(ctarr("-v segment --device cpu --reference-inference -o " + dir.file("ref.nii.gz") + " " +
                              dir.file("ct.nii.gz")), &reference), 0) << reference;
  const ModelCard card = read_model_card(model_card_path(repo_dir() + "/models/ctarr-unet.safetensors"));
  if (card.normalisation == ModelCard::Normalisation::None) {
    EXPECT_NE(fast.find("whole volume: 1 pass(es) over 80x64x64 of 128x64x64 voxels"), std::string::npos) << fast;
    EXPECT_NE(reference.find("whole volume: 1 pass(es) over 128x64x64 of 128x64x64 voxels, float32"), std::string::npos)
        << reference;
    EXPECT_EQ(reference.find("sliding window:"), std::string::npos) << reference;
  } else {
    EXPECT_NE(fast.find("2 tiles of 64^3 run, 1 skipped (air)"), std::string::npos) << fast;
    EXPECT_NE(reference.find("3 tiles of 64^3 run, 0 skipped (air)"), std::string::npos) << reference;
  }
  const Image<std::uint16_t> a = read_label_map(dir.file("fast.nii.gz")), b = read_label_map(dir.file("ref.nii.gz"));
  ASSERT_EQ(a.voxels.size(), b.voxels.size());
  std::size_t same = 0;
  for (std::size_t v = 0; v < a.voxels.size(); ++v) same += a.voxels[v] == b.voxels[v];
  EXPECT_GE(static_cast<double>(same) / static_cast<double>(a.voxels.size()), 0.99);
}

// `segment` on the bundled real CT: by default each one-piece class (share/classes.json) is one 26-connected piece;
// --all-components writes the network's argmax, which differs only where the default set a stray piece of a
// one-piece class to background.
TEST(Cli, SegmentKeepsOnePieceOfEachOnePieceClass) {
  TempDir dir;
  const std::string ct = repo_dir() + "/examples/totalseg_example/example_ct.nii.gz";
  std::string log, log_all;
  ASSERT_EQ(run_command(ctarr("segment --device cpu -o " + dir.file("one.nii.gz") + " " + ct), &log), 0) << log;
  ASSERT_EQ(run_command(ctarr("segment --device cpu --all-components -o " + dir.file("all.nii.gz") + " " + ct),
                        &log_all), 0) << log_all;
  const Image<std::uint16_t> one = read_label_map(dir.file("one.nii.gz")), all = read_label_map(dir.file("all.nii.gz"));
  ASSERT_EQ(one.voxels.size(), all.voxels.size());
  const std::vector<int>& one_piece = one_piece_labels();
  std::size_t changed = 0;
  for (std::size_t v = 0; v < one.voxels.size(); ++v) {
    if (one.voxels[v] == all.voxels[v]) continue;
    ++changed;
    ASSERT_EQ(one.voxels[v], 0);
    ASSERT_NE(std::find(one_piece.begin(), one_piece.end(), all.voxels[v]), one_piece.end()) << all.voxels[v];
  }
  for (int value : one_piece) {
    std::vector<std::uint8_t> on(one.voxels.size());
    for (std::size_t v = 0; v < on.size(); ++v) on[v] = one.voxels[v] == value;
    EXPECT_LE(connected_components(on, one.grid.size).size(), 1u) << class_names()[static_cast<std::size_t>(value - 1)];
  }
  // the log names what was removed
  if (changed > 0) {  // the shipped model leaves stray pieces on this CT (sacrum, liver, kidney_right, ...)
    EXPECT_NE(log.find("kept its largest piece"), std::string::npos) << log;
  }
  EXPECT_EQ(log_all.find("kept its largest piece"), std::string::npos) << log_all;
}

// `segment` runs the network twice by default, the second time on the scan mirrored left-right (mirror.hpp), and
// --single-pass once. Background, liver, spleen and heart keep the first pass's probabilities relative to each other,
// so every voxel where the two maps differ is a class the mirrored pass votes on in at least one of them.
TEST(Cli, SegmentMirroredPassVotesOnlyOnTheClassesWhoseMirrorImageIsAnatomy) {
  TempDir dir;
  const std::string ct = repo_dir() + "/examples/totalseg_example/example_ct.nii.gz";
  std::string log, log_single;
  ASSERT_EQ(run_command(ctarr("segment --device cpu --all-components -o " + dir.file("two.nii.gz") + " " + ct), &log),
            0) << log;
  ASSERT_EQ(run_command(ctarr("segment --device cpu --all-components --single-pass -o " + dir.file("one.nii.gz") +
                              " " + ct), &log_single), 0) << log_single;
  const Image<std::uint16_t> two = read_label_map(dir.file("two.nii.gz")), one = read_label_map(dir.file("one.nii.gz"));
  ASSERT_EQ(two.voxels.size(), one.voxels.size());
  const std::vector<int>& alone = lateralised_labels();
  auto votes = [&](int value) { return value != 0 && std::find(alone.begin(), alone.end(), value) == alone.end(); };
  std::size_t changed = 0;
  for (std::size_t v = 0; v < two.voxels.size(); ++v) {
    if (two.voxels[v] == one.voxels[v]) continue;
    ++changed;
    ASSERT_TRUE(votes(two.voxels[v]) || votes(one.voxels[v])) << two.voxels[v] << " vs " << one.voxels[v];
  }
  EXPECT_GT(changed, 0u);  // the second pass ran and changed the map
  EXPECT_LT(static_cast<double>(changed) / static_cast<double>(two.voxels.size()), 0.02);  // on this CT: 0.17 %
}

// `segment` writes the label map on the scan's own grid by default: a copy of the bundled CT stored in another axis
// order (its voxel array turned 90 degrees in-plane and the header turned with it, so every voxel keeps its world
// position) gets the copy's grid, and the same label at every world position as the CT as stored (this CT's voxels
// are 3 mm: each voxel centre is a voxel centre of the network's 3 mm grid, the same grid for both). --grid 3mm
// writes the canonical 3 mm grid.
TEST(Cli, SegmentWritesTheScansOwnGridAndTheSameLabelsAtEveryWorldPosition) {
  TempDir dir;
  const std::string ct = repo_dir() + "/examples/totalseg_example/example_ct.nii.gz";
  const Scan stored = read_scan(ct);
  const Grid<Scanner>& g = stored.image.grid;
  Image<float> copy = turned(stored.image);  // copy(i, j, k) = stored(n0 - 1 - j, i, k)
  copy.grid.origin = g.to_world(Index3{{g.size[0] - 1, 0, 0}}).mm;
  copy.grid.spacing = Eigen::Vector3d(g.spacing[1], g.spacing[0], g.spacing[2]);
  copy.grid.direction.col(0) = g.direction.col(1);
  copy.grid.direction.col(1) = -g.direction.col(0);
  write_image(copy, dir.file("copy.nii.gz"));
  std::string log, log_copy, log_coarse;
  ASSERT_EQ(run_command(ctarr("segment --device cpu --single-pass -o " + dir.file("a.nii.gz") + " " + ct), &log), 0)
      << log;
  ASSERT_EQ(run_command(ctarr("segment --device cpu --single-pass -o " + dir.file("b.nii.gz") + " " +
                              dir.file("copy.nii.gz")), &log_copy), 0) << log_copy;
  ASSERT_EQ(run_command(ctarr("segment --device cpu --single-pass --grid 3mm -o " + dir.file("c.nii.gz") + " " + ct),
                        &log_coarse), 0) << log_coarse;
  const Image<std::uint16_t> a = read_label_map(dir.file("a.nii.gz")), b = read_label_map(dir.file("b.nii.gz"));
  EXPECT_EQ(a.grid.size, g.size);
  EXPECT_LT((a.grid.origin - g.origin).norm(), 1e-3);
  EXPECT_LT((a.grid.direction - g.direction).norm(), 1e-6);
  ASSERT_EQ(b.grid.size, copy.grid.size);
  EXPECT_LT((b.grid.origin - copy.grid.origin).norm(), 1e-3);
  EXPECT_LT((b.grid.direction - copy.grid.direction).norm(), 1e-6);
  std::size_t differ = 0, labelled = 0;
  for (std::int64_t k = 0; k < b.grid.size[2]; ++k)
    for (std::int64_t j = 0; j < b.grid.size[1]; ++j)
      for (std::int64_t i = 0; i < b.grid.size[0]; ++i) {
        const std::uint16_t here = b.at(Index3{{i, j, k}});
        differ += here != a.at(Index3{{g.size[0] - 1 - j, i, k}});
        labelled += here != 0;
      }
  EXPECT_EQ(differ, 0u);
  EXPECT_GT(labelled, 1000u);
  const Image<std::uint16_t> c = read_label_map(dir.file("c.nii.gz"));
  EXPECT_DOUBLE_EQ(c.grid.spacing[0], 3.0);
  EXPECT_LT((c.grid.direction - Eigen::Matrix3d::Identity()).norm(), 1e-6);  // canonical: axes along LPS
  // a grid that is neither is a usage error
  std::string bad;
  EXPECT_EQ(run_command(ctarr("segment --grid 1mm -o " + dir.file("d.nii.gz") + " " + ct), &bad), 2) << bad;
  EXPECT_FALSE(fs::exists(dir.file("d.nii.gz")));
}

struct BadInput {
  std::string name;
  int exit_code;
};

void PrintTo(const BadInput& b, std::ostream* os) { *os << b.name; }

class CliBadInput : public ::testing::TestWithParam<BadInput> {};

TEST_P(CliBadInput, ClearMessageNonZeroExitNoOutput) {
  TempDir dir;
  const std::string out_dir = dir.file("out");
  std::string input = dir.file("in.nii.gz");
  std::string extra;
  const std::string& name = GetParam().name;
  if (name == "missing_file") {
    input = dir.file("does_not_exist.nii.gz");
  } else if (name == "not_an_image") {
    std::ofstream(input) << "this is not an image\n";
  } else if (name == "corrupt_gz") {
    write_image(small_volume({{8, 8, 8}}), input);
    const auto size = fs::file_size(input);
    fs::resize_file(input, size / 2);
  } else if (name == "two_d") {
    input = dir.file("in.nii");
    // A 2D NIfTI-1: dim[0] = 2. Write a 3D one and patch the header.
    write_image(small_volume({{8, 8, 1}}), input);
    std::fstream f(input, std::ios::in | std::ios::out | std::ios::binary);
    const std::int16_t two = 2;
    f.seekp(40);
    f.write(reinterpret_cast<const char*>(&two), 2);
  } else if (name == "four_d") {
    input = dir.file("in.nii");
    write_image(small_volume({{8, 8, 8}}), input);
    std::fstream f(input, std::ios::in | std::ios::out | std::ios::binary);
    const std::int16_t dims[2] = {4, 8};  // dim[0] = 4, and later dim[4] = 2 volumes
    f.seekp(40);
    f.write(reinterpret_cast<const char*>(&dims[0]), 2);
    const std::int16_t two = 2;
    f.seekp(48);
    f.write(reinterpret_cast<const char*>(&two), 2);
  } else if (name == "zero_spacing" || name == "nan_spacing") {
    input = dir.file("in.nii");
    write_image(small_volume({{8, 8, 8}}), input);
    std::fstream f(input, std::ios::in | std::ios::out | std::ios::binary);
    const float bad = name == "zero_spacing" ? 0.0f : std::nanf("");
    f.seekp(76 + 4 * 2);  // pixdim[2]
    f.write(reinterpret_cast<const char*>(&bad), 4);
  } else if (name == "output_not_writable") {
    write_image(small_volume({{8, 8, 8}}), input);
    std::ofstream(dir.file("a_file")) << "x";
    extra = " -o " + dir.file("a_file") + "/sub";
  } else if (name == "unknown_region") {
    write_image(small_volume({{8, 8, 8}}), input);
  }
  const std::string region = name == "unknown_region" ? "no_such_region" : "liver";
  std::string out;
  const int code = run_command(ctarr("crop --device cpu --region " + region + " " + input +
                                     (extra.empty() ? " -o " + out_dir : extra)), &out);
  EXPECT_EQ(code, GetParam().exit_code) << out;
  EXPECT_NE(out.find("error"), std::string::npos) << out;
  if (name != "unknown_region" && name != "output_not_writable") {
    EXPECT_NE(out.find(input), std::string::npos) << "message must name the file: " << out;
  }
  EXPECT_FALSE(folder_has_images(out_dir)) << out;
}

INSTANTIATE_TEST_SUITE_P(Cases, CliBadInput,
                         ::testing::Values(BadInput{"missing_file", 3}, BadInput{"not_an_image", 3},
                                           BadInput{"corrupt_gz", 3}, BadInput{"two_d", 4}, BadInput{"four_d", 4},
                                           BadInput{"zero_spacing", 4}, BadInput{"nan_spacing", 4},
                                           BadInput{"output_not_writable", 7}, BadInput{"unknown_region", 2}),
                         [](const ::testing::TestParamInfo<BadInput>& info) { return info.param.name; });

}  // namespace
}  // namespace ctarr::test
