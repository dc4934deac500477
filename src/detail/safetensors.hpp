// ctarr — plain reader/writer of the safetensors format (https://github.com/huggingface/safetensors). No torch.
//
// Layout: u64 little-endian header length N, N bytes of UTF-8 JSON
//   {"__metadata__": {str: str}, name: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}
// then the raw little-endian tensor data; offsets are relative to the first byte after the header. Every
// inconsistency (header longer than the file, offsets out of range or overlapping, shape x dtype size != byte
// length, holes, unsupported dtype) is an Error(ModelFailure) naming the file.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ctarr::detail {

struct SafetensorsTensor {
  std::vector<std::int64_t> shape;
  std::vector<float> data;  // converted to float32 (stored F32, F16 or BF16)
  std::string dtype;        // as stored: "F32", "F16" or "BF16"

  std::int64_t numel() const;
};

struct SafetensorsFile {
  std::map<std::string, SafetensorsTensor> tensors;
  std::map<std::string, std::string> metadata;  // "__metadata__", when present
};

// Reads and validates the whole file. Throws Error(ModelFailure) naming `path`.
SafetensorsFile read_safetensors(const std::string& path);

// Writes F32 tensors in name order, contiguous, header padded with spaces to a multiple of 8 bytes.
// Throws Error(OutputNotWritable) naming `path`, or Error(Internal) if a tensor's data does not match its shape.
void write_safetensors(const std::string& path, const SafetensorsFile& file);

// "3, 3, 3" style text of a shape, for messages.
std::string shape_to_string(const std::vector<std::int64_t>& shape);

// SHA-256 of a file's bytes, lowercase hex. Throws Error(ModelFailure) naming `path` when unreadable.
std::string sha256_file_hex(const std::string& path);

}  // namespace ctarr::detail
