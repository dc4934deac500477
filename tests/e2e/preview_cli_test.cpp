// The real binary with --preview: a synthetic scan rendered from the shipped atlas, stored mirrored in x and y
// (direction diag(-1, -1, 1)), cropped with --seg; the picture's liver box must sit where the record's voxel
// range says, seen in the canonical (unmirrored) orientation.
#include "ctarr/atlas.hpp"
#include "ctarr/io.hpp"
#include "support/png.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>

namespace ctarr::test {
namespace {

// Writes dir/seg.nii.gz and dir/ct.nii.gz: the shipped atlas' hard labels (and a CT made from them), stored mirrored.
void write_mirrored_atlas_scan(const AtlasModel& atlas, const TempDir& dir) {
  const auto& m = atlas.masks;
  const Index3 n = m.grid.size;
  Grid<Scanner> g;
  g.size = n;
  g.spacing = m.grid.spacing;
  g.direction = Eigen::Vector3d(-1, -1, 1).asDiagonal();
  g.origin = m.grid.origin + Eigen::Vector3d((n[0] - 1) * g.spacing[0], (n[1] - 1) * g.spacing[1], 0.0);
  Image<std::uint8_t> labels(g, 0);
  Image<float> ct(g, -1000.0f);
  const auto nv = static_cast<std::size_t>(m.grid.voxels());
  for (std::int64_t k = 0; k < n[2]; ++k)
    for (std::int64_t j = 0; j < n[1]; ++j)
      for (std::int64_t i = 0; i < n[0]; ++i) {
        const std::size_t v = m.grid.linear(Index3{{n[0] - 1 - i, n[1] - 1 - j, k}});  // same world point
        float best = 0.5f;
        for (int c = 0; c < m.channels; ++c)
          if (m.data[static_cast<std::size_t>(c) * nv + v] >= best) {
            best = m.data[static_cast<std::size_t>(c) * nv + v];
            labels.at(Index3{{i, j, k}}) = static_cast<std::uint8_t>(c + 1);
            ct.at(Index3{{i, j, k}}) = c < 10 ? 700.0f : 40.0f;
          }
      }
  write_image(labels, dir.file("seg.nii.gz"));
  write_image(ct, dir.file("ct.nii.gz"));
}

TEST(CropPreview, PictureShowsTheCropBoxWhereTheRecordPutsIt) {
  const AtlasModel atlas = load_atlas(repo_dir() + "/atlas");
  const Index3 n = atlas.masks.grid.size;
  TempDir dir;
  write_mirrored_atlas_scan(atlas, dir);
  std::string out;
  ASSERT_EQ(run_command(ctarr_binary() + " crop --preview --region liver --seg " + dir.file("seg.nii.gz") + " " +
                            dir.file("ct.nii.gz") + " -o " + dir.file("out"),
                        &out),
            0)
      << out;

  const auto record = nlohmann::json::parse(read_file_bytes(dir.file("out/ct_liver.json")));
  const auto& box = record.at("boxes").at(0).at("index_box_written");
  const std::array<std::int64_t, 3> start{box.at("start")[0], box.at("start")[1], box.at("start")[2]};
  const std::array<std::int64_t, 3> end{box.at("end")[0], box.at("end")[1], box.at("end")[2]};

  // the record says where the picture is and where its views lie
  const auto& preview = record.at("preview");
  ASSERT_EQ(preview.at("file"), "ct_preview.png");
  ASSERT_EQ(record.at("summary").at("preview"), "ct_preview.png");
  const DecodedPng png = decode_png(read_file_bytes(dir.file("out/ct_preview.png")));
  // Display pixels: the atlas is 322 voxels of 3 mm tall, under the 400-pixel minimum, so every voxel is split in
  // f = 2 (1.5 mm pixels); views of f n[0] x f n[2] and f n[1] x f n[2] pixels, coronal at the left.
  constexpr std::int64_t f = 2;
  ASSERT_DOUBLE_EQ(preview.at("pixel_mm").get<double>(), 1.5);
  const std::int64_t top = preview.at("views").at("top"), cor = preview.at("views").at("coronal_left");
  ASSERT_GE(png.width, static_cast<std::uint32_t>(f * (n[0] + n[1])));
  ASSERT_GT(png.height, static_cast<std::uint32_t>(top + f * n[2]));
  auto pixel = [&](std::int64_t column, std::int64_t row) {
    const std::size_t at = 3 * (static_cast<std::size_t>(row) * png.width + static_cast<std::size_t>(column));
    return std::array<int, 3>{png.rgb[at], png.rgb[at + 1], png.rgb[at + 2]};
  };
  // canonical i = n - 1 - stored i: the crop's voxels span canonical columns n - end .. n - 1 - start, i.e.
  // display columns f (n - end) .. f (n - start) - 1; display row of display k: f n_k - 1 - k
  const std::int64_t left = cor + f * (n[0] - end[0]), right = cor + f * (n[0] - start[0]) - 1;
  const std::int64_t bottom = top + f * n[2] - 1 - f * start[2], upper = top + f * n[2] - f * end[2];
  const std::int64_t row_mid = (bottom + upper) / 2;
  const std::array<int, 3> yellow{255, 235, 0};
  EXPECT_EQ(pixel(left, row_mid), yellow) << "left edge of the liver box, column " << left;
  EXPECT_EQ(pixel(right, row_mid), yellow) << "right edge of the liver box, column " << right;
  EXPECT_NE(pixel(left - 1, row_mid), yellow);
  EXPECT_NE(pixel(right + 1, row_mid), yellow);
  EXPECT_EQ(pixel((left + right) / 2, bottom), yellow) << "bottom edge";
  EXPECT_EQ(pixel((left + right) / 2, upper), yellow) << "top edge";
  EXPECT_NE(pixel((left + right) / 2, upper - 1), yellow);
  // the liver is on the patient's right: its box's centre in the left half of the coronal view
  EXPECT_LT(left + right - 2 * cor, f * n[0]) << "columns " << left << ".." << right << " of " << f * n[0];

  // the axial slice through the box's centre, below the views, shows the box's left and right faces
  const auto& axial = preview.at("axial_slices");
  ASSERT_EQ(axial.size(), 1u);
  EXPECT_EQ(axial[0].at("label"), "liver");
  const std::int64_t a_left = axial[0].at("left"), a_top = axial[0].at("top"), k = axial[0].at("display_k");
  EXPECT_GE(a_top, top + f * n[2]);
  EXPECT_NEAR(static_cast<double>(k), f * (start[2] + end[2]) / 2.0, 2.0);
  // canonical j = n - 1 - stored j: the box's rows in the panel are f (n - end) .. f (n - start) - 1
  const std::int64_t j_mid = f * (2 * n[1] - start[1] - end[1]) / 2;
  EXPECT_EQ(pixel(a_left + left - cor, a_top + j_mid), yellow);
  EXPECT_EQ(pixel(a_left + right - cor, a_top + j_mid), yellow);
}

// A refused fit is the case where the picture matters most: with --preview it is written (framed in red, saying
// why), kept when the case fails, and named in the batch summary and on the QA page. Case b's segmentation is empty
// (no anatomy: no transform); case a is fitted.
TEST(CropPreview, ARefusedFitStillGetsItsPictureAndTheSummaryNamesIt) {
  const AtlasModel atlas = load_atlas(repo_dir() + "/atlas");
  TempDir dir;
  write_mirrored_atlas_scan(atlas, dir);
  std::filesystem::create_directories(dir.file("segs"));
  std::filesystem::copy_file(dir.file("ct.nii.gz"), dir.file("a.nii.gz"));
  std::filesystem::copy_file(dir.file("ct.nii.gz"), dir.file("b.nii.gz"));
  std::filesystem::copy_file(dir.file("seg.nii.gz"), dir.file("segs/a.nii.gz"));
  Image<std::uint8_t> empty(read_scan(dir.file("seg.nii.gz")).image.grid, 0);
  write_image(empty, dir.file("segs/b.nii.gz"));
  std::string out;
  EXPECT_EQ(run_command(ctarr_binary() + " crop --preview --region liver --seg-dir " + dir.file("segs") + " " +
                            dir.file("a.nii.gz") + " " + dir.file("b.nii.gz") + " -o " + dir.file("out"),
                        &out),
            9)
      << out;
  ASSERT_TRUE(std::filesystem::exists(dir.file("out/a_preview.png"))) << out;
  ASSERT_TRUE(std::filesystem::exists(dir.file("out/b_preview.png"))) << out;
  EXPECT_NE(out.find("the picture of the refused fit: " + dir.file("out/b_preview.png")), std::string::npos) << out;
  const DecodedPng png = decode_png(read_file_bytes(dir.file("out/b_preview.png")));
  const std::array<int, 3> red{255, 60, 60};
  EXPECT_EQ((std::array<int, 3>{png.rgb[0], png.rgb[1], png.rgb[2]}), red) << "the red frame";
  const auto summary = nlohmann::json::parse(read_file_bytes(dir.file("out/summary.json")));
  int failed = 0;
  for (const auto& row : summary.at("cases")) {
    if (row.at("case") != "b") continue;
    ++failed;
    EXPECT_EQ(row.at("status"), "failed");
    EXPECT_EQ(row.at("error_code"), 6);
    EXPECT_EQ(row.at("preview"), dir.file("out/b_preview.png"));
  }
  EXPECT_EQ(failed, 1) << summary.dump(1);
  EXPECT_NE(read_file_bytes(dir.file("out/summary.html")).find("b_preview.png"), std::string::npos)
      << "the QA page links the refused fit's picture";
}

// A case that fails leaves nothing behind, its preview included: here its crop file exists from another run (exit 7).
// The preview used to be written before the crops, outside the case's file transaction, and stayed.
TEST(CropPreview, AFailedCaseLeavesNoPreview) {
  const AtlasModel atlas = load_atlas(repo_dir() + "/atlas");
  TempDir dir;
  write_mirrored_atlas_scan(atlas, dir);
  std::filesystem::create_directories(dir.file("out"));
  write_text_file(dir.file("out/ct_liver.nii.gz"), "from another run");
  std::string out;
  EXPECT_EQ(run_command(ctarr_binary() + " crop --preview --region liver --seg " + dir.file("seg.nii.gz") + " " +
                            dir.file("ct.nii.gz") + " -o " + dir.file("out"),
                        &out),
            7)
      << out;
  EXPECT_FALSE(std::filesystem::exists(dir.file("out/ct_preview.png"))) << out;
  EXPECT_FALSE(std::filesystem::exists(dir.file("out/ct_liver.json"))) << out;
  EXPECT_EQ(read_file_bytes(dir.file("out/ct_liver.nii.gz")), "from another run");
}

}  // namespace
}  // namespace ctarr::test
