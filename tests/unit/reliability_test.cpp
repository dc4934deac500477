// Issue 7, library level: the intensity plausibility checks, and regression tests for what fuzzing and review of
// the hand-written parsers found (region JSON, crop record JSON, model card, the own NIfTI reader).
#include "ctarr/classes.hpp"
#include "ctarr/io.hpp"
#include "ctarr/network.hpp"
#include "ctarr/preprocess.hpp"
#include "ctarr/record.hpp"
#include "ctarr/regions.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace ctarr::test {
namespace {

namespace fs = std::filesystem;

Image<float> filled(float value) {
  Grid<Scanner> g;
  g.size = {{10, 10, 10}};
  g.spacing = Eigen::Vector3d::Constant(2.0);
  return Image<float>(g, value);
}

// ---- intensities ------------------------------------------------------------------------------------------------

TEST(Intensities, CtWithAirAndBodyPassesSilently) {
  Image<float> ct = filled(-1000.0f);
  for (std::size_t n = 0; n < 500; ++n) ct.voxels[n] = 40.0f;
  const IntensityCheck c = check_ct_intensities(ct);
  EXPECT_DOUBLE_EQ(c.body_fraction, 0.5);
  EXPECT_DOUBLE_EQ(c.air_fraction, 0.5);
  EXPECT_TRUE(c.warning.empty()) << c.warning;
  Scan scan{ct, {}};
  EXPECT_NO_THROW(require_body(scan));
}

TEST(Intensities, NoAirBelowMinus500WarnsThatItIsNotHu) {
  Image<float> mr = filled(0.0f);
  for (std::size_t n = 0; n < mr.voxels.size(); ++n) mr.voxels[n] = static_cast<float>(n % 800);
  const IntensityCheck c = check_ct_intensities(mr);
  EXPECT_NE(c.warning.find("Hounsfield"), std::string::npos) << c.warning;
  EXPECT_NE(c.warning.find("MR"), std::string::npos) << c.warning;
}

TEST(Intensities, ReadScanCarriesTheWarning) {
  TempDir dir;
  write_image(filled(100.0f), dir.file("mr.nii.gz"));
  const Scan scan = read_scan(dir.file("mr.nii.gz"));
  ASSERT_EQ(scan.info.warnings.size(), 1u);
  EXPECT_NE(scan.info.warnings[0].find("Hounsfield"), std::string::npos);
}

TEST(Intensities, AllAirIsNoBodyAFitFailureNamingTheFile) {
  Scan scan{filled(-1000.0f), {}};
  scan.info.path = "air.nii.gz";
  expect_error([&] { require_body(scan); }, ErrorCode::FitFailed, {"air.nii.gz", "no body in the scan"});
  // Just below 1 % of the voxels in the body: still no body; at 1 %: accepted.
  for (std::size_t n = 0; n < 9; ++n) scan.image.voxels[n] = 40.0f;
  expect_error([&] { require_body(scan); }, ErrorCode::FitFailed, {"air.nii.gz", "no body in the scan"});
  scan.image.voxels[9] = 40.0f;
  EXPECT_NO_THROW(require_body(scan));
}

// ---- region JSON -------------------------------------------------------------------------------------------------

void expect_region_refused(const std::string& text, const std::string& expected) {
  TempDir dir;
  write_text_file(dir.file("r.json"), text);
  expect_error([&] { load_region(dir.file("r.json")); }, ErrorCode::UnreadableInput, {dir.file("r.json"), expected});
}

TEST(RegionJson, NamesThatAreNotPlainFileNamePartsAreRefused) {
  const std::string boxes = R"(,"boxes":[{"lower":[0,0,0],"upper":[1,1,1]}]})";
  for (const std::string name : {"../escape", "a/b", "", ".hidden", "sp ace", "tab\\t"})
    expect_region_refused(R"({"name":")" + name + "\"" + boxes, "name");
  TempDir dir;
  write_text_file(dir.file("ok.json"), R"({"name":"liver_2.v-1")" + boxes);
  EXPECT_EQ(load_region(dir.file("ok.json")).name, "liver_2.v-1");
}

TEST(RegionJson, AbsurdCoordinatesAndMarginsAreRefused) {
  expect_region_refused(R"({"name":"x","boxes":[{"lower":[0,0,-1e300],"upper":[1,1,1]}]})",
                        "boxes[0].lower: expected finite numbers within +-1e5");
  expect_region_refused(R"({"name":"x","margin_mm":1e12,"boxes":[{"lower":[0,0,0],"upper":[1,1,1]}]})", "margin_mm");
  expect_region_refused(R"({"name":"x","margin_mm":"ten","boxes":[{"lower":[0,0,0],"upper":[1,1,1]}]})", "malformed");
  expect_region_refused(R"({"name":"x","boxes":[[0,0,0]]})", "malformed");
  expect_region_refused(R"({"name":7,"boxes":[{"lower":[0,0,0],"upper":[1,1,1]}]})", "malformed");
  expect_region_refused(R"([1,2,3])", "JSON object");
}

