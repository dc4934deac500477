#include "ctarr/preview.hpp"

#include "ctarr/error.hpp"
#include "support/png.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
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

TEST(Png, EmptyPictureIsRefused) {
  expect_error([] { encode_png(RgbImage()); }, ErrorCode::Internal, {"encode_png: empty or inconsistent picture"});
}

// ---- scan preview -------------------------------------------------------------------------------------------

// The atlas outlined through a fit that puts the scan's point (50, 40, 60) mm (the middle of grid_2mm()) at the
// atlas origin.
PreviewOverlay atlas_overlay(const MultiChannelImage<Atlas>& atlas) {
  PreviewOverlay overlay;
  overlay.atlas_masks = &atlas;
  Eigen::Affine3d fit = Eigen::Affine3d::Identity();
  fit.translation() = Eigen::Vector3d(-50, -40, -60);
  overlay.scanner_to_atlas = Affine<Scanner, Atlas>(fit);
  return overlay;
}

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
  PreviewOverlay overlay = atlas_overlay(atlas);
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

// ---- overlays: segmentation, smooth atlas outline, box names, axial slices, refused fits ------------------------

// Soft masks on a 3 mm grid over grid_2mm()'s extent, stored mirrored in x (direction diag(-1, 1, 1)), with class c
// set to 1 where inside(x).
MultiChannelImage<Scanner> masks_3mm(int c, const std::function<bool(const Eigen::Vector3d&)>& inside) {
  Grid<Scanner> g;
  g.size = Index3{{34, 27, 40}};
  g.spacing = Eigen::Vector3d::Constant(3.0);
  g.direction = Eigen::Vector3d(-1, 1, 1).asDiagonal();
  g.origin = Eigen::Vector3d(99, 0, 0);
  MultiChannelImage<Scanner> m(g, kNumClasses, 0.0f);
  for (std::int64_t k = 0; k < g.size[2]; ++k)
    for (std::int64_t j = 0; j < g.size[1]; ++j)
      for (std::int64_t i = 0; i < g.size[0]; ++i)
        if (inside(g.to_world(Index3{{i, j, k}}).mm)) m.channel(c)[g.linear(Index3{{i, j, k}})] = 1.0f;
  return m;
}

TEST(ScanPreview, SegmentationIsFilledInItsClassColourWhereItIs) {
  const int liver = 14;
  // liver: x 30..60 (patient's right of the 0..98 mm scan), y 20..50, z 40..80
  const MultiChannelImage<Scanner> seg = masks_3mm(liver, [](const Eigen::Vector3d& x) {
    return x.x() > 30 && x.x() < 60 && x.y() > 20 && x.y() < 50 && x.z() > 40 && x.z() < 80;
  });
  const Image<float> scan = sample(grid_2mm(), [](const Eigen::Vector3d&) { return 40.0f; });
  PreviewOverlay overlay;
  overlay.segmentation = &seg;
  const Preview<Scanner> p = render_scan_preview(scan, overlay, two_mm());
  EXPECT_EQ(p.legend_classes, std::vector<int>{liver});
  const int row_mid = p.views_top + 59 - 30;  // z 60
  const Rgb in_cor = p.image.pixel(p.coronal_left + 22, row_mid);  // x 44
  const Rgb in_sag = p.image.pixel(p.sagittal_left + 17, row_mid);  // y 34
  EXPECT_FALSE(grey(in_cor));
  EXPECT_EQ(in_cor, in_sag);
  EXPECT_GT(in_cor[0], in_cor[2]) << "liver brown: more red than blue";
  EXPECT_TRUE(grey(p.image.pixel(p.coronal_left + 10, row_mid))) << "x 20: outside the liver";
  EXPECT_TRUE(grey(p.image.pixel(p.coronal_left + 40, row_mid))) << "x 80";
  EXPECT_TRUE(grey(p.image.pixel(p.coronal_left + 22, p.views_top + 59 - 10))) << "z 20";
  EXPECT_TRUE(grey(p.image.pixel(p.sagittal_left + 30, row_mid))) << "y 60";
}

