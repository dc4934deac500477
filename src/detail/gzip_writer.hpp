// ctarr — gzip files deflated on all cores: one gzip member, the data cut into blocks that are deflated at once
// (each primed with the 32 KiB before it, as pigz does) and joined with sync flushes. Any gzip reader reads the
// result (zlib, nibabel, ITK, gzip -d). Plain C++ and zlib: no ITK here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace ctarr::detail {

// Compresses the file `from` into `to` (gzip, zlib level `level` 1..9) with worker_threads() threads, reading and
// deflating at most a few blocks at a time (memory does not grow with the file). Every write is checked and `to`
// is flushed to disk (fsync) before it is closed: a full disk or an I/O error throws Error(OutputNotWritable)
// naming `to`. `to` is written in place: the caller writes a temporary name and renames it.
void gzip_file(const std::string& from, const std::string& to, int level);

// The same for bytes in memory (tests, and callers that hold the data).
void gzip_bytes(const void* data, std::size_t size, const std::string& to, int level);

// Deflate block size (input bytes per block). A block is the unit of parallel work; the stream is the same gzip
// stream whatever the thread count.
inline constexpr std::size_t kGzipBlockBytes = std::size_t{1} << 22;  // 4 MiB

}  // namespace ctarr::detail