// ---- crop record JSON --------------------------------------------------------------------------------------------

std::string record_text(const std::string& spacing, const std::string& start, const std::string& direction = "[[1,0,0],[0,1,0],[0,0,1]]") {
  return R"({"input":{"path":"scan.nii.gz","grid":{"size":[10,10,10],"origin_mm":[0,0,0],"spacing_mm":)" + spacing +
         R"(,"direction":)" + direction + R"(}},"boxes":[{"file":"c.nii.gz","index_box_written":{"start":)" + start +
         R"(,"end":[5,5,5]}}],"options":{},"region":{"name":"liver"}})";
}

TEST(CropRecordJson, ValidRecordParses) {
  const CropRecord p = parse_crop_record("r.json", record_text("[1,1,1]", "[1,2,3]"));
  ASSERT_EQ(p.boxes.size(), 1u);
  EXPECT_EQ(p.written_range(0).start[2], 3);
  EXPECT_EQ(p.boxes[0].file, "c.nii.gz");
}

TEST(CropRecordJson, BadGridsAndIndicesAreMalformedNotUndefinedBehaviour) {
  const std::vector<std::pair<std::string, std::string>> bad{
      {record_text("[0,1,1]", "[1,2,3]"), "spacing"},                        // zero spacing
      {record_text("[1,1,1]", "[1,2,3]", "[[1,0.5,0],[0,1,0],[0,0,1]]"), "record r.json"},  // sheared
      {record_text("[1,1,1]", "[1.5,2,3]"), "integers"},                       // a float index
      {record_text("[1,1,1]", "[1e300,2,3]"), "integers"},                     // converting 1e300 to int64 is UB
      {record_text("[1,1,1]", "[-9223372036854775807,2,3]"), "integers"},
      {record_text("[1,1,1]", "[6,2,3]"), "start > end"},
      {record_text("[1,1,1]", "[1,2]"), "3 integers"},
      {R"({"input":{"path":"s","grid":{"size":[1,1,1],"origin_mm":[0,0,0],"spacing_mm":[1,1,1],"direction":[[1,0,0],[0,1,0],[0,0,1]]}},"boxes":{}})", "boxes"},
  };
  for (const auto& [text, expected] : bad)
    expect_error([&] { parse_crop_record("r.json", text); }, ErrorCode::UnreadableInput, {"crop record r.json", expected});
}

// ---- model card --------------------------------------------------------------------------------------------------

std::string card_with(const std::string& key, const std::string& value) {
  std::string classes = "[";
  for (const auto& c : class_names()) classes += (classes.size() > 1 ? ",\"" : "\"") + c + "\"";
  classes += "]";
  std::map<std::string, std::string> fields{
      {"id", "\"m\""}, {"classes", classes}, {"spacing_mm", "3"}, {"windows_hu", "[[-1000,1000]]"},
      {"patch_size", "64"}, {"filters", "[4,8,16,32]"}, {"weights", "{\"file\":\"m.safetensors\",\"sha256\":\"" + std::string(64, 'a') + "\"}"}};
  fields[key] = value;
  std::string s = "{";
  for (const auto& [k, v] : fields) s += (s.size() > 1 ? "," : "") + ("\"" + k + "\":" + v);
  return s + "}";
}

TEST(ModelCardJson, HugeValuesAreRefusedBeforeTheyReachFloatConversionsOrLibTorch) {
  TempDir dir;
  const std::string path = dir.file("m.json");
  write_text_file(path, card_with("id", "\"m\""));
  EXPECT_EQ(read_model_card(path).filters.at(3), 32);
  const std::vector<std::pair<std::string, std::string>> bad{
      {"windows_hu", "[[-1e300,1e300]]"},  // converting 1e300 to float is undefined behaviour
      {"filters", "[4,8,16,1000000000]"},  // a billion channels: LibTorch would try to allocate them
      {"filters", "[4,8,16,4294967328]"},  // 2^32 + 32: get<int> would wrap to 32
      {"patch_size", "4294967360"},        // 2^32 + 64
      {"patch_size", "1048576"},
  };
  for (const auto& [key, value] : bad) {
    write_text_file(path, card_with(key, value));
    expect_error([&] { read_model_card(path); }, ErrorCode::ModelFailure, {path, key});
  }
}

// ---- the own NIfTI reader ----------------------------------------------------------------------------------------