// An atlas whose class 0 is a sphere of radius 20 mm with a soft edge (a 1 mm-per-0.1 ramp, like a mean mask),
// on 4 mm voxels. `c1_offset`: class 1 is the same sphere moved by it.
MultiChannelImage<Atlas> sphere_atlas(const Eigen::Vector3d& c1_offset = Eigen::Vector3d(1000, 0, 0)) {
  Grid<Atlas> ag;
  ag.size = Index3{{30, 30, 30}};
  ag.spacing = Eigen::Vector3d::Constant(4.0);
  ag.origin = Eigen::Vector3d::Constant(-58.0);
  MultiChannelImage<Atlas> atlas(ag, kNumClasses, 0.0f);
  for (std::int64_t k = 0; k < 30; ++k)
    for (std::int64_t j = 0; j < 30; ++j)
      for (std::int64_t i = 0; i < 30; ++i) {
        const Eigen::Vector3d x = ag.to_world(Index3{{i, j, k}}).mm;
        const auto ramp = [](double r) { return static_cast<float>(std::clamp(0.5 + (20.0 - r) / 10.0, 0.0, 1.0)); };
        atlas.channel(0)[ag.linear(Index3{{i, j, k}})] = ramp(x.norm());
        atlas.channel(1)[ag.linear(Index3{{i, j, k}})] = ramp((x - c1_offset).norm());
      }
  return atlas;
}

TEST(ScanPreview, AtlasOutlineIsSmoothAtTheDisplayResolution) {
  // 1 mm display pixels over a 4 mm atlas: the 0.5 line of the projected sphere is its 20 mm circle, and every
  // outline pixel lies within one pixel of it (looking the atlas up voxel by voxel gives 4 mm stairs)
  const MultiChannelImage<Atlas> atlas = sphere_atlas();
  PreviewOverlay overlay = atlas_overlay(atlas);
  overlay.atlas_classes = {0};
  const Image<float> scan = sample(grid_2mm(), [](const Eigen::Vector3d&) { return 0.0f; });
  PreviewOptions o;
  o.pixel_mm = 1.0;
  const Preview<Scanner> p = render_scan_preview(scan, overlay, o);
  ASSERT_EQ(p.display_grid.size, Index3({{100, 80, 120}}));
  int outline = 0;
  double worst = 0.0;
  std::vector<bool> angle_hit(36, false);
  for (int row = 0; row < 120; ++row)
    for (int c = 0; c < 100; ++c) {
      if (grey(p.image.pixel(p.coronal_left + c, p.views_top + row))) continue;
      ++outline;
      // display pixel centre, mm from the scan's first corner (-1, ., -1): x = c + 0.5 - 1, z = 120 - row - 0.5 - 1
      const double dx = c - 0.5 - 50.0, dz = 118.5 - row - 60.0;
      worst = std::max(worst, std::abs(std::hypot(dx, dz) - 20.0));
      angle_hit[static_cast<std::size_t>(std::floor((std::atan2(dz, dx) + M_PI) / (2 * M_PI) * 36.0)) % 36] = true;
    }
  EXPECT_GT(outline, 100);
  EXPECT_LE(worst, 1.5) << "outline pixels off the 20 mm circle";
  EXPECT_EQ(std::count(angle_hit.begin(), angle_hit.end(), true), 36) << "a closed line";
  EXPECT_EQ(p.legend_classes, std::vector<int>{0});
}

TEST(ScanPreview, AtlasOutlineOnlyForTheClassesAsked) {
  const MultiChannelImage<Atlas> atlas = sphere_atlas(Eigen::Vector3d(0, 0, 0));  // class 1 where class 0 is
  PreviewOverlay overlay = atlas_overlay(atlas);
  const Image<float> scan = sample(grid_2mm(), [](const Eigen::Vector3d&) { return 0.0f; });
  overlay.atlas_classes = {1};
  const Preview<Scanner> only1 = render_scan_preview(scan, overlay, two_mm());
  overlay.atlas_classes = {0};
  const Preview<Scanner> only0 = render_scan_preview(scan, overlay, two_mm());
  // the same circle, in each class's own colour: the first outline pixel of the row through its centre (z 60)
  const int row = only0.views_top + 59 - 30;
  auto first_outline = [&](const Preview<Scanner>& p) {
    for (int c = 0; c < 50; ++c)
      if (!grey(p.image.pixel(p.coronal_left + c, row))) return c;
    return -1;
  };
  const int c0 = first_outline(only0), c1 = first_outline(only1);
  ASSERT_GE(c0, 13);  // x 26..32: the 20 mm circle about x 50
  ASSERT_LE(c0, 16);
  EXPECT_EQ(c0, c1);
  EXPECT_NE(only0.image.pixel(only0.coronal_left + c0, row), only1.image.pixel(only1.coronal_left + c1, row));
  EXPECT_EQ(only1.legend_classes, std::vector<int>{1});
}

