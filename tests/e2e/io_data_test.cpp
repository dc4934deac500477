// Real-data checks of the io unit on ../shared/data (skipped when it is absent).
#include "ctarr/io.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace ctarr::test {
namespace {

namespace fs = std::filesystem;

#define CTARR_REQUIRE_SHARED_DATA(var)                                 \
  const std::optional<std::string> var##_opt = shared_data_dir();      \
  if (!var##_opt) GTEST_SKIP() << "../shared/data not found";          \
  const std::string var = *var##_opt

bool any_warning_contains(const ScanInfo& info, const std::string& text) {
  return std::any_of(info.warnings.begin(), info.warnings.end(),
                     [&](const std::string& w) { return w.find(text) != std::string::npos; });
}

std::string all_warnings(const ScanInfo& info) {
  std::string s;
  for (const auto& w : info.warnings) s += "\n  " + w;
  return s;
}

void expect_same_grid(const Grid<Scanner>& a, const Grid<Scanner>& b, double tol_mm) {
  for (int ax = 0; ax < 3; ++ax) EXPECT_EQ(a.size[ax], b.size[ax]) << "axis " << ax;
  EXPECT_LT((a.origin - b.origin).cwiseAbs().maxCoeff(), tol_mm) << a.origin.transpose() << " vs " << b.origin.transpose();
  EXPECT_LT((a.spacing - b.spacing).cwiseAbs().maxCoeff(), tol_mm) << a.spacing.transpose() << " vs " << b.spacing.transpose();
  EXPECT_LT((a.direction - b.direction).cwiseAbs().maxCoeff(), 1e-6) << a.direction << "\nvs\n" << b.direction;
}

class DicomVariant : public ::testing::TestWithParam<std::string> {};

TEST_P(DicomVariant, GivesTheVoxelsOfExplicitLittleEndian) {
  CTARR_REQUIRE_SHARED_DATA(data);
  const std::string variants = data + "/dicom/variants/";
  const Scan reference = read_scan(variants + "ts_explicit_le");
  Scan scan;
  try {
    scan = read_scan(variants + GetParam());
  } catch (const Error& e) {
    // A clear refusal is acceptable for Enhanced CT only; every other variant must be read.
    ASSERT_EQ(GetParam(), "enhanced_ct_multiframe") << e.what();
    EXPECT_EQ(e.code(), ErrorCode::UnreadableInput);
    EXPECT_NE(std::string(e.what()).find("dcm2niix"), std::string::npos) << e.what();
    return;
  }
  expect_same_grid(scan.image.grid, reference.image.grid, 1e-4);
  ASSERT_EQ(scan.image.voxels.size(), reference.image.voxels.size());
  EXPECT_TRUE(scan.image.voxels == reference.image.voxels);
  EXPECT_EQ(scan.info.format, "dicom");
  EXPECT_EQ(scan.info.stored_type, PixelType::Int16);
  if (GetParam() == "duplicate_slice") {
    EXPECT_TRUE(any_warning_contains(scan.info, "duplicate")) << all_warnings(scan.info);
  }
  if (GetParam() == "multi_series_one_folder") {
    EXPECT_TRUE(any_warning_contains(scan.info, "localizer")) << all_warnings(scan.info);
    EXPECT_EQ(scan.info.series_description, "CT Body 3.0");
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, DicomVariant,
                         ::testing::Values("ts_implicit_le", "ts_big_endian", "ts_deflated", "ts_rle",
                                           "ts_jpeg_lossless_sv1", "ts_jpegls_lossless", "ts_j2k_lossless",
                                           "duplicate_slice", "multi_series_one_folder", "enhanced_ct_multiframe"));

TEST(DicomData, MissingSliceIsInterpolatedWithAWarningAndTheRestIsExact) {
  CTARR_REQUIRE_SHARED_DATA(data);
  const Scan reference = read_scan(data + "/dicom/variants/ts_explicit_le");
  const Scan scan = read_scan(data + "/dicom/variants/missing_slice");
  EXPECT_TRUE(any_warning_contains(scan.info, "missing")) << all_warnings(scan.info);
  expect_same_grid(scan.image.grid, reference.image.grid, 1e-4);
  ASSERT_EQ(scan.image.voxels.size(), reference.image.voxels.size());
  EXPECT_EQ(scan.info.slices_read, 19);
  // Every slice but the missing one holds the reference voxels exactly.
  const std::size_t plane = static_cast<std::size_t>(scan.image.grid.size[0] * scan.image.grid.size[1]);
  int differing_slices = 0;
  for (std::int64_t k = 0; k < scan.image.grid.size[2]; ++k) {
    const auto begin = static_cast<std::ptrdiff_t>(static_cast<std::size_t>(k) * plane);
    if (!std::equal(scan.image.voxels.begin() + begin, scan.image.voxels.begin() + begin + static_cast<std::ptrdiff_t>(plane),
                    reference.image.voxels.begin() + begin))
      ++differing_slices;
  }
  EXPECT_EQ(differing_slices, 1);
}

TEST(DicomData, SlabHasTheGeometryOfItsSegmentation) {
  CTARR_REQUIRE_SHARED_DATA(data);
  const Scan scan = read_scan(data + "/totalseg_example/dicom_slab");
  const Image<std::uint16_t> seg = read_label_map(data + "/totalseg_example/dicom_slab_seg.nii.gz");
  expect_same_grid(scan.image.grid, seg.grid, 1e-3);
  EXPECT_EQ(scan.info.format, "dicom");
  EXPECT_EQ(scan.info.slices_read, 20);
  EXPECT_EQ(scan.info.stored_type, PixelType::Int16);
  EXPECT_TRUE(scan.info.warnings.empty()) << all_warnings(scan.info);
  // HU range of a real CT.
  const auto [lo, hi] = std::minmax_element(scan.image.voxels.begin(), scan.image.voxels.end());
  EXPECT_GE(*lo, -1024.0f);
  EXPECT_GT(*hi, 500.0f);
}

TEST(DicomData, GantryTiltIsResampledOntoAnOrthogonalGridWithAWarning) {
  CTARR_REQUIRE_SHARED_DATA(data);
  const Scan scan = read_scan(data + "/dicom/gantry_tilt_head");
  EXPECT_TRUE(any_warning_contains(scan.info, "gantry tilt 18.5")) << all_warnings(scan.info);
  EXPECT_TRUE(any_warning_contains(scan.info, "uneven")) << all_warnings(scan.info);
  EXPECT_FALSE(any_warning_contains(scan.info, "missing")) << all_warnings(scan.info);  // 4 mm then 7 mm: no gap
  const Eigen::Matrix3d& d = scan.image.grid.direction;
  EXPECT_LT((d.transpose() * d - Eigen::Matrix3d::Identity()).cwiseAbs().maxCoeff(), 1e-9);
  EXPECT_EQ(scan.info.slices_read, 28);
  EXPECT_EQ(scan.image.grid.size[0], 512);
  // The stack spans 152 mm along z; along the slice normal that is 152 * cos(18.5°) = 144 mm.
  const double extent = scan.image.grid.spacing[2] * static_cast<double>(scan.image.grid.size[2] - 1);
  EXPECT_NEAR(extent, 151.94 * std::cos(18.5 * 3.14159265358979 / 180.0), 8.0);
}

TEST(NiftiData, ExampleCtReadsWithItsHeaderGeometry) {
  CTARR_REQUIRE_SHARED_DATA(data);
  const Scan scan = read_scan(data + "/totalseg_example/example_ct.nii.gz");
  EXPECT_EQ(scan.info.format, "nifti");
  EXPECT_EQ(scan.image.grid.size[0], 122);
  EXPECT_EQ(scan.image.grid.size[1], 101);
  EXPECT_EQ(scan.image.grid.size[2], 112);
  EXPECT_NEAR(scan.image.grid.spacing[2], 3.0, 1e-6);
  // RAS sform (3, 3, 3; -177.96, 11.32, 94.30) is LPS (177.96, -11.32, 94.30) with x and y flipped.
  EXPECT_NEAR(scan.image.grid.origin[0], 177.956, 1e-3);
  EXPECT_NEAR(scan.image.grid.origin[1], -11.319, 1e-3);
  EXPECT_NEAR(scan.image.grid.direction(0, 0), -1.0, 1e-9);

  TempDir dir;
  write_image(scan.image, dir.file("copy.nii.gz"), scan.info.stored_type);
  const Scan copy = read_scan(dir.file("copy.nii.gz"));
  expect_same_grid(copy.image.grid, scan.image.grid, 1e-5);
  EXPECT_TRUE(copy.image.voxels == scan.image.voxels);
  EXPECT_EQ(copy.info.stored_type, scan.info.stored_type);
}

}  // namespace
}  // namespace ctarr::test

namespace ctarr::test {
namespace {

// A DICOM file cut short (an interrupted transfer) used to abort the whole process inside GDCM (an assertion in
// FileMetaInformation::ReadCompat, found by fuzz_read_dicom). Alone it is refused; in a series it is set aside with
// a warning and the rest of the series is read, its gap reported as a missing slice.
TEST(DicomTruncated, AFileCutShortIsRefusedAndSetAsideInASeries) {
  const std::optional<std::string> data = shared_data_dir();
  if (!data) GTEST_SKIP() << "../shared/data not found";
  const fs::path source = fs::path(*data) / "dicom" / "variants" / "ts_explicit_le";
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(source)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 5u);
  TempDir dir;
  const fs::path series = fs::path(dir.path()) / "series";
  fs::create_directories(series);
  for (const fs::path& f : files) fs::copy_file(f, series / f.filename());
  // cut the middle slice to 4096 bytes (inside its pixel data)
  const fs::path cut = series / files[files.size() / 2].filename();
  {
    std::ifstream in(files[files.size() / 2], std::ios::binary);
    std::vector<char> head(4096);
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    std::ofstream out(cut, std::ios::binary | std::ios::trunc);
    out.write(head.data(), static_cast<std::streamsize>(head.size()));
  }
  try {
    (void)read_scan(cut.string());
    ADD_FAILURE() << "a truncated DICOM file was read";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::UnreadableInput);
    EXPECT_NE(std::string(e.what()).find(cut.string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("cut short"), std::string::npos) << e.what();
  }
  const Scan reference = read_scan(source.string());
  const Scan scan = read_scan(series.string());
  EXPECT_TRUE(any_warning_contains(scan.info, "broken DICOM")) << all_warnings(scan.info);
  EXPECT_TRUE(any_warning_contains(scan.info, "missing slice")) << all_warnings(scan.info);
  expect_same_grid(scan.image.grid, reference.image.grid, 1e-3);
}

}  // namespace
}  // namespace ctarr::test