std::vector<char> bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST(NiftiReader, HugeVoxOffsetIsRefusedNotConvertedOutOfRange) {
  TempDir dir;
  Image<float> img = filled(-1000.0f);
  write_image(img, dir.file("a.nii"));
  std::vector<char> b = bytes_of(dir.file("a.nii"));
  const float offset = 1e30f;  // beyond z_off_t: converting it was undefined behaviour
  std::memcpy(b.data() + 108, &offset, 4);
  std::ofstream(dir.file("a.nii"), std::ios::binary).write(b.data(), static_cast<std::streamsize>(b.size()));
  expect_error([&] { read_scan(dir.file("a.nii")); }, ErrorCode::UnreadableInput, {dir.file("a.nii")});
}

// Writes `img` as NIfTI with only an sform (qform_code 0, sform_code 1) whose RAS rows are `srow` (3 x 4).
void write_sform_only(const Image<float>& img, const std::string& path, const std::array<float, 12>& srow) {
  write_image(img, path);
  std::vector<char> b = bytes_of(path);
  const std::int16_t zero = 0, one = 1;
  std::memcpy(b.data() + 252, &zero, 2);
  std::memcpy(b.data() + 254, &one, 2);
  std::memcpy(b.data() + 280, srow.data(), 48);
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(b.data(), static_cast<std::streamsize>(b.size()));
}

TEST(NiftiReader, SformOrthonormalOnlyToRoundingIsOrthonormalisedWithAWarning) {
  // As in the TotalSegmentator dataset's slightly oblique subjects (s0002): a 2-degree rotation about z written to
  // 4 decimals leaves column dot products of ~2e-4, which ITK 5.2 refuses ("No orthonormal definition found").
  TempDir dir;
  Image<float> img = filled(0.0f);
  for (std::size_t v = 0; v < img.voxels.size(); ++v) img.voxels[v] = static_cast<float>(v);
  const float c = 1.4989f, s = 0.0527f, t = 0.0014f;  // 1.5 mm, rotated, rounded; t: a small rounding shear
  write_sform_only(img, dir.file("near.nii"), {c, -s, t, -10.0f, s, c, 0.0f, 20.0f, 0.0f, t, 1.5f, 30.0f});
  const Scan scan = read_scan(dir.file("near.nii"));
  EXPECT_EQ(scan.image.voxels, img.voxels);
  EXPECT_NEAR(scan.image.grid.spacing[0], std::sqrt(c * c + s * s), 1e-5);
  EXPECT_NEAR(scan.image.grid.spacing[2], std::sqrt(t * t + 1.5f * 1.5f), 1e-5);
  // RAS -> LPS, orthonormal now, and within the deviation of the header's columns
  const Eigen::Matrix3d d = scan.image.grid.direction;
  EXPECT_LT((d.transpose() * d - Eigen::Matrix3d::Identity()).cwiseAbs().maxCoeff(), 1e-12);
  EXPECT_NEAR(d(0, 0), -c / std::sqrt(c * c + s * s), 1e-6);
  EXPECT_NEAR(d(1, 0), -s / std::sqrt(c * c + s * s), 1e-6);
  EXPECT_NEAR(scan.image.grid.origin[0], 10.0, 1e-6);
  EXPECT_NEAR(scan.image.grid.origin[1], -20.0, 1e-6);
  EXPECT_NEAR(scan.image.grid.origin[2], 30.0, 1e-6);
  bool warned = false;
  for (const auto& w : scan.info.warnings) warned |= w.find("orthonormalised") != std::string::npos;
  EXPECT_TRUE(warned);
  // A real shear (dot product 0.05) stays refused.
  write_sform_only(img, dir.file("shear.nii"), {1.5f, 0.075f, 0.0f, 0.0f, 0.0f, 1.5f, 0.0f, 0.0f, 0.0f, 0.0f, 1.5f, 0.0f});
  expect_error([&] { read_scan(dir.file("shear.nii")); }, ErrorCode::UnsupportedGeometry,
               {dir.file("shear.nii"), "orthonormal"});
}

TEST(NiftiReader, NonFiniteOrientationIsRefusedNotAnAbortInsideItk) {
  // fuzz_read_nifti: a NaN in the sform made ITK's SVD assert and abort the process.
  TempDir dir;
  write_image(filled(-1000.0f), dir.file("a.nii"));
  const std::vector<char> good = bytes_of(dir.file("a.nii"));
  for (const std::size_t offset : {std::size_t{80}, std::size_t{256}, std::size_t{268}, std::size_t{280}, std::size_t{316}}) {
    std::vector<char> b = good;
    const float bad = offset == 268 ? std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
    std::memcpy(b.data() + offset, &bad, 4);
    std::ofstream(dir.file("bad.nii"), std::ios::binary | std::ios::trunc).write(b.data(), static_cast<std::streamsize>(b.size()));
    expect_error([&] { read_scan(dir.file("bad.nii")); }, ErrorCode::UnsupportedGeometry, {dir.file("bad.nii")});
  }
  // The fuzzer's second find: the same with a garbage sizeof_hdr, which niftilib does not insist on.
  std::vector<char> b = good;
  const std::int32_t garbage = 385876316;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(b.data(), &garbage, 4);
  std::memcpy(b.data() + 284, &nan, 4);
  std::ofstream(dir.file("bad.nii"), std::ios::binary | std::ios::trunc).write(b.data(), static_cast<std::streamsize>(b.size()));
  try {
    read_scan(dir.file("bad.nii"));
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir.file("bad.nii")), std::string::npos) << e.what();
  }
}

