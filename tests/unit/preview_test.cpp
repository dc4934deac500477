#include "ctarr/preview.hpp"

#include "ctarr/error.hpp"
#include "support/png.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>

#include <functional>

namespace ctarr::test {
namespace {

const Rgb kFirstBoxColour{255, 235, 0};

bool grey(const Rgb& c) { return c[0] == c[1] && c[1] == c[2]; }

// An image on `grid` whose voxel at world x holds f(x).
Image<float> sample(const Grid<Scanner>& grid, const std::function<float(const Eigen::Vector3d&)>& f) {
  Image<float> img(grid, 0.0f);
  for (std::int64_t k = 0; k < grid.size[2]; ++k)
    for (std::int64_t j = 0; j < grid.size[1]; ++j)
      for (std::int64_t i = 0; i < grid.size[0]; ++i)
        img.at(Index3{{i, j, k}}) = f(grid.to_world(Index3{{i, j, k}}).mm);
  return img;
}

// 50 x 40 x 60 voxels of 2 mm, identity direction, voxel (0,0,0) at the world origin: x 0..98, y 0..78, z 0..118.
Grid<Scanner> grid_2mm() {
  Grid<Scanner> g;
  g.size = Index3{{50, 40, 60}};
  g.spacing = Eigen::Vector3d::Constant(2.0);
  return g;
}

// The same voxel centres stored the other way round: i runs along -x, j along -y, k along +z... and the axes
// permuted (i <-> k), as a header from another scanner might state them.
Grid<Scanner> grid_2mm_flipped_permuted() {
  Grid<Scanner> g;
  g.size = Index3{{60, 40, 50}};  // i: z, j: -y, k: -x
  g.spacing = Eigen::Vector3d::Constant(2.0);
  g.direction << 0, 0, -1,  //
      0, -1, 0,             //
      1, 0, 0;
  g.origin = Eigen::Vector3d(98, 78, 0);
  return g;
}

// ---- PNG ----------------------------------------------------------------------------------------------------

TEST(Png, DecodesToTheSamePixelsWithValidChunks) {
  RgbImage img(7, 5);
  for (int r = 0; r < 5; ++r)
    for (int c = 0; c < 7; ++c)
      img.set(
          c, r,
          Rgb{static_cast<std::uint8_t>(30 * c), static_cast<std::uint8_t>(50 * r), static_cast<std::uint8_t>(c * r)});
  const DecodedPng png = decode_png(encode_png(img));  // throws on a bad signature, CRC or zlib stream
  EXPECT_EQ(png.width, 7u);
  EXPECT_EQ(png.height, 5u);
  EXPECT_EQ(png.chunks, (std::vector<std::string>{"IHDR", "IDAT", "IEND"}));
  EXPECT_EQ(png.rgb, img.rgb);
}

TEST(Png, WriteIsAtomicAndReadableBack) {
  TempDir dir;
  RgbImage img(3, 2, Rgb{1, 2, 3});
  write_png(img, dir.file("a.png"));
  EXPECT_EQ(decode_png(read_file_bytes(dir.file("a.png"))).rgb, img.rgb);
  try {
    write_png(img, dir.file("missing/a.png"));
    FAIL() << "expected OutputNotWritable";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::OutputNotWritable);
    EXPECT_NE(std::string(e.what()).find("missing/a.png"), std::string::npos) << e.what();
  }
}

TEST(Png, EmptyPictureIsRefused) { EXPECT_THROW(encode_png(RgbImage()), Error); }

// ---- scan preview -------------------------------------------------------------------------------------------

// One display pixel per 2 mm voxel of grid_2mm().
PreviewOptions two_mm() {
  PreviewOptions o;
  o.pixel_mm = 2.0;
  return o;
}

TEST(ScanPreview, BoxOutlineLandsOnTheExpectedRowsAndColumns) {
  const Image<float> scan = sample(grid_2mm(), [](const Eigen::Vector3d&) { return -1000.0f; });
  PreviewOverlay overlay;
  // faces at x 19 / 41, y 29 / 51, z 39 / 81: voxel centres x 20..40 (i 10..20), y 30..50 (j 15..25),
  // z 40..80 (k 20..40)
  overlay.boxes.push_back(
      PreviewBox{"liver", Box<Scanner>{Point<Scanner>{{19, 29, 39}}, Point<Scanner>{{41, 51, 81}}}});
  const Preview<Scanner> p = render_scan_preview(scan, overlay, two_mm());
  ASSERT_EQ(p.display_grid.size, Index3({{50, 40, 60}}));
  ASSERT_EQ(p.image.height - p.views_top, 60);
  const int top = p.views_top, cor = p.coronal_left, sag = p.sagittal_left;
  ASSERT_GE(sag, cor + 50);
  // rows: head up, k 40 -> row 59 - 40 = 19, k 20 -> row 39
  for (int row = 19; row <= 39; ++row) {
    EXPECT_EQ(p.image.pixel(cor + 10, top + row), kFirstBoxColour) << "coronal left edge, row " << row;
    EXPECT_EQ(p.image.pixel(cor + 20, top + row), kFirstBoxColour) << "coronal right edge, row " << row;
    EXPECT_EQ(p.image.pixel(sag + 15, top + row), kFirstBoxColour) << "sagittal anterior edge, row " << row;
    EXPECT_EQ(p.image.pixel(sag + 25, top + row), kFirstBoxColour) << "sagittal posterior edge, row " << row;
    EXPECT_TRUE(grey(p.image.pixel(cor + 9, top + row))) << row;
    EXPECT_TRUE(grey(p.image.pixel(cor + 21, top + row))) << row;
    EXPECT_TRUE(grey(p.image.pixel(sag + 14, top + row))) << row;
    EXPECT_TRUE(grey(p.image.pixel(sag + 26, top + row))) << row;
  }
  for (int c = 10; c <= 20; ++c) {
    EXPECT_EQ(p.image.pixel(cor + c, top + 19), kFirstBoxColour) << "top edge, column " << c;
    EXPECT_EQ(p.image.pixel(cor + c, top + 39), kFirstBoxColour) << "bottom edge, column " << c;
    EXPECT_TRUE(grey(p.image.pixel(cor + c, top + 18))) << c;
    EXPECT_TRUE(grey(p.image.pixel(cor + c, top + 40))) << c;
  }
}

TEST(ScanPreview, HeadIsUpPatientRightIsLeftAnteriorIsLeft) {
  // bone in the patient's right (small x), anterior (small y), superior (large z) corner
  const auto f = [](const Eigen::Vector3d& x) { return (x.x() < 30 && x.y() < 20 && x.z() > 80) ? 1500.0f : -1000.0f; };
  for (const Grid<Scanner>& g : {grid_2mm(), grid_2mm_flipped_permuted()}) {
    const Preview<Scanner> p = render_scan_preview(sample(g, f), PreviewOverlay{}, two_mm());
    const Rgb bright = p.image.pixel(p.coronal_left + 5, p.views_top + 5);
    EXPECT_GT(bright[0], 150) << "coronal: top left is the patient's right head end";
    EXPECT_LT(p.image.pixel(p.coronal_left + 44, p.views_top + 5)[0], 20);
    EXPECT_LT(p.image.pixel(p.coronal_left + 5, p.views_top + 54)[0], 20);
    EXPECT_GT(p.image.pixel(p.sagittal_left + 3, p.views_top + 5)[0], 150)
        << "sagittal: top left is anterior, head end";
    EXPECT_LT(p.image.pixel(p.sagittal_left + 35, p.views_top + 5)[0], 20);
  }
}

TEST(ScanPreview, PictureDoesNotDependOnHowTheVoxelsAreStored) {
  const auto f = [](const Eigen::Vector3d& x) {
    return static_cast<float>(-1000.0 + 2000.0 * ((x - Eigen::Vector3d(30, 40, 70)).norm() < 25) + 3.0 * x.x() - x.z());
  };
  PreviewOverlay overlay;
  overlay.boxes.push_back(PreviewBox{"r", Box<Scanner>{Point<Scanner>{{10, 10, 10}}, Point<Scanner>{{50, 60, 90}}}});
  const Preview<Scanner> a = render_scan_preview(sample(grid_2mm(), f), overlay, two_mm());
  const Preview<Scanner> b = render_scan_preview(sample(grid_2mm_flipped_permuted(), f), overlay, two_mm());
  ASSERT_EQ(a.image.width, b.image.width);
  ASSERT_EQ(a.image.height, b.image.height);
  int worst = 0;
  for (std::size_t n = 0; n < a.image.rgb.size(); ++n)
    worst = std::max(worst, std::abs(a.image.rgb[n] - b.image.rgb[n]));
  EXPECT_LE(worst, 1);  // summation order only
}

TEST(ScanPreview, PixelsAreSquareInMillimetres) {
  // a 40 mm cube in a 1 x 1 x 4 mm scan must be as tall as it is wide in the picture
  Grid<Scanner> g;
  g.size = Index3{{80, 80, 20}};
  g.spacing = Eigen::Vector3d(1.0, 1.0, 4.0);
  const Image<float> scan = sample(g, [](const Eigen::Vector3d& x) {
    return (x.array() >= 19.5).all() && (x.array() <= 59.5).all() ? 1000.0f : -1000.0f;
  });
  PreviewOptions o;
  o.pixel_mm = 1.0;
  const Preview<Scanner> p = render_scan_preview(scan, PreviewOverlay{}, o);
  ASSERT_EQ(p.display_grid.size, Index3({{80, 80, 80}}));
  int columns = 0, rows = 0;
  for (int c = 0; c < 80; ++c) columns += p.image.pixel(p.coronal_left + c, p.views_top + 40)[0] > 100;
  for (int r = 0; r < 80; ++r) rows += p.image.pixel(p.coronal_left + 40, p.views_top + r)[0] > 100;
  EXPECT_NEAR(columns, 40, 1);
  EXPECT_NEAR(rows, 40, 2);
}

TEST(ScanPreview, AtlasOutlineFollowsTheFit) {
  // atlas: class 0 is a cube [-20, 20] mm; the fit puts the scan's point (50, 40, 60) at the atlas origin
  Grid<Atlas> ag;
  ag.size = Index3{{30, 30, 30}};
  ag.spacing = Eigen::Vector3d::Constant(2.0);
  ag.origin = Eigen::Vector3d::Constant(-30.0);  // atlas voxel centres on the scan's display pixel centres
  MultiChannelImage<Atlas> atlas(ag, kNumClasses, 0.0f);
  for (std::int64_t k = 0; k < 30; ++k)
    for (std::int64_t j = 0; j < 30; ++j)
      for (std::int64_t i = 0; i < 30; ++i)
        if ((ag.to_world(Index3{{i, j, k}}).mm.array().abs() < 20.0).all())
          atlas.channel(0)[ag.linear(Index3{{i, j, k}})] = 1.0f;
  PreviewOverlay overlay;
  overlay.atlas_masks = &atlas;
  Eigen::Affine3d fit = Eigen::Affine3d::Identity();
  fit.translation() = Eigen::Vector3d(-50, -40, -60);
  overlay.scanner_to_atlas = Affine<Scanner, Atlas>(fit);
  const Image<float> scan = sample(grid_2mm(), [](const Eigen::Vector3d&) { return 0.0f; });
  const Preview<Scanner> p = render_scan_preview(scan, overlay, two_mm());
  // cube in scanner mm: x 31..69 (i 16..34), z 41..79 (k 21..39 -> rows 38..20); middle row k 30 -> row 29
  const int row = p.views_top + 29;
  EXPECT_FALSE(grey(p.image.pixel(p.coronal_left + 16, row)));
  EXPECT_FALSE(grey(p.image.pixel(p.coronal_left + 34, row)));
  EXPECT_TRUE(grey(p.image.pixel(p.coronal_left + 15, row)));
  EXPECT_TRUE(grey(p.image.pixel(p.coronal_left + 25, row))) << "inside the cube: no outline";
  EXPECT_TRUE(grey(p.image.pixel(p.coronal_left + 35, row)));
  // sagittal: y 21..59 (j 11..29)
  EXPECT_FALSE(grey(p.image.pixel(p.sagittal_left + 11, row)));
  EXPECT_FALSE(grey(p.image.pixel(p.sagittal_left + 29, row)));
  EXPECT_TRUE(grey(p.image.pixel(p.sagittal_left + 10, row)));
}

TEST(ScanPreview, AutomaticPixelSizeSplitsSmallScansAndCoarsensLargeOnes) {
  // 120 mm at 2 mm: 60 voxels, split by 7 to reach 400 pixels
  const Image<float> small = sample(grid_2mm(), [](const Eigen::Vector3d&) { return 0.0f; });
  EXPECT_NEAR(render_scan_preview(small, PreviewOverlay{}).display_grid.spacing.x(), 2.0 / 7.0, 1e-9);
  // 1000 mm at 1 mm: coarsened to 1000 / 512 mm
  Grid<Scanner> g;
  g.size = Index3{{20, 20, 1000}};
  const Image<float> tall(g, 0.0f);
  const Preview<Scanner> p = render_scan_preview(tall, PreviewOverlay{});
  EXPECT_NEAR(p.display_grid.spacing.x(), 1000.0 / 512.0, 1e-9);
  EXPECT_EQ(p.display_grid.size[2], 512);
}

TEST(ScanPreview, TextIsWrittenInTheTopLeftCorner) {
  const Image<float> scan = sample(grid_2mm(), [](const Eigen::Vector3d&) { return -1000.0f; });
  PreviewOverlay overlay;
  overlay.text = {"DICE 0.75"};
  const Preview<Scanner> p = render_scan_preview(scan, overlay);
  int ink = 0;
  for (int r = 0; r < p.views_top; ++r)
    for (int c = 0; c < 60; ++c) ink += p.image.pixel(c, r)[0] > 200;
  EXPECT_GT(ink, 40);
  EXPECT_GE(p.image.width, 9 * 6) << "wide enough for the text";
}

// ---- heatmap preview ----------------------------------------------------------------------------------------

TEST(HeatmapPreview, BoxOutlineLandsOnTheExpectedColumns) {
  Grid<Atlas> g;
  g.size = Index3{{40, 40, 40}};
  g.spacing = Eigen::Vector3d::Constant(3.0);
  g.origin = Eigen::Vector3d::Constant(-60.0);
  Image<float, Atlas> heat(g, 0.0f);
  // box: atlas voxels 10..19 along x (faces -31.5 and -1.5 mm), all of y and z
  const Box<Atlas> box{Point<Atlas>{{-31.5, -61.5, -61.5}}, Point<Atlas>{{-1.5, 58.5, 58.5}}};
  const Preview<Atlas> p = render_heatmap_preview(heat, {box}, {"liver"}, 400);
  // zoom 10: 0.3 mm pixels; face -31.5 mm is pixel face 100, face -1.5 mm is pixel face 200
  ASSERT_EQ(p.display_grid.size, Index3({{400, 400, 400}}));
  const Rgb cyan{0, 235, 255};
  EXPECT_EQ(p.image.pixel(p.coronal_left + 100, p.views_top + 200), cyan);
  EXPECT_EQ(p.image.pixel(p.coronal_left + 199, p.views_top + 200), cyan);
  EXPECT_NE(p.image.pixel(p.coronal_left + 99, p.views_top + 200), cyan);
  EXPECT_NE(p.image.pixel(p.coronal_left + 200, p.views_top + 200), cyan);
  EXPECT_NO_THROW(decode_png(encode_png(p.image)));
}

TEST(HeatmapPreview, HotVoxelsAreBrightInBothViews) {
  Grid<Atlas> g;
  g.size = Index3{{20, 20, 20}};
  g.spacing = Eigen::Vector3d::Constant(3.0);
  Image<float, Atlas> heat(g, 0.0f);
  heat.at(Index3{{5, 15, 18}}) = 1.0f;  // patient's right, posterior, superior
  const Preview<Atlas> p = render_heatmap_preview(heat, {}, {}, 100);
  const int zoom = static_cast<int>(p.display_grid.size[0] / 20);
  ASSERT_EQ(zoom, 5);
  const int row = p.views_top + (19 - 18) * zoom + zoom / 2;
  EXPECT_EQ(p.image.pixel(p.coronal_left + 5 * zoom + zoom / 2, row), (Rgb{255, 255, 255}));
  EXPECT_EQ(p.image.pixel(p.sagittal_left + 15 * zoom + zoom / 2, row), (Rgb{255, 255, 255}));
  EXPECT_EQ(p.image.pixel(p.coronal_left + 15 * zoom + zoom / 2, row), (Rgb{0, 0, 0}));
}

}  // namespace
}  // namespace ctarr::test
