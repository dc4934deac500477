// ctarr — gzip files deflated on all cores (see gzip_writer.hpp).
//
// The stream: a gzip header, then for every block of kGzipBlockBytes one raw deflate run of its own (primed with
// the 32 KiB of input before the block, so matches reach back across the seam as in a serial deflate) that ends
// with a sync flush (an empty stored block: byte aligned, not final), the last block ending the stream instead;
// then the CRC-32 of all the data (the blocks' CRCs joined with crc32_combine) and its length mod 2^32. A 39 MB
// int16 CT crop takes zlib 0.55 s at level 1 on one core; on two, the benchmark's crop + write stage went from 0.86
// to 0.43-0.49 s (docs/PERFORMANCE.md). The stream is within 0.5 % of zlib's serial one (GzipWriter unit tests).
#include "detail/gzip_writer.hpp"

#include "ctarr/error.hpp"
#include "parallel.hpp"

#include <zlib.h>  // linked through ITK (ITKZLIB)

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace ctarr::detail {

namespace {

constexpr std::size_t kWindow = 32768;  // deflate's window: the priming dictionary

// One block's deflated bytes and the CRC of its input.
struct Block {
  std::size_t in_size = 0;  // input bytes
  std::vector<unsigned char> out;
  std::size_t out_size = 0;
  uLong crc = 0;
};

// Deflates in[0, size) as one raw run, primed with the `dict_size` bytes before `in`. Returns false on a zlib
// failure (out of memory). Does not throw (it runs on parallel_for's threads).
bool deflate_block(const unsigned char* in, std::size_t size, std::size_t dict_size, bool last, int level,
                   Block& block) noexcept {
  block.in_size = size;
  block.crc = crc32_z(crc32_z(0L, Z_NULL, 0), in, size);
  z_stream zs{};
  if (deflateInit2(&zs, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) return false;
  bool ok = dict_size == 0 || deflateSetDictionary(&zs, in - dict_size, static_cast<uInt>(dict_size)) == Z_OK;
  zs.next_in = const_cast<unsigned char*>(in);
  zs.avail_in = static_cast<uInt>(size);  // size <= kGzipBlockBytes
  zs.next_out = block.out.data();
  zs.avail_out = static_cast<uInt>(block.out.size());
  const int flush = last ? Z_FINISH : Z_SYNC_FLUSH;
  // block.out holds deflateBound + the flush marker: one call finishes the block
  const int rc = ok ? deflate(&zs, flush) : Z_STREAM_ERROR;
  ok = ok && (last ? rc == Z_STREAM_END : (rc == Z_OK && zs.avail_in == 0 && zs.avail_out > 0));
  block.out_size = block.out.size() - zs.avail_out;
  deflateEnd(&zs);
  return ok;
}

// A file descriptor written with every byte checked, flushed and closed on finish(); closed (and left for the
// caller to remove) on an error.
class CheckedFile {
 public:
  explicit CheckedFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("cannot create the file");
  }
  ~CheckedFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  CheckedFile(const CheckedFile&) = delete;
  CheckedFile& operator=(const CheckedFile&) = delete;

  void write(const void* data, std::size_t size) {
    const auto* p = static_cast<const unsigned char*>(data);
    while (size > 0) {
      const ssize_t n = ::write(fd_, p, std::min<std::size_t>(size, std::size_t{1} << 30));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail(n < 0 ? std::strerror(errno) : "the disk accepted no more bytes (full?)");
      p += n;
      size -= static_cast<std::size_t>(n);
    }
  }
  void finish() {
    if (::fsync(fd_) != 0) fail(std::strerror(errno));
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail(std::strerror(errno));
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw Error(ErrorCode::OutputNotWritable, path_ + ": cannot write: " + why);
  }
  std::string path_;
  int fd_ = -1;
};

void put_le32(unsigned char* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

// `source(dst, n)` fills dst with the next n bytes of the data (or throws); `total` bytes in all.
template <class Source>
void gzip_from(Source&& source, std::uint64_t total, const std::string& to, int level) {
  if (level < 1 || level > 9)
    throw Error(ErrorCode::Internal, to + ": gzip level " + std::to_string(level) + " is not in 1..9");
  const std::uint64_t blocks_total = std::max<std::uint64_t>(1, (total + kGzipBlockBytes - 1) / kGzipBlockBytes);
  // A batch of blocks is read, deflated at once, written in order; the next batch keeps the last 32 KiB as the
  // dictionary of its first block.
  const std::size_t batch = static_cast<std::size_t>(std::max(1, worker_threads())) * 2;
  std::vector<unsigned char> in(kWindow + batch * kGzipBlockBytes);
  std::vector<Block> blocks(batch);
  const std::size_t bound = deflateBound(nullptr, kGzipBlockBytes) + 64;  // + the sync flush marker
  for (Block& b : blocks) b.out.resize(bound);

  CheckedFile out(to);
  const unsigned char header[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, static_cast<unsigned char>(level == 1 ? 4 : level == 9 ? 2 : 0), 3};
  out.write(header, sizeof header);
  uLong crc = crc32_z(0L, Z_NULL, 0);
  std::uint64_t done = 0, block_index = 0;
  std::size_t dict = 0;  // bytes of dictionary at in[kWindow - dict, kWindow)
  while (block_index < blocks_total) {
    const std::size_t n_blocks = static_cast<std::size_t>(std::min<std::uint64_t>(batch, blocks_total - block_index));
    const std::size_t want = static_cast<std::size_t>(
        std::min<std::uint64_t>(static_cast<std::uint64_t>(n_blocks) * kGzipBlockBytes, total - done));
    source(in.data() + kWindow, want);
    std::atomic<bool> failed{false};
    parallel_for(static_cast<std::int64_t>(n_blocks), [&](std::int64_t k) {
      const std::size_t start = static_cast<std::size_t>(k) * kGzipBlockBytes;
      const std::size_t size = std::min(kGzipBlockBytes, want - std::min(want, start));
      const std::size_t dict_size = k == 0 ? dict : kWindow;
      const bool last = block_index + static_cast<std::uint64_t>(k) + 1 == blocks_total;
      if (!deflate_block(in.data() + kWindow + start, size, dict_size, last, level, blocks[static_cast<std::size_t>(k)]))
        failed = true;
    });
    if (failed) throw Error(ErrorCode::OutputNotWritable, to + ": cannot write: compressing the image failed (out of memory?)");
    for (std::size_t k = 0; k < n_blocks; ++k) {
      out.write(blocks[k].out.data(), blocks[k].out_size);
      crc = crc32_combine(crc, blocks[k].crc, static_cast<z_off_t>(blocks[k].in_size));
    }
    done += want;
    block_index += n_blocks;
    dict = std::min<std::size_t>(kWindow, want + dict);
    // the last kWindow bytes seen become the dictionary (they may reach back into the previous dictionary)
    std::memmove(in.data() + kWindow - dict, in.data() + kWindow + want - dict, dict);
  }
  unsigned char trailer[8];
  put_le32(trailer, static_cast<std::uint32_t>(crc));
  put_le32(trailer + 4, static_cast<std::uint32_t>(total & 0xffffffffu));
  out.write(trailer, sizeof trailer);
  out.finish();
}

}  // namespace

void gzip_file(const std::string& from, const std::string& to, int level) {
  std::ifstream in(from, std::ios::binary | std::ios::ate);
  if (!in) throw Error(ErrorCode::OutputNotWritable, to + ": cannot write: the uncompressed image was not written");
  const auto end = in.tellg();
  if (end < 0) throw Error(ErrorCode::OutputNotWritable, to + ": cannot write: the uncompressed image cannot be read");
  in.seekg(0);
  const auto total = static_cast<std::uint64_t>(end);
  gzip_from(
      [&](unsigned char* dst, std::size_t size) {
        in.read(reinterpret_cast<char*>(dst), static_cast<std::streamsize>(size));
        if (static_cast<std::size_t>(in.gcount()) != size)
          throw Error(ErrorCode::OutputNotWritable, to + ": cannot write: the uncompressed image changed while it was read");
      },
      total, to, level);
}

void gzip_bytes(const void* data, std::size_t size, const std::string& to, int level) {
  const auto* p = static_cast<const unsigned char*>(data);
  gzip_from(
      [&](unsigned char* dst, std::size_t n) {
        if (n == 0) return;  // `data` may be null for no bytes
        std::memcpy(dst, p, n);
        p += n;
      },
      size, to, level);
}

}  // namespace ctarr::detail