TEST(NiftiReader, DeclaredSizeBeyondWhatTheFileCanHoldIsRefusedBeforeAllocating) {
  TempDir dir;
  write_image(filled(-1000.0f), dir.file("a.nii"));
  std::vector<char> b = bytes_of(dir.file("a.nii"));
  const short dims[3] = {1000, 1000, 1000};  // 4 GB of float32 declared, 4 KB present
  std::memcpy(b.data() + 42, dims, sizeof dims);
  for (const std::string name : {"a.nii", "a.nii.gz"}) {
    std::ofstream(dir.file("lying.nii"), std::ios::binary).write(b.data(), static_cast<std::streamsize>(b.size()));
    if (name == "a.nii.gz") run_command("gzip -f " + dir.file("lying.nii"));
    const std::string path = dir.file(name == "a.nii" ? "lying.nii" : "lying.nii.gz");
    expect_error([&] { read_scan(path); }, ErrorCode::UnreadableInput, {path, "cannot hold"});
  }
}

// ---- label maps coarser than the 3 mm grid ----------------------------------------------------------------------

// fuzz_read_dicom (this session, 9.4 k executions): a DICM file whose file meta header ends the file made GDCM 3.0
// assert and abort the process. The bytes of the fuzzer's find, rebuilt: 128-byte preamble, "DICM", (0002,0000) UL
// group length, (0002,0001) OB, (0002,0002) UI 26 bytes, end of file. With one data element after the header it
// reads (as not an image), so only the empty data set is refused.
TEST(DicomReader, AFileMetaHeaderWithNoDataSetIsRefusedNotAnAbortInsideGdcm) {
  std::string bytes(128, '\0');
  bytes += "DICM";
  const auto element = [&](std::uint16_t el, const char* vr, const std::string& value, bool long_form) {
    bytes += std::string{'\x02', '\0', static_cast<char>(el & 0xFF), static_cast<char>(el >> 8), vr[0], vr[1]};
    const auto n = static_cast<std::uint32_t>(value.size());
    if (long_form)
      bytes += std::string{'\0', '\0', static_cast<char>(n & 0xFF), static_cast<char>((n >> 8) & 0xFF), '\0', '\0'};
    else
      bytes += std::string{static_cast<char>(n & 0xFF), static_cast<char>(n >> 8)};
    bytes += value;
  };
  element(0x0000, "UL", std::string("\xa2\0\0\0", 4), false);
  element(0x0001, "OB", std::string("\0\x01", 2), true);
  element(0x0002, "UI", std::string("1.2.840\0", 8) + std::string(18, '\0'), false);
  ASSERT_EQ(bytes.size(), 192u);
  TempDir dir;
  const std::string path = dir.file("meta_only.dcm");
  std::ofstream(path, std::ios::binary) << bytes;
  expect_error([&] { (void)read_scan(path); }, ErrorCode::UnreadableInput, {path, "no data set"});
}

TEST(LabelFractions, LabelMapCoarserThanTheTargetFillsEveryCoveredVoxel) {
  // A 6 mm label map, all label 1, onto a 3 mm grid over the same extent: every target voxel is fully label 1.
  // Splatting label voxel centres alone reached 1 target voxel in 8 ("no anatomy recognised" with --seg).
  Grid<Scanner> coarse;
  coarse.size = {{4, 4, 4}};
  coarse.spacing = Eigen::Vector3d::Constant(6.0);
  Grid<Scanner> fine;
  fine.size = {{8, 8, 8}};
  fine.spacing = Eigen::Vector3d::Constant(3.0);
  fine.origin = Eigen::Vector3d::Constant(-1.5);
  const MultiChannelImage<Scanner> f = label_fractions(Image<std::uint8_t>(coarse, 1), fine, 2);
  for (std::size_t v = 0; v < static_cast<std::size_t>(fine.voxels()); ++v) {
    ASSERT_FLOAT_EQ(f.channel(0)[v], 1.0f) << "voxel " << v;
    ASSERT_FLOAT_EQ(f.channel(1)[v], 0.0f) << "voxel " << v;
  }
}

}  // namespace
}  // namespace ctarr::test
