// The parallel gzip writer (src/detail/gzip_writer.cpp): what it writes is one gzip stream that zlib reads back
// byte for byte, whatever the length (block and batch seams included), about as small as a serial deflate at the
// same level, and a full disk is an error naming the file.
#include "../../src/detail/gzip_writer.hpp"  // private to io, tested directly
#include "ctarr/error.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

using namespace ctarr;
using ctarr::detail::gzip_bytes;
using ctarr::detail::gzip_file;
using ctarr::detail::kGzipBlockBytes;
using ctarr::test::expect_error;
using ctarr::test::TempDir;

namespace {

// CT-like bytes: int16 slices of air (-1024) around a noisy body, so that deflate finds runs and misses.
std::vector<unsigned char> ct_like_bytes(std::size_t size, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> noise(40.0, 25.0);
  std::vector<unsigned char> out(size);
  for (std::size_t i = 0; i + 1 < size; i += 2) {
    const bool body = (i / 1024) % 3 != 0;
    const auto v = static_cast<std::int16_t>(body ? noise(rng) : -1024.0);
    out[i] = static_cast<unsigned char>(v & 0xff);
    out[i + 1] = static_cast<unsigned char>((v >> 8) & 0xff);
  }
  if (size % 2) out.back() = 7;
  return out;
}

// Inflates the whole file as one gzip member (zlib checks the CRC-32 and length of the trailer); fails the test
// on anything after the member or a stream that does not end.
std::vector<unsigned char> gunzip_one_member(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::vector<unsigned char> gz((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  z_stream zs{};
  EXPECT_EQ(inflateInit2(&zs, 15 + 16), Z_OK);
  std::vector<unsigned char> out;
  std::vector<unsigned char> buf(1 << 20);
  zs.next_in = const_cast<unsigned char*>(gz.data());
  zs.avail_in = static_cast<uInt>(gz.size());
  int rc = Z_OK;
  while (rc == Z_OK) {
    zs.next_out = buf.data();
    zs.avail_out = static_cast<uInt>(buf.size());
    rc = inflate(&zs, Z_NO_FLUSH);
    out.insert(out.end(), buf.data(), buf.data() + (buf.size() - zs.avail_out));
    if (rc == Z_BUF_ERROR && zs.avail_in == 0) break;
  }
  EXPECT_EQ(rc, Z_STREAM_END) << path << ": the stream does not end";
  EXPECT_EQ(zs.avail_in, 0u) << path << ": bytes after the gzip member";
  inflateEnd(&zs);
  return out;
}

// gzread, as ITK's niftilib and ctarr's reader read .nii.gz.
std::vector<unsigned char> gzread_all(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  EXPECT_NE(f, nullptr);
  std::vector<unsigned char> out;
  std::vector<unsigned char> buf(1 << 20);
  int got = 0;
  while ((got = gzread(f, buf.data(), static_cast<unsigned>(buf.size()))) > 0) out.insert(out.end(), buf.data(), buf.data() + got);
  EXPECT_EQ(got, 0);
  gzclose(f);
  return out;
}

std::size_t serial_gzip_size(const std::vector<unsigned char>& data, int level) {
  z_stream zs{};
  deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  std::vector<unsigned char> out(deflateBound(&zs, data.size()));
  zs.next_in = const_cast<unsigned char*>(data.data());
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  const std::size_t size = out.size() - zs.avail_out;
  deflateEnd(&zs);
  return size;
}

}  // namespace

TEST(GzipWriter, EveryLengthAroundTheBlockAndBatchSeamsReadsBackByteForByte) {
  TempDir dir;
  const std::size_t b = kGzipBlockBytes;
  // 0 and 1 byte, shorter than the priming window, each side of one block, and past two batches of blocks
  // (a batch is 2 blocks per thread)
  for (const std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{20000}, b - 1, b, b + 1, 3 * b + b / 2,
                                 17 * b + 12345}) {
    const std::vector<unsigned char> data = ct_like_bytes(size, static_cast<unsigned>(size));
    const std::string path = dir.path() + "/data_" + std::to_string(size) + ".gz";
    gzip_bytes(data.data(), data.size(), path, 1);
    EXPECT_EQ(gunzip_one_member(path), data) << "size " << size;
    EXPECT_EQ(gzread_all(path), data) << "size " << size;
  }
}

TEST(GzipWriter, AFileCompressesToWhatItHolds) {
  TempDir dir;
  const std::vector<unsigned char> data = ct_like_bytes(5 * kGzipBlockBytes + 99, 3);
  const std::string plain = dir.path() + "/plain.nii", gz = dir.path() + "/plain.nii.gz";
  std::ofstream(plain, std::ios::binary).write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  gzip_file(plain, gz, 1);
  EXPECT_EQ(gzread_all(gz), data);
}

TEST(GzipWriter, PrimedBlocksCompressLikeOneSerialDeflate) {
  // each block is primed with the 32 KiB before it: the parallel stream is within 0.5 % of a serial one
  TempDir dir;
  const std::vector<unsigned char> data = ct_like_bytes(6 * kGzipBlockBytes + 4321, 11);
  for (const int level : {1, 6}) {
    const std::string path = dir.path() + "/l" + std::to_string(level) + ".gz";
    gzip_bytes(data.data(), data.size(), path, level);
    const auto parallel = static_cast<double>(std::filesystem::file_size(path));
    const auto serial = static_cast<double>(serial_gzip_size(data, level));
    EXPECT_LT(parallel, serial * 1.005) << "level " << level << ": " << parallel << " vs " << serial << " bytes";
    EXPECT_LT(parallel, 0.7 * static_cast<double>(data.size())) << "level " << level << ": barely compressed";
  }
}

TEST(GzipWriter, AFullDiskOrAMissingFolderIsAnErrorNamingTheFile) {
  const std::vector<unsigned char> data = ct_like_bytes(kGzipBlockBytes + 5, 1);
  expect_error([&] { gzip_bytes(data.data(), data.size(), "/dev/full", 1); }, ErrorCode::OutputNotWritable,
               {"/dev/full", "cannot write"});
  expect_error([&] { gzip_bytes(data.data(), data.size(), "/nonexistent-ctarr-folder/x.nii.gz", 1); },
               ErrorCode::OutputNotWritable, {"/nonexistent-ctarr-folder/x.nii.gz", "cannot"});
  expect_error([&] { gzip_file("/nonexistent-ctarr-folder/in.nii", "/tmp/never-written.nii.gz", 1); },
               ErrorCode::OutputNotWritable, {"/tmp/never-written.nii.gz", "uncompressed image"});
}
