// io unit tests: round trips on synthetic images, refusals with the right ErrorCode, and DICOM series rules on
// tiny DICOM files written byte by byte here (no ITK in tests).
#include "ctarr/io.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

namespace ctarr::test {
namespace {

namespace fs = std::filesystem;

// ---- helpers ---------------------------------------------------------------------------------------------

void expect_same_grid(const Grid<Scanner>& a, const Grid<Scanner>& b, double tol) {
  for (int ax = 0; ax < 3; ++ax) EXPECT_EQ(a.size[ax], b.size[ax]);
  EXPECT_LT((a.origin - b.origin).cwiseAbs().maxCoeff(), tol) << a.origin.transpose() << " vs " << b.origin.transpose();
  EXPECT_LT((a.spacing - b.spacing).cwiseAbs().maxCoeff(), tol) << a.spacing.transpose() << " vs " << b.spacing.transpose();
  EXPECT_LT((a.direction - b.direction).cwiseAbs().maxCoeff(), tol) << a.direction << "\nvs\n" << b.direction;
}

bool any_warning_contains(const ScanInfo& info, const std::string& text) {
  return std::any_of(info.warnings.begin(), info.warnings.end(),
                     [&](const std::string& w) { return w.find(text) != std::string::npos; });
}

// The synthetic images here hold ramps, not HU: ignore the intensity warning when a test expects no others.
bool no_warnings_but_intensity(const ScanInfo& info) {
  return std::all_of(info.warnings.begin(), info.warnings.end(),
                     [](const std::string& w) { return w.find("Hounsfield") != std::string::npos; });
}

std::string warnings_of(const ScanInfo& info) {
  std::string s;
  for (const auto& w : info.warnings) s += "\n  " + w;
  return s;
}

std::vector<char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

template <class T>
void put(std::vector<char>& bytes, std::size_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof(T));
}

template <class T>
T get(const std::vector<char>& bytes, std::size_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

std::vector<std::string> files_in(const std::string& folder) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(folder)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// A NIfTI-1 single file written by hand (little endian, 352-byte header), so tests can state headers that ITK
// would never write: 2D, 4D, sheared sforms, scaling, NaN voxels.
struct NiftiSpec {
  std::vector<short> dims{4, 3, 2};                   // sizes, 2 to 4 of them
  std::array<float, 3> pixdim{1.0f, 1.0f, 1.0f};
  std::array<std::array<float, 4>, 3> srow{{{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}}};  // RAS sform, sform_code 1
  short datatype = 16;                                // 16 float32, 4 int16
  float slope = 0.0f, inter = 0.0f;
  std::vector<char> data;                             // raw voxel bytes, little endian
  bool big_endian = false;                            // write header and voxels byte-swapped
};

template <class T>
void put_swapped(std::vector<char>& bytes, std::size_t offset, T value) {
  put<T>(bytes, offset, value);
  std::reverse(bytes.begin() + static_cast<std::ptrdiff_t>(offset), bytes.begin() + static_cast<std::ptrdiff_t>(offset + sizeof(T)));
}

void write_nifti(const std::string& path, const NiftiSpec& s) {
  if (s.big_endian) {
    std::vector<char> h(352, 0);
    put_swapped<int>(h, 0, 348);
    put_swapped<short>(h, 40, static_cast<short>(s.dims.size()));
    for (std::size_t d = 0; d < 7; ++d) put_swapped<short>(h, 42 + 2 * d, d < s.dims.size() ? s.dims[d] : short{1});
    put_swapped<short>(h, 70, s.datatype);
    put_swapped<short>(h, 72, static_cast<short>(s.datatype == 4 ? 16 : 32));
    put_swapped<float>(h, 76, 1.0f);
    for (std::size_t k = 0; k < 7; ++k) put_swapped<float>(h, 80 + 4 * k, k < 3 ? s.pixdim[k] : 1.0f);
    put_swapped<float>(h, 108, 352.0f);
    put_swapped<float>(h, 112, s.slope);
    put_swapped<float>(h, 116, s.inter);
    h[123] = 2;
    put_swapped<short>(h, 254, 1);
    for (std::size_t r = 0; r < 3; ++r)
      for (std::size_t c = 0; c < 4; ++c) put_swapped<float>(h, 280 + 16 * r + 4 * c, s.srow[r][c]);
    std::memcpy(h.data() + 344, "n+1\0", 4);
    const std::size_t width = s.datatype == 4 ? 2 : 4;
    std::vector<char> data = s.data;
    for (std::size_t n = 0; n + width <= data.size(); n += width)
      std::reverse(data.begin() + static_cast<std::ptrdiff_t>(n), data.begin() + static_cast<std::ptrdiff_t>(n + width));
    h.insert(h.end(), data.begin(), data.end());
    write_bytes(path, h);
    return;
  }
  std::vector<char> h(352, 0);
  put<int>(h, 0, 348);
  put<short>(h, 40, static_cast<short>(s.dims.size()));
  for (std::size_t d = 0; d < 7; ++d) put<short>(h, 42 + 2 * d, d < s.dims.size() ? s.dims[d] : short{1});
  put<short>(h, 70, s.datatype);
  put<short>(h, 72, static_cast<short>(s.datatype == 4 ? 16 : 32));
  put<float>(h, 76, 1.0f);
  for (std::size_t k = 0; k < 3; ++k) put<float>(h, 80 + 4 * k, s.pixdim[k]);
  for (std::size_t k = 3; k < 7; ++k) put<float>(h, 80 + 4 * k, 1.0f);
  put<float>(h, 108, 352.0f);
  put<float>(h, 112, s.slope);
  put<float>(h, 116, s.inter);
  h[123] = 2;  // xyzt_units: mm
  put<short>(h, 252, 0);
  put<short>(h, 254, 1);
  for (std::size_t r = 0; r < 3; ++r)
    for (std::size_t c = 0; c < 4; ++c) put<float>(h, 280 + 16 * r + 4 * c, s.srow[r][c]);
  std::memcpy(h.data() + 344, "n+1\0", 4);
  h.insert(h.end(), s.data.begin(), s.data.end());
  write_bytes(path, h);
}

std::vector<char> float_bytes(const std::vector<float>& v) {
  std::vector<char> b(v.size() * sizeof(float));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

std::vector<float> ramp(std::size_t n) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<float>(i);
  return v;
}

// ---- DICOM written by hand: explicit VR little endian, one slice per file ------------------------------------

struct DicomSpec {
  std::string sop_class = "1.2.840.10008.5.1.4.1.1.2";  // CT Image Storage
  std::string image_type = "ORIGINAL\\PRIMARY\\AXIAL";
  std::string modality = "CT";
  std::string series_uid = "1.2.826.0.1.3680043.2.1125.1";
  std::string description = "synthetic";
  int series_number = 1;
  int instance = 1;
  Eigen::Vector3d position = Eigen::Vector3d::Zero();
  Eigen::Vector3d row_cosine = Eigen::Vector3d::UnitX();
  Eigen::Vector3d column_cosine = Eigen::Vector3d::UnitY();
  double row_spacing = 0.5;     // PixelSpacing[0]: between rows
  double column_spacing = 0.7;  // PixelSpacing[1]: between columns
  int rows = 4, cols = 5;
  double slope = 1.0, intercept = -1024.0;
  std::vector<std::int16_t> pixels;  // rows * cols stored values, row by row
};

std::string ds(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

void element(std::string& out, std::uint16_t group, std::uint16_t elem, const char* vr, std::string value) {
  const bool long_form = !std::strcmp(vr, "OB") || !std::strcmp(vr, "OW") || !std::strcmp(vr, "UN");
  if (value.size() % 2) value += (!std::strcmp(vr, "UI") || long_form) ? '\0' : ' ';
  auto u16 = [&](std::uint16_t x) { out.append(reinterpret_cast<const char*>(&x), 2); };
  auto u32 = [&](std::uint32_t x) { out.append(reinterpret_cast<const char*>(&x), 4); };
  u16(group);
  u16(elem);
  out.append(vr, 2);
  if (long_form) {
    u16(0);
    u32(static_cast<std::uint32_t>(value.size()));
  } else {
    u16(static_cast<std::uint16_t>(value.size()));
  }
  out += value;
}

std::string us(std::uint16_t v) { return std::string(reinterpret_cast<const char*>(&v), 2); }

void write_dicom(const std::string& path, const DicomSpec& s) {
  const std::string sop_instance = s.series_uid + "." + std::to_string(s.instance);
  std::string meta;
  element(meta, 0x0002, 0x0001, "OB", std::string("\0\1", 2));
  element(meta, 0x0002, 0x0002, "UI", s.sop_class);
  element(meta, 0x0002, 0x0003, "UI", sop_instance);
  element(meta, 0x0002, 0x0010, "UI", "1.2.840.10008.1.2.1");
  std::string group_length;
  const auto len = static_cast<std::uint32_t>(meta.size());
  element(group_length, 0x0002, 0x0000, "UL", std::string(reinterpret_cast<const char*>(&len), 4));

  std::string d;
  element(d, 0x0008, 0x0008, "CS", s.image_type);
  element(d, 0x0008, 0x0016, "UI", s.sop_class);
  element(d, 0x0008, 0x0018, "UI", sop_instance);
  element(d, 0x0008, 0x0060, "CS", s.modality);
  element(d, 0x0008, 0x103e, "LO", s.description);
  element(d, 0x0020, 0x000e, "UI", s.series_uid);
  element(d, 0x0020, 0x0011, "IS", std::to_string(s.series_number));
  element(d, 0x0020, 0x0013, "IS", std::to_string(s.instance));
  element(d, 0x0020, 0x0032, "DS", ds(s.position.x()) + "\\" + ds(s.position.y()) + "\\" + ds(s.position.z()));
  std::string iop;
  for (int k = 0; k < 3; ++k) iop += ds(s.row_cosine[k]) + "\\";
  for (int k = 0; k < 3; ++k) iop += ds(s.column_cosine[k]) + (k < 2 ? "\\" : "");
  element(d, 0x0020, 0x0037, "DS", iop);
  element(d, 0x0028, 0x0002, "US", us(1));
  element(d, 0x0028, 0x0004, "CS", "MONOCHROME2");
  element(d, 0x0028, 0x0010, "US", us(static_cast<std::uint16_t>(s.rows)));
  element(d, 0x0028, 0x0011, "US", us(static_cast<std::uint16_t>(s.cols)));
  element(d, 0x0028, 0x0030, "DS", ds(s.row_spacing) + "\\" + ds(s.column_spacing));
  element(d, 0x0028, 0x0100, "US", us(16));
  element(d, 0x0028, 0x0101, "US", us(16));
  element(d, 0x0028, 0x0102, "US", us(15));
  element(d, 0x0028, 0x0103, "US", us(1));
  element(d, 0x0028, 0x1052, "DS", ds(s.intercept));
  element(d, 0x0028, 0x1053, "DS", ds(s.slope));
  std::vector<std::int16_t> pixels = s.pixels;
  pixels.resize(static_cast<std::size_t>(s.rows * s.cols), 0);
  element(d, 0x7fe0, 0x0010, "OW", std::string(reinterpret_cast<const char*>(pixels.data()), pixels.size() * 2));

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << std::string(128, '\0') << "DICM" << group_length << meta << d;
}

// Stored pixel value of slice k at (row, col) in the synthetic series below.
std::int16_t pixel_value(int k, int row, int col) { return static_cast<std::int16_t>(1000 + 100 * k + 10 * row + col); }

// A series of `positions.size()` slices on an oblique plane; file names and InstanceNumbers deliberately do not
// follow the positions.
std::vector<DicomSpec> oblique_series(const std::vector<double>& depths_mm) {
  const Eigen::Matrix3d rot = oblique_direction(20.0);
  std::vector<DicomSpec> slices;
  for (std::size_t k = 0; k < depths_mm.size(); ++k) {
    DicomSpec s;
    s.row_cosine = rot.col(0);
    s.column_cosine = rot.col(1);
    s.position = Eigen::Vector3d(-20.0, 10.0, 35.0) + depths_mm[k] * rot.col(2);
    s.instance = static_cast<int>(depths_mm.size() - k) * 7 % 11;
    for (int row = 0; row < s.rows; ++row)
      for (int col = 0; col < s.cols; ++col) s.pixels.push_back(pixel_value(static_cast<int>(k), row, col));
    slices.push_back(s);
  }
  return slices;
}

void write_series(const TempDir& dir, const std::vector<DicomSpec>& slices, const std::string& prefix = "img") {
  // Names run against the slice order: z9.dcm is the first slice.
  for (std::size_t k = 0; k < slices.size(); ++k)
    write_dicom(dir.file(prefix + "_" + std::string(1, static_cast<char>('z' - k)) + ".dcm"), slices[k]);
}

// ---- round trips -----------------------------------------------------------------------------------------

class RoundTrip : public ::testing::TestWithParam<std::string> {};

TEST_P(RoundTrip, KeepsGeometryAndVoxelsOnAnObliqueGrid) {
  TempDir dir;
  const Image<float> image = index_ramp({6, 5, 4}, oblique_direction(20.0));
  const std::string path = dir.file("ramp" + GetParam());
  write_image(image, path);
  const Scan scan = read_scan(path);
  expect_same_grid(scan.image.grid, image.grid, 1e-5);
  EXPECT_TRUE(scan.image.voxels == image.voxels);
  EXPECT_EQ(scan.info.stored_type, PixelType::Float32);
  EXPECT_EQ(scan.info.path, path);
  EXPECT_TRUE(no_warnings_but_intensity(scan.info)) << warnings_of(scan.info);
  EXPECT_EQ(files_in(dir.path()), std::vector<std::string>{"ramp" + GetParam()});  // no temporary file left
}

TEST_P(RoundTrip, KeepsInt16StoredType) {
  TempDir dir;
  Image<float> image = index_ramp({5, 4, 3}, oblique_direction(-35.0));
  for (float& v : image.voxels) v = v * 37.0f - 1024.0f;
  const std::string path = dir.file("ct" + GetParam());
  write_image(image, path, PixelType::Int16);
  const Scan scan = read_scan(path);
  EXPECT_EQ(scan.info.stored_type, PixelType::Int16);
  EXPECT_TRUE(scan.image.voxels == image.voxels);
  expect_same_grid(scan.image.grid, image.grid, 1e-5);
}

TEST_P(RoundTrip, KeepsLabelMaps) {
  TempDir dir;
  const Image<float> ramp_image = index_ramp({4, 3, 5}, oblique_direction(60.0));
  Image<std::uint16_t> labels(ramp_image.grid);
  for (std::size_t n = 0; n < labels.voxels.size(); ++n) labels.voxels[n] = static_cast<std::uint16_t>(n * 1000 % 65536);
  const std::string path = dir.file("labels" + GetParam());
  write_image(labels, path);
  const Image<std::uint16_t> back = read_label_map(path);
  expect_same_grid(back.grid, labels.grid, 1e-5);
  EXPECT_TRUE(back.voxels == labels.voxels);
}

INSTANTIATE_TEST_SUITE_P(Formats, RoundTrip, ::testing::Values(".nii.gz", ".nii", ".nrrd", ".mha"),
                         [](const auto& info) { return std::string(info.param == ".nii.gz" ? "nii_gz" : info.param.substr(1)); });

TEST(WriteImage, Uint8LabelsReadBackAsLabels) {
  TempDir dir;
  Image<std::uint8_t> labels(index_ramp({3, 3, 3}, Eigen::Matrix3d::Identity()).grid);
  for (std::size_t n = 0; n < labels.voxels.size(); ++n) labels.voxels[n] = static_cast<std::uint8_t>(n % 4);
  write_image(labels, dir.file("l.nii.gz"));
  const Scan scan = read_scan(dir.file("l.nii.gz"));
  EXPECT_EQ(scan.info.stored_type, PixelType::UInt8);
  const Image<std::uint16_t> back = read_label_map(dir.file("l.nii.gz"));
  for (std::size_t n = 0; n < labels.voxels.size(); ++n) EXPECT_EQ(back.voxels[n], labels.voxels[n]);
}

TEST(WriteImage, IntegerTypesRoundAndClamp) {
  TempDir dir;
  Image<float> image(index_ramp({4, 1, 1}, Eigen::Matrix3d::Identity()).grid);
  image.voxels = {-300.0f, 2.6f, 254.5f, 1000.0f};
  write_image(image, dir.file("u8.nii"), PixelType::UInt8);
  const Scan scan = read_scan(dir.file("u8.nii"));
  EXPECT_EQ(scan.image.voxels, (std::vector<float>{0.0f, 3.0f, 254.0f, 255.0f}));
}

TEST(WriteImage, NiftiCarriesQformAndSformOfTheGrid) {
  TempDir dir;
  const Image<float> image = index_ramp({3, 4, 5}, oblique_direction(25.0));
  write_image(image, dir.file("a.nii"));
  const std::vector<char> h = read_bytes(dir.file("a.nii"));
  ASSERT_GE(h.size(), 352u);
  EXPECT_GT(get<short>(h, 252), 0) << "qform_code";
  EXPECT_GT(get<short>(h, 254), 0) << "sform_code";
  // sform rows are RAS: LPS with x and y negated.
  const Eigen::Matrix3d m = image.grid.index_to_world_linear();
  for (int r = 0; r < 3; ++r) {
    const double flip = r < 2 ? -1.0 : 1.0;
    for (int c = 0; c < 3; ++c)
      EXPECT_NEAR(get<float>(h, 280 + 16 * static_cast<std::size_t>(r) + 4 * static_cast<std::size_t>(c)), flip * m(r, c), 1e-5);
    EXPECT_NEAR(get<float>(h, 280 + 16 * static_cast<std::size_t>(r) + 12), flip * image.grid.origin[r], 1e-4);
  }
  // The quaternion (qform) gives the same rotation: b, c, d and qfac.
  const double b = get<float>(h, 256), c = get<float>(h, 260), d = get<float>(h, 264);
  const double a = std::sqrt(std::max(0.0, 1.0 - (b * b + c * c + d * d)));
  Eigen::Matrix3d q;
  q << a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c),  //
      2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b),   //
      2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b;
  const double qfac = get<float>(h, 76) < 0 ? -1.0 : 1.0;
  q.col(2) *= qfac;
  const Eigen::Matrix3d ras_direction = Eigen::Vector3d(-1, -1, 1).asDiagonal() * image.grid.direction;
  EXPECT_LT((q - ras_direction).cwiseAbs().maxCoeff(), 1e-5);
}

TEST(WriteImage, OverwritesAtomicallyAndLeavesNoTemporaryFile) {
  TempDir dir;
  const std::string path = dir.file("scan.nii.gz");
  write_image(index_ramp({2, 2, 2}, Eigen::Matrix3d::Identity()), path);
  Image<float> bigger = index_ramp({3, 3, 3}, Eigen::Matrix3d::Identity());
  write_image(bigger, path);
  EXPECT_EQ(read_scan(path).image.grid.size[0], 3);
  EXPECT_EQ(files_in(dir.path()), std::vector<std::string>{"scan.nii.gz"});
}

TEST(MultiChannel, RoundTripsAsA4dNifti) {
  TempDir dir;
  const Image<float> base = index_ramp({4, 3, 2}, oblique_direction(10.0));
  MultiChannelImage<Scanner> image(base.grid, 3);
  for (std::size_t n = 0; n < image.data.size(); ++n) image.data[n] = static_cast<float>(n) * 0.25f;
  write_multichannel(image, dir.file("atlas.nii.gz"));
  const MultiChannelImage<Scanner> back = read_multichannel(dir.file("atlas.nii.gz"));
  EXPECT_EQ(back.channels, 3);
  expect_same_grid(back.grid, image.grid, 1e-5);
  EXPECT_TRUE(back.data == image.data);
  // As a scan it is a 4D image with 3 volumes.
  expect_error([&] { read_scan(dir.file("atlas.nii.gz")); }, ErrorCode::UnsupportedGeometry, {"4D with 3 volumes"});
}

// ---- refusals --------------------------------------------------------------------------------------------

TEST(ReadScan, MissingFileIsUnreadable) {
  TempDir dir;
  const std::string path = dir.file("nothing.nii.gz");
  expect_error([&] { read_scan(path); }, ErrorCode::UnreadableInput, {path + ": no such file"});
  expect_error([&] { read_label_map(path); }, ErrorCode::UnreadableInput, {path});
  expect_error([&] { read_multichannel(path); }, ErrorCode::UnreadableInput, {path});
}

TEST(ReadScan, TextFileNamedNiftiIsUnreadable) {
  TempDir dir;
  const std::string path = dir.file("fake.nii.gz");
  write_text_file(path, "this is not an image\n");
  expect_error([&] { read_scan(path); }, ErrorCode::UnreadableInput, {path});
}

TEST(ReadScan, TruncatedNiftiIsUnreadable) {
  TempDir dir;
  for (const std::string name : {"t.nii.gz", "t.nii"}) {
    const std::string path = dir.file(name);
    write_image(index_ramp({20, 20, 20}, Eigen::Matrix3d::Identity()), path);
    std::vector<char> bytes = read_bytes(path);
    bytes.resize(bytes.size() / 2);
    write_bytes(path, bytes);
    expect_error([&] { read_scan(path); }, ErrorCode::UnreadableInput, {path});
  }
}

TEST(ReadScan, TruncatedNrrdAndMetaImageAreUnreadable) {
  TempDir dir;
  for (const std::string name : {"t.nrrd", "t.mha"}) {
    const std::string path = dir.file(name);
    write_image(index_ramp({20, 20, 20}, Eigen::Matrix3d::Identity()), path);
    std::vector<char> bytes = read_bytes(path);
    bytes.resize(bytes.size() * 2 / 3);
    write_bytes(path, bytes);
    expect_error([&] { read_scan(path); }, ErrorCode::UnreadableInput, {path});
  }
}

TEST(ReadScan, CorruptCompressedNiftiIsUnreadable) {
  TempDir dir;
  const std::string path = dir.file("c.nii.gz");
  write_image(index_ramp({20, 20, 20}, Eigen::Matrix3d::Identity()), path);
  std::vector<char> bytes = read_bytes(path);
  for (std::size_t n = bytes.size() / 3; n < bytes.size() - 8; n += 7) bytes[n] = static_cast<char>(bytes[n] ^ 0x5a);
  write_bytes(path, bytes);
  expect_error([&] { read_scan(path); }, ErrorCode::UnreadableInput, {path});
}

TEST(ReadScan, TwoDimensionalImageIsUnsupported) {
  TempDir dir;
  NiftiSpec spec;
  spec.dims = {4, 3};
  spec.data = float_bytes(ramp(12));
  const std::string path = dir.file("flat.nii");
  write_nifti(path, spec);
  expect_error([&] { read_scan(path); }, ErrorCode::UnsupportedGeometry, {path + ": is 2D"});
}

TEST(ReadScan, FourDimensionalImageWithSeveralVolumesIsUnsupported) {
  TempDir dir;
  NiftiSpec spec;
  spec.dims = {4, 3, 2, 3};
  spec.data = float_bytes(ramp(72));
  const std::string path = dir.file("fmri.nii");
  write_nifti(path, spec);
  expect_error([&] { read_scan(path); }, ErrorCode::UnsupportedGeometry, {path + ": is 4D with 3 volumes"});
}

TEST(ReadScan, FourDimensionalImageWithOneVolumeIsRead) {
  TempDir dir;
  NiftiSpec spec;
  spec.dims = {4, 3, 2, 1};
  spec.data = float_bytes(ramp(24));
  write_nifti(dir.file("one.nii"), spec);
  const Scan scan = read_scan(dir.file("one.nii"));
  EXPECT_EQ(scan.image.grid.size[2], 2);
  EXPECT_EQ(scan.image.voxels, ramp(24));
}

TEST(ReadScan, OneSliceVolumeIsRead) {
  TempDir dir;
  NiftiSpec spec;
  spec.dims = {4, 3, 1};
  spec.data = float_bytes(ramp(12));
  write_nifti(dir.file("slice.nii"), spec);
  EXPECT_EQ(read_scan(dir.file("slice.nii")).image.grid.size[2], 1);
}

TEST(ReadScan, ZeroOrNanSpacingIsUnsupported) {
  TempDir dir;
  const float bad_values[] = {0.0f, -1.0f, std::numeric_limits<float>::quiet_NaN()};
  for (float bad : bad_values) {
    const std::string path = dir.file("bad.nii");
    write_image(index_ramp({4, 3, 2}, Eigen::Matrix3d::Identity()), path);
    std::vector<char> bytes = read_bytes(path);
    put<float>(bytes, 76 + 4 * 2, bad);  // pixdim[2]: spacing along j
    write_bytes(path, bytes);
    expect_error([&] { read_scan(path); }, ErrorCode::UnsupportedGeometry, {path});
  }
}

TEST(ReadScan, ShearedSformIsUnsupported) {
  TempDir dir;
  NiftiSpec spec;
  spec.srow = {{{1, 0.4f, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}}};
  spec.data = float_bytes(ramp(24));
  const std::string path = dir.file("shear.nii");
  write_nifti(path, spec);
  expect_error([&] { read_scan(path); }, ErrorCode::UnsupportedGeometry, {path});
}

TEST(ReadScan, ImplausibleDeclaredSizeIsRefusedBeforeAllocating) {
  TempDir dir;
  NiftiSpec spec;
  spec.dims = {30000, 30000, 30000};
  spec.data = float_bytes(ramp(8));
  const std::string path = dir.file("huge.nii");
  write_nifti(path, spec);
  expect_error([&] { read_scan(path); }, ErrorCode::UnreadableInput, {path});
}

TEST(ReadScan, NanVoxelsAreReplacedByTheMinimumWithAWarning) {
  TempDir dir;
  NiftiSpec spec;
  std::vector<float> v = ramp(24);
  for (float& x : v) x -= 5.0f;
  v[3] = std::numeric_limits<float>::quiet_NaN();
  v[7] = std::numeric_limits<float>::infinity();
  spec.data = float_bytes(v);
  write_nifti(dir.file("nan.nii"), spec);
  const Scan scan = read_scan(dir.file("nan.nii"));
  EXPECT_EQ(scan.image.voxels[3], -5.0f);
  EXPECT_EQ(scan.image.voxels[7], -5.0f);
  EXPECT_EQ(scan.image.voxels[8], 3.0f);
  EXPECT_TRUE(any_warning_contains(scan.info, "2 NaN/infinite")) << warnings_of(scan.info);
  // the check read_scan keeps (ScanInfo::intensities) is the one of the voxels after the replacement
  ASSERT_TRUE(scan.info.intensities.has_value());
  const IntensityCheck again = check_ct_intensities(scan.image);
  EXPECT_EQ(scan.info.intensities->min_value, again.min_value);
  EXPECT_EQ(scan.info.intensities->max_value, again.max_value);
  EXPECT_EQ(scan.info.intensities->body_fraction, again.body_fraction);
  EXPECT_EQ(scan.info.intensities->air_fraction, again.air_fraction);
  EXPECT_EQ(scan.info.intensities->warning, again.warning);
  EXPECT_EQ(scan.info.intensities->min_value, -5.0f);
}

TEST(ReadScan, NanVoxelsInOtherFormatsAreReplacedToo) {
  TempDir dir;
  Image<float> image = index_ramp({3, 2, 2}, Eigen::Matrix3d::Identity());
  image.voxels[5] = std::numeric_limits<float>::quiet_NaN();
  for (const std::string name : {"n.nrrd", "n.mha", "n.nii.gz"}) {
    write_image(image, dir.file(name));
    const Scan scan = read_scan(dir.file(name));
    EXPECT_EQ(scan.image.voxels[5], 0.0f) << name;
    EXPECT_TRUE(any_warning_contains(scan.info, "1 NaN/infinite")) << name << warnings_of(scan.info);
  }
}

TEST(ReadScan, BigEndianNiftiIsRead) {
  TempDir dir;
  NiftiSpec spec;
  spec.big_endian = true;
  spec.pixdim = {0.5f, 0.75f, 2.0f};
  spec.srow = {{{-0.5f, 0, 0, 10}, {0, 0.75f, 0, -20}, {0, 0, 2.0f, 30}}};
  spec.data = float_bytes(ramp(24));
  write_nifti(dir.file("be.nii"), spec);
  const Scan scan = read_scan(dir.file("be.nii"));
  EXPECT_EQ(scan.image.voxels, ramp(24));
  EXPECT_NEAR(scan.image.grid.spacing[1], 0.75, 1e-6);
  // RAS (10, -20, 30) is LPS (-10, 20, 30); RAS -x is LPS +x.
  EXPECT_NEAR(scan.image.grid.origin[0], -10.0, 1e-5);
  EXPECT_NEAR(scan.image.grid.origin[1], 20.0, 1e-5);
  EXPECT_NEAR(scan.image.grid.direction(0, 0), 1.0, 1e-6);
  EXPECT_NEAR(scan.image.grid.direction(1, 1), -1.0, 1e-6);
}

TEST(ReadScan, NiftiScalingGivesFloatStoredTypeOnlyWhenValuesAreFractional) {
  TempDir dir;
  std::vector<std::int16_t> raw(24);
  for (std::size_t n = 0; n < raw.size(); ++n) raw[n] = static_cast<std::int16_t>(n);
  NiftiSpec spec;
  spec.datatype = 4;
  spec.data.resize(raw.size() * 2);
  std::memcpy(spec.data.data(), raw.data(), spec.data.size());

  spec.slope = 1.0f;
  spec.inter = -1024.0f;
  write_nifti(dir.file("hu.nii"), spec);
  const Scan hu = read_scan(dir.file("hu.nii"));
  EXPECT_EQ(hu.info.stored_type, PixelType::Int16);
  EXPECT_EQ(hu.image.voxels[5], -1019.0f);

  spec.slope = 0.5f;
  spec.inter = 0.0f;
  write_nifti(dir.file("half.nii"), spec);
  const Scan half = read_scan(dir.file("half.nii"));
  EXPECT_EQ(half.info.stored_type, PixelType::Float32);
  EXPECT_EQ(half.image.voxels[5], 2.5f);

  spec.slope = 3000.0f;
  write_nifti(dir.file("wide.nii"), spec);
  EXPECT_EQ(read_scan(dir.file("wide.nii")).info.stored_type, PixelType::Int32);
}

TEST(ReadLabelMap, RefusesNonIntegerAndOutOfRangeValues) {
  TempDir dir;
  Image<float> image = index_ramp({3, 2, 2}, Eigen::Matrix3d::Identity());
  image.voxels[4] = 2.5f;
  write_image(image, dir.file("soft.nii.gz"));
  expect_error([&] { read_label_map(dir.file("soft.nii.gz")); }, ErrorCode::UnreadableInput,
               {dir.file("soft.nii.gz") + ": voxel (1, 1, 0) holds 2.5"});
  image.voxels[4] = -1.0f;
  write_image(image, dir.file("neg.nii.gz"));
  expect_error([&] { read_label_map(dir.file("neg.nii.gz")); }, ErrorCode::UnreadableInput, {"outside 0..65535"});
  image.voxels[4] = 70000.0f;
  write_image(image, dir.file("big.nii.gz"), PixelType::Int32);
  expect_error([&] { read_label_map(dir.file("big.nii.gz")); }, ErrorCode::UnreadableInput, {"outside 0..65535"});
}

TEST(ReadLabelMap, RefusesAFolder) {
  TempDir dir;
  expect_error([&] { read_label_map(dir.path()); }, ErrorCode::UnreadableInput, {dir.path() + ": is a folder"});
}

// ---- output errors ---------------------------------------------------------------------------------------

TEST(WriteImage, MissingOutputFolderIsNotWritableAndLeavesNothing) {
  TempDir dir;
  const std::string path = dir.file("missing/sub/out.nii.gz");
  expect_error([&] { write_image(index_ramp({2, 2, 2}, Eigen::Matrix3d::Identity()), path); },
               ErrorCode::OutputNotWritable, {path});
  EXPECT_TRUE(files_in(dir.path()).empty());
}

TEST(WriteImage, OutputFolderThatIsAFileIsNotWritable) {
  TempDir dir;
  write_text_file(dir.file("file"), "x");
  const std::string path = dir.file("file/out.nii.gz");
  expect_error([&] { write_image(index_ramp({2, 2, 2}, Eigen::Matrix3d::Identity()), path); },
               ErrorCode::OutputNotWritable, {path});
  EXPECT_EQ(files_in(dir.path()), std::vector<std::string>{"file"});
}

TEST(WriteImage, TargetThatIsAFolderIsNotWritableAndLeavesNoTemporaryFile) {
  TempDir dir;
  fs::create_directory(dir.file("taken.nii.gz"));
  const std::string path = dir.file("taken.nii.gz");
  expect_error([&] { write_image(index_ramp({2, 2, 2}, Eigen::Matrix3d::Identity()), path); },
               ErrorCode::OutputNotWritable, {path});
  EXPECT_EQ(files_in(dir.path()), std::vector<std::string>{"taken.nii.gz"});
}

TEST(WriteImage, ReadOnlyFolderIsNotWritable) {
  if (::geteuid() == 0) GTEST_SKIP() << "running as root: permissions do not stop writes";
  TempDir dir;
  fs::create_directory(dir.file("ro"));
  fs::permissions(dir.file("ro"), fs::perms::owner_read | fs::perms::owner_exec);
  const std::string path = dir.file("ro/out.nii.gz");
  expect_error([&] { write_image(index_ramp({2, 2, 2}, Eigen::Matrix3d::Identity()), path); },
               ErrorCode::OutputNotWritable, {path});
  fs::permissions(dir.file("ro"), fs::perms::owner_all);
  EXPECT_TRUE(files_in(dir.file("ro")).empty());
}

TEST(WriteImage, UnknownExtensionIsNotWritable) {
  TempDir dir;
  const std::string path = dir.file("out.png");
  expect_error([&] { write_image(index_ramp({2, 2, 2}, Eigen::Matrix3d::Identity()), path); },
               ErrorCode::OutputNotWritable, {path});
  EXPECT_TRUE(files_in(dir.path()).empty());
}

// ---- text files and names --------------------------------------------------------------------------------

TEST(TextFile, RoundTripsAndOverwrites) {
  TempDir dir;
  const std::string path = dir.file("a.json");
  write_text_file(path, "{\"a\": 1}\n");
  write_text_file(path, std::string("binary\0safe", 11));
  EXPECT_EQ(read_text_file(path), std::string("binary\0safe", 11));
  EXPECT_EQ(files_in(dir.path()), std::vector<std::string>{"a.json"});
}

TEST(TextFile, ErrorsNameThePath) {
  TempDir dir;
  expect_error([&] { read_text_file(dir.file("none.txt")); }, ErrorCode::UnreadableInput, {dir.file("none.txt")});
  expect_error([&] { write_text_file(dir.file("no/dir.txt"), "x"); }, ErrorCode::OutputNotWritable,
               {dir.file("no/dir.txt")});
  EXPECT_TRUE(files_in(dir.path()).empty());
}

TEST(Names, ImageExtensionsAndStems) {
  EXPECT_TRUE(has_image_extension("a/b/scan.nii.gz"));
  EXPECT_TRUE(has_image_extension("scan.NII"));
  EXPECT_TRUE(has_image_extension("x.nrrd"));
  EXPECT_TRUE(has_image_extension("x.nhdr"));
  EXPECT_TRUE(has_image_extension("x.mha"));
  EXPECT_TRUE(has_image_extension("x.mhd"));
  EXPECT_FALSE(has_image_extension("x.gz"));
  EXPECT_FALSE(has_image_extension("dicom_folder"));
  EXPECT_EQ(image_stem("a/b/scan.nii.gz"), "scan");
  EXPECT_EQ(image_stem("scan.v2.nrrd"), "scan.v2");
  EXPECT_EQ(image_stem("/data/series_12/"), "series_12");
  EXPECT_EQ(image_stem("1.2.840.5"), "1.2.840.5");
}

TEST(Names, ImageIoVersionsNameItk) { EXPECT_EQ(image_io_versions().rfind("ITK 5.", 0), 0u) << image_io_versions(); }

// ---- DICOM series ----------------------------------------------------------------------------------------

TEST(Dicom, SlicesAreOrderedAlongTheNormalAndEveryPixelKeepsItsWorldPosition) {
  TempDir dir;
  const std::vector<DicomSpec> slices = oblique_series({0.0, 2.5, 5.0, 7.5});
  write_series(dir, slices);
  const Scan scan = read_scan(dir.path());
  EXPECT_EQ(scan.info.format, "dicom");
  EXPECT_EQ(scan.info.slices_read, 4);
  EXPECT_EQ(scan.info.series_uid, slices[0].series_uid);
  EXPECT_EQ(scan.info.series_description, "synthetic");
  EXPECT_EQ(scan.info.stored_type, PixelType::Int16);
  EXPECT_TRUE(no_warnings_but_intensity(scan.info)) << warnings_of(scan.info);
  const Grid<Scanner>& g = scan.image.grid;
  EXPECT_EQ(g.size[0], 5);
  EXPECT_EQ(g.size[1], 4);
  EXPECT_EQ(g.size[2], 4);
  EXPECT_NEAR(g.spacing[0], 0.7, 1e-9);
  EXPECT_NEAR(g.spacing[1], 0.5, 1e-9);
  EXPECT_NEAR(g.spacing[2], 2.5, 1e-6);
  for (std::size_t k = 0; k < slices.size(); ++k)
    for (int row = 0; row < slices[k].rows; ++row)
      for (int col = 0; col < slices[k].cols; ++col) {
        const Eigen::Vector3d world = slices[k].position + col * slices[k].column_spacing * slices[k].row_cosine +
                                      row * slices[k].row_spacing * slices[k].column_cosine;
        const Index3 idx = g.nearest_index(Point<Scanner>{world});
        ASSERT_TRUE(g.contains(idx)) << idx;
        EXPECT_LT((g.to_world(idx).mm - world).norm(), 1e-4);
        EXPECT_EQ(scan.image.at(idx), pixel_value(static_cast<int>(k), row, col) - 1024.0f) << idx;
      }
}

// Files without the 128-byte preamble and "DICM" (GDCM reads those; the guard before it walks them from offset 0):
// the same series, each file stripped of its first 132 bytes, reads to the same grid and voxels.
TEST(Dicom, PreambleLessFilesReadLikeTheFilesWithTheirPreamble) {
  TempDir with, without;
  const std::vector<DicomSpec> slices = oblique_series({0.0, 2.5, 5.0});
  write_series(with, slices);
  for (const std::string& name : files_in(with.path())) {
    std::ifstream in(with.file(name), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_EQ(bytes.substr(128, 4), "DICM");
    std::ofstream(without.file(name), std::ios::binary) << bytes.substr(132);
  }
  const Scan a = read_scan(with.path()), b = read_scan(without.path());
  EXPECT_EQ(b.info.slices_read, 3);
  expect_same_grid(b.image.grid, a.image.grid, 1e-9);
  EXPECT_TRUE(b.image.voxels == a.image.voxels);
  // One such file alone is read as a single slice (2D: refused for that reason, not as unreadable).
  expect_error([&] { (void)read_scan(without.file(files_in(without.path()).front())); },
               ErrorCode::UnsupportedGeometry, {"2D"});
}

TEST(Dicom, DuplicateFileIsDroppedWithAWarning) {
  TempDir dir;
  const std::vector<DicomSpec> slices = oblique_series({0.0, 2.0, 4.0});
  write_series(dir, slices);
  write_dicom(dir.file("copy_of_middle.dcm"), slices[1]);
  const Scan scan = read_scan(dir.path());
  EXPECT_EQ(scan.image.grid.size[2], 3);
  EXPECT_EQ(scan.info.slices_read, 3);
  EXPECT_TRUE(any_warning_contains(scan.info, "duplicate")) << warnings_of(scan.info);
  EXPECT_TRUE(any_warning_contains(scan.info, "img_y.dcm (same as copy_of_middle.dcm)")) << warnings_of(scan.info);
}

TEST(Dicom, MissingSliceIsInterpolatedWithAWarning) {
  TempDir dir;
  write_series(dir, oblique_series({0.0, 2.0, 4.0, 8.0, 10.0}));
  const Scan scan = read_scan(dir.path());
  EXPECT_TRUE(any_warning_contains(scan.info, "missing slice")) << warnings_of(scan.info);
  EXPECT_TRUE(any_warning_contains(scan.info, "uneven")) << warnings_of(scan.info);
  ASSERT_EQ(scan.image.grid.size[2], 6);
  EXPECT_NEAR(scan.image.grid.spacing[2], 2.0, 1e-6);
  // Slice k=3 (6 mm) lies halfway between the slices at 4 mm (index 2) and 8 mm (index 3).
  const int rows = 4;
  for (std::int64_t j = 0; j < 4; ++j)
    for (std::int64_t i = 0; i < 5; ++i) {
      const int row = rows - 1 - static_cast<int>(j), col = static_cast<int>(i);
      EXPECT_FLOAT_EQ(scan.image.at(Index3{{i, j, 3}}),
                      0.5f * (pixel_value(2, row, col) + pixel_value(3, row, col)) - 1024.0f);
      EXPECT_EQ(scan.image.at(Index3{{i, j, 4}}), pixel_value(3, row, col) - 1024.0f);
    }
}

TEST(Dicom, GantryTiltIsResampledOntoAnOrthogonalGridKeepingWorldPositions) {
  TempDir dir;
  const double tilt = 15.0 * 3.14159265358979323846 / 180.0;
  // Values are a linear function of the world position, which linear resampling reproduces exactly.
  auto field = [](const Eigen::Vector3d& w) { return 2.0 * w.x() - 3.0 * w.y() + 5.0 * w.z(); };
  std::vector<DicomSpec> slices;
  for (int k = 0; k < 5; ++k) {
    DicomSpec s;
    s.rows = 6;
    s.cols = 6;
    s.row_spacing = s.column_spacing = 1.0;
    s.column_cosine = Eigen::Vector3d(0.0, std::cos(tilt), -std::sin(tilt));
    s.position = Eigen::Vector3d(-2.5, -2.5, 3.0 * k);  // the table moves along z, the slices are tilted
    s.instance = k + 1;
    s.slope = 0.01;
    s.intercept = 0.0;
    for (int row = 0; row < s.rows; ++row)
      for (int col = 0; col < s.cols; ++col) {
        const Eigen::Vector3d w = s.position + col * s.row_cosine + row * s.column_cosine;
        s.pixels.push_back(static_cast<std::int16_t>(std::lround(field(w) / 0.01)));
      }
    slices.push_back(s);
  }
  write_series(dir, slices);
  const Scan scan = read_scan(dir.path());
  EXPECT_TRUE(any_warning_contains(scan.info, "gantry tilt 15.0")) << warnings_of(scan.info);
  const Grid<Scanner>& g = scan.image.grid;
  EXPECT_LT((g.direction.transpose() * g.direction - Eigen::Matrix3d::Identity()).cwiseAbs().maxCoeff(), 1e-9);
  EXPECT_NEAR(g.spacing[2], 3.0 * std::cos(tilt), 1e-4);
  EXPECT_EQ(scan.info.stored_type, PixelType::Float32);
  float pad = *std::min_element(scan.image.voxels.begin(), scan.image.voxels.end());
  int inside = 0;
  for (std::int64_t k = 0; k < g.size[2]; ++k)
    for (std::int64_t j = 0; j < g.size[1]; ++j)
      for (std::int64_t i = 0; i < g.size[0]; ++i) {
        const Index3 idx{{i, j, k}};
        if (scan.image.at(idx) == pad) continue;
        ++inside;
        EXPECT_NEAR(scan.image.at(idx), field(g.to_world(idx).mm), 0.02) << idx;
      }
  EXPECT_GT(inside, 60);
}

TEST(Dicom, LocalizersSecondaryCapturesAndOtherFilesAreIgnored) {
  TempDir dir;
  write_series(dir, oblique_series({0.0, 2.0, 4.0}), "ct");
  // A secondary capture series with more slices than the CT, and a localizer.
  std::vector<DicomSpec> capture = oblique_series({0.0, 1.0, 2.0, 3.0, 4.0});
  for (DicomSpec& s : capture) {
    s.sop_class = "1.2.840.10008.5.1.4.1.1.7";
    s.series_uid = "1.2.826.0.1.3680043.2.1125.7";
  }
  write_series(dir, capture, "sc");
  DicomSpec localizer = oblique_series({0.0})[0];
  localizer.image_type = "ORIGINAL\\PRIMARY\\LOCALIZER";
  localizer.series_uid = "1.2.826.0.1.3680043.2.1125.9";
  localizer.column_cosine = -localizer.column_cosine;
  write_dicom(dir.file("scout.dcm"), localizer);
  write_text_file(dir.file("README.txt"), "exported by a PACS\n");
  write_text_file(dir.file("DICOMDIR"), std::string(300, '\0'));

  const Scan scan = read_scan(dir.path());
  EXPECT_EQ(scan.info.slices_read, 3);
  EXPECT_EQ(scan.info.series_uid, "1.2.826.0.1.3680043.2.1125.1");
  EXPECT_TRUE(any_warning_contains(scan.info, "ignored 1 localizer")) << warnings_of(scan.info);
  EXPECT_TRUE(any_warning_contains(scan.info, "ignored 5 secondary capture")) << warnings_of(scan.info);
}

TEST(Dicom, TheSeriesWithTheMostSlicesWins) {
  TempDir dir;
  write_series(dir, oblique_series({0.0, 2.0, 4.0}), "a");
  std::vector<DicomSpec> longer = oblique_series({0.0, 1.0, 2.0, 3.0});
  for (DicomSpec& s : longer) {
    s.series_uid = "1.2.826.0.1.3680043.2.1125.2";
    s.description = "thin";
  }
  write_series(dir, longer, "b");
  const Scan scan = read_scan(dir.path());
  EXPECT_EQ(scan.info.series_description, "thin");
  EXPECT_EQ(scan.info.slices_read, 4);
  EXPECT_TRUE(any_warning_contains(scan.info, "2 image stacks")) << warnings_of(scan.info);
}

TEST(Dicom, SingleSliceIsTwoDimensional) {
  TempDir dir;
  write_series(dir, oblique_series({0.0}));
  expect_error([&] { read_scan(dir.path()); }, ErrorCode::UnsupportedGeometry, {dir.path()});
  // One DICOM file given as a file: the same answer.
  const std::string file = dir.file(files_in(dir.path()).front());
  expect_error([&] { read_scan(file); }, ErrorCode::UnsupportedGeometry, {file});
}

TEST(Dicom, FolderWithoutDicomIsUnreadable) {
  TempDir dir;
  expect_error([&] { read_scan(dir.path()); }, ErrorCode::UnreadableInput, {dir.path()});
  write_text_file(dir.file("notes.txt"), "nothing here\n");
  expect_error([&] { read_scan(dir.path()); }, ErrorCode::UnreadableInput, {dir.path() + ": no DICOM image found"});
}

TEST(Dicom, FolderWithOnlyNonCtImagesIsUnreadable) {
  TempDir dir;
  std::vector<DicomSpec> mr = oblique_series({0.0, 2.0, 4.0});
  for (DicomSpec& s : mr) s.modality = "MR";
  write_series(dir, mr);
  expect_error([&] { read_scan(dir.path()); }, ErrorCode::UnreadableInput, {"no CT series"});
}

// ITK 5.2 builds its list of IO factories on the first object it creates, and that is not thread-safe: two threads
// reading their first image at once (the batch reads the next scan while the atlas loads) aborted the process in
// itk::ObjectFactoryBase::RegisterInternal. ctest runs every test in a process of its own, so these are the process's
// first reads; the files are written by hand (NRRD), not through ITK, which would set the factories up first.
TEST(ReadScan, ConcurrentFirstReadsInAProcessDoNotRace) {
  TempDir dir;
  const std::string path = dir.file("tiny.nrrd");
  {
    std::ofstream out(path, std::ios::binary);
    out << "NRRD0004\ntype: short\ndimension: 3\nsizes: 4 3 2\nspace: left-posterior-superior\n"
           "space directions: (1,0,0) (0,2,0) (0,0,3)\nspace origin: (10,20,30)\nendian: little\nencoding: raw\n\n";
    for (std::int16_t v = 0; v < 24; ++v) out.write(reinterpret_cast<const char*>(&v), sizeof v);
  }
  constexpr int kThreads = 8;
  std::atomic<int> waiting{kThreads};
  std::vector<float> last_voxel(kThreads, -1.0f);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      waiting.fetch_sub(1);
      while (waiting.load() > 0) std::this_thread::yield();  // all start reading at the same moment
      last_voxel[static_cast<std::size_t>(t)] = read_scan(path).image.at(Index3{{3, 2, 1}});
    });
  for (std::thread& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(last_voxel[static_cast<std::size_t>(t)], 23.0f) << "thread " << t;
}

}  // namespace
}  // namespace ctarr::test
