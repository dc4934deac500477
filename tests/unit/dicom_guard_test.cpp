// The DICOM element walker that runs before GDCM (src/detail/dicom_guard.cpp), on bytes built here: data sets in
// each transfer syntax GDCM guesses for a file without a preamble, files cut short, and the fuzzer's kind of
// garbage (a 1 KB file whose element declares gigabytes).
#include "../../src/detail/dicom_guard.hpp"  // private to io, tested directly
#include "ctarr/error.hpp"
#include "ctarr/io.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <string>

using namespace ctarr;
using namespace ctarr::detail::bridge;
using ctarr::test::TempDir;
using ctarr::test::expect_error;

namespace {

enum class Ts { ExplicitLittle, ImplicitLittle, ExplicitBig };

// Data elements in one transfer syntax, byte by byte.
struct Bytes {
  Ts ts;
  std::string out;

  void u16(std::uint16_t v, bool big) {
    out += big ? std::string{static_cast<char>(v >> 8), static_cast<char>(v & 0xFF)}
               : std::string{static_cast<char>(v & 0xFF), static_cast<char>(v >> 8)};
  }
  void u32(std::uint32_t v, bool big) {
    if (big) {
      u16(static_cast<std::uint16_t>(v >> 16), true);
      u16(static_cast<std::uint16_t>(v & 0xFFFF), true);
    } else {
      u16(static_cast<std::uint16_t>(v & 0xFFFF), false);
      u16(static_cast<std::uint16_t>(v >> 16), false);
    }
  }
  // One element; `length` overrides the value's length (a lying header).
  Bytes& add(std::uint16_t group, std::uint16_t element, const char* vr, const std::string& value,
             std::uint32_t length = 0xFFFFFFFEu) {
    const bool big = ts == Ts::ExplicitBig;
    const std::uint32_t n = length == 0xFFFFFFFEu ? static_cast<std::uint32_t>(value.size()) : length;
    u16(group, big);
    u16(element, big);
    const std::string v = vr;
    if (ts == Ts::ImplicitLittle) {
      u32(n, false);
    } else if (v == "OB" || v == "OW" || v == "SQ" || v == "UN" || v == "UT") {
      out += v + std::string(2, '\0');
      u32(n, big);
    } else {
      out += v;
      u16(static_cast<std::uint16_t>(n), big);
    }
    out += value;
    return *this;
  }
  // An item header or delimiter (no VR in any syntax).
  Bytes& item(std::uint16_t element, std::uint32_t length) {
    const bool big = ts == Ts::ExplicitBig;
    u16(0xFFFE, big);
    u16(element, big);
    u32(length, big);
    return *this;
  }
};

// A small CT-like data set: identifying strings, a sequence of undefined length, pixel data.
std::string data_set(Ts ts) {
  Bytes b{ts, {}};
  b.add(0x0008, 0x0008, "CS", "ORIGINAL\\PRIMARY")
      .add(0x0008, 0x0016, "UI", std::string("1.2.840.10008.5.1.4.1.1.2") + '\0')
      .add(0x0008, 0x0060, "CS", "CT")
      .add(0x0008, 0x1140, "SQ", "", 0xFFFFFFFFu)
      .item(0xE000, 0xFFFFFFFFu)
      .add(0x0008, 0x1150, "UI", "1.2.3.4\0")
      .item(0xE00D, 0)
      .item(0xE0DD, 0)
      .add(0x0028, 0x0010, "US", std::string("\x02\x00", 2))
      .add(0x7FE0, 0x0010, "OW", std::string(8, '\x11'));
  return b.out;
}

std::string write(const TempDir& dir, const std::string& name, const std::string& bytes) {
  const std::string path = dir.file(name);
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

}  // namespace

TEST(DicomGuard, APreambleLessDataSetWalksInEachSyntaxGdcmGuesses) {
  TempDir dir;
  for (const auto& [ts, name] : {std::pair{Ts::ExplicitLittle, "explicit_le"}, std::pair{Ts::ImplicitLittle, "implicit_le"},
                                 std::pair{Ts::ExplicitBig, "explicit_be"}}) {
    SCOPED_TRACE(name);
    const std::string bytes = data_set(ts);
    const std::string whole = write(dir, std::string(name) + ".dcm", bytes);
    EXPECT_TRUE(walks_as_dicom_without_preamble(whole));
    EXPECT_TRUE(gdcm_may_read(whole));
    EXPECT_EQ(dicom_structure_problem(whole), "");  // no magic: not this check's to refuse
    // Cut inside the pixel data: the last element declares more than the file holds.
    const std::string cut = write(dir, std::string(name) + "_cut.dcm", bytes.substr(0, bytes.size() - 3));
    EXPECT_FALSE(walks_as_dicom_without_preamble(cut));
    EXPECT_FALSE(gdcm_may_read(cut));
  }
}

TEST(DicomGuard, AFileMetaGroupAtOffsetZeroNamesTheSyntaxOfTheDataSet) {
  TempDir dir;
  Bytes meta{Ts::ExplicitLittle, {}};
  meta.add(0x0002, 0x0001, "OB", std::string("\0\x01", 2)).add(0x0002, 0x0010, "UI", std::string("1.2.840.10008.1.2") + '\0');
  const std::string ok = write(dir, "meta_implicit.dcm", meta.out + data_set(Ts::ImplicitLittle));
  EXPECT_TRUE(walks_as_dicom_without_preamble(ok));
  // The same meta group before an explicit VR data set: walked as implicit (as GDCM would read it), lengths run
  // past the end.
  const std::string wrong = write(dir, "meta_wrong.dcm", meta.out + data_set(Ts::ExplicitLittle));
  EXPECT_FALSE(walks_as_dicom_without_preamble(wrong));
  // Meta group only: no data set.
  EXPECT_FALSE(walks_as_dicom_without_preamble(write(dir, "meta_only.dcm", meta.out)));
}

// fuzz_read_dicom's open find, rebuilt: a 1 KB file without the DICM magic whose element declares 0xF0000000 bytes.
// Before the guard, GDCM allocated them (4.4 GB peak) and then asserted in ReadPreValue, aborting the process
// (reached through ITK's GDCMImageIO::CanReadFile for a single file, and through ctarr's own probe).
TEST(DicomGuard, AKilobyteDeclaringGigabytesIsNotDicomAndNeverReachesGdcm) {
  TempDir dir;
  for (const Ts ts : {Ts::ExplicitLittle, Ts::ImplicitLittle}) {
    Bytes b{ts, {}};
    b.add(0x0008, 0x0008, "CS", "ORIGINAL").add(0x0010, 0x0010, "OB", "", 0xF0000000u);
    b.out += std::string(1024 - b.out.size(), '\0');
    const std::string path = write(dir, ts == Ts::ImplicitLittle ? "implicit.dcm" : "explicit.dcm", b.out);
    EXPECT_FALSE(walks_as_dicom_without_preamble(path));
    EXPECT_FALSE(gdcm_may_read(path));
    expect_error([&] { (void)read_scan(path); }, ErrorCode::UnreadableInput, {path, "not an image ctarr can read"});
    // In a series folder it is simply not DICOM.
    TempDir folder;
    write(folder, "slice.dcm", b.out);
    expect_error([&] { (void)read_scan(folder.path()); }, ErrorCode::UnreadableInput, {"no DICOM image found"});
  }
}

TEST(DicomGuard, ADicmFileCutShortNamesWhatIsWrong) {
  TempDir dir;
  Bytes meta{Ts::ExplicitLittle, {}};
  meta.add(0x0002, 0x0010, "UI", std::string("1.2.840.10008.1.2.1") + '\0');
  const std::string whole = std::string(128, '\0') + "DICM" + meta.out + data_set(Ts::ExplicitLittle);
  EXPECT_EQ(dicom_structure_problem(write(dir, "whole.dcm", whole)), "");
  EXPECT_TRUE(gdcm_may_read(dir.file("whole.dcm")));
  const std::string cut = write(dir, "cut.dcm", whole.substr(0, whole.size() - 4));
  EXPECT_NE(dicom_structure_problem(cut).find("cut short"), std::string::npos) << dicom_structure_problem(cut);
  EXPECT_FALSE(gdcm_may_read(cut));
}

TEST(DicomGuard, FilesThatAreNoDicomAtAllAreLeftToTheOtherReaders) {
  TempDir dir;
  const std::string text = write(dir, "notes.txt", "not a DICOM file, just some text that is long enough\n");
  EXPECT_FALSE(walks_as_dicom_without_preamble(text));
  EXPECT_EQ(dicom_structure_problem(text), "");
  EXPECT_FALSE(walks_as_dicom_without_preamble(write(dir, "tiny.bin", "abc")));
  EXPECT_FALSE(walks_as_dicom_without_preamble(dir.file("missing.dcm")));
  EXPECT_EQ(dicom_structure_problem(dir.file("missing.dcm")), "");
}
