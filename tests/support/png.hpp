// ctarr tests — an independent PNG reader (8-bit RGB/RGBA/grey, no interlace) that checks every chunk's CRC.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ctarr::test {

struct DecodedPng {
  std::uint32_t width = 0, height = 0;
  int bit_depth = 0, colour_type = 0, interlace = 0;
  std::vector<std::string> chunks;  // chunk types in file order
  std::vector<std::uint8_t> rgb;    // 3 bytes per pixel, rows top to bottom (colour type 2 only)
};

// Parses `bytes` as PNG: signature, chunk lengths and CRCs, IHDR, zlib stream of the IDAT chunks, the five
// scanline filters. Throws std::runtime_error saying what is wrong.
DecodedPng decode_png(const std::string& bytes);

// The file's bytes (std::runtime_error if it cannot be read).
std::string read_file_bytes(const std::string& path);

}  // namespace ctarr::test