TEST(ScanPreview, EachBoxIsNamedJustAboveItsTopEdge) {
  const Image<float> scan = sample(grid_2mm(), [](const Eigen::Vector3d&) { return -1000.0f; });
  PreviewOverlay overlay;
  overlay.boxes.push_back(PreviewBox{"liver", Box<Scanner>{Point<Scanner>{{19, 29, 39}}, Point<Scanner>{{41, 51, 81}}}});
  const Preview<Scanner> p = render_scan_preview(scan, overlay, two_mm());
  const int top = p.views_top;
  int ink = 0;  // the name, in the box's colour, in the rows above the top edge (row 19)
  for (int row = top + 19 - 9; row < top + 19; ++row)
    for (int c = 10; c < 10 + 5 * 6; ++c) ink += p.image.pixel(p.coronal_left + c, row) == kFirstBoxColour;
  EXPECT_GT(ink, 10);
}

TEST(ScanPreview, AxialSliceThroughTheBoxCentreShowsTheScanTheBoxAndTheSegmentation) {
  // soft tissue (40 HU) everywhere; a bright rod at the patient's right front (x < 20, y < 16); the box's centre at
  // z 60 (display k 30)
  const Image<float> scan = sample(grid_2mm(), [](const Eigen::Vector3d& x) {
    return x.x() < 20 && x.y() < 16 ? 1000.0f : 40.0f;
  });
  const MultiChannelImage<Scanner> seg = masks_3mm(14, [](const Eigen::Vector3d& x) {
    return x.x() > 50 && x.x() < 80 && x.y() > 40 && x.y() < 70;
  });
  PreviewOverlay overlay;
  overlay.segmentation = &seg;
  overlay.axial_slices = true;
  overlay.boxes.push_back(PreviewBox{"liver", Box<Scanner>{Point<Scanner>{{19, 29, 39}}, Point<Scanner>{{41, 51, 81}}}});
  const Preview<Scanner> p = render_scan_preview(scan, overlay, two_mm());
  ASSERT_EQ(p.axial.size(), 1u);
  const AxialPanel& a = p.axial[0];
  EXPECT_EQ(a.label, "liver");
  EXPECT_EQ(a.k, 30);
  EXPECT_GE(a.top, p.views_top + 60) << "below the projections";
  auto px = [&](int i, int j) { return p.image.pixel(a.left + i, a.top + j); };
  EXPECT_EQ(px(30, 4), (Rgb{128, 128, 128})) << "40 HU in the middle of the [-160, 240] window";
  EXPECT_EQ(px(4, 4), (Rgb{255, 255, 255})) << "the rod: top left is the patient's right front";
  EXPECT_FALSE(grey(px(32, 27))) << "x 64, y 54: the segmentation";
  // box: i 10..20, j 15..25
  EXPECT_EQ(px(10, 20), kFirstBoxColour);
  EXPECT_EQ(px(20, 20), kFirstBoxColour);
  EXPECT_EQ(px(15, 15), kFirstBoxColour);
  EXPECT_EQ(px(15, 25), kFirstBoxColour);
  EXPECT_NE(px(15, 20), kFirstBoxColour);
}

TEST(ScanPreview, ARefusedFitIsFramedInRedAndSaysWhy) {
  const Image<float> scan = sample(grid_2mm(), [](const Eigen::Vector3d&) { return -1000.0f; });
  PreviewOverlay overlay;
  overlay.refused = "the atlas fit failed (Dice 0.12 < 0.25)";
  overlay.warnings = {"low fit Dice"};
  const Preview<Scanner> p = render_scan_preview(scan, overlay);
  const Rgb red{255, 60, 60}, orange{255, 170, 60};
  EXPECT_EQ(p.image.pixel(0, 0), red);
  EXPECT_EQ(p.image.pixel(p.image.width - 1, p.image.height - 1), red);
  EXPECT_GT(p.coronal_left, 0) << "the views sit inside the frame";
  int red_ink = 0, orange_ink = 0;
  for (int r = 0; r < p.views_top; ++r)
    for (int c = 8; c < p.image.width - 8; ++c) {
      red_ink += p.image.pixel(c, r) == red;
      orange_ink += p.image.pixel(c, r) == orange;
    }
  EXPECT_GT(red_ink, 200) << "FIT REFUSED and the reason";
  EXPECT_GT(orange_ink, 20) << "the warning";
  PreviewOverlay fine;
  EXPECT_NE(render_scan_preview(scan, fine).image.pixel(0, 0), red);
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
