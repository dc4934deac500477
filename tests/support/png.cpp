#include "support/png.hpp"

#include <zlib.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace ctarr::test {

namespace {

std::uint32_t be32(const std::string& s, std::size_t at) {
  if (at + 4 > s.size()) throw std::runtime_error("PNG truncated at byte " + std::to_string(at));
  std::uint32_t v = 0;
  for (std::size_t n = 0; n < 4; ++n) v = (v << 8) | static_cast<std::uint8_t>(s[at + n]);
  return v;
}

int paeth(int a, int b, int c) {
  const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
  return (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
}

}  // namespace

DecodedPng decode_png(const std::string& bytes) {
  if (bytes.size() < 8 || bytes.compare(0, 8, std::string("\x89PNG\r\n\x1a\n", 8)) != 0)
    throw std::runtime_error("no PNG signature");
  DecodedPng png;
  std::string idat;
  std::size_t at = 8;
  while (at < bytes.size()) {
    const std::uint32_t length = be32(bytes, at);
    if (at + 12 + length > bytes.size()) throw std::runtime_error("chunk runs past the end of the file");
    const std::string type = bytes.substr(at + 4, 4);
    const std::string body = bytes.substr(at + 4, 4 + length);
    const auto crc = static_cast<std::uint32_t>(
        crc32(0L, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size())));
    if (crc != be32(bytes, at + 8 + length)) throw std::runtime_error("bad CRC in chunk " + type);
    png.chunks.push_back(type);
    const std::string data = bytes.substr(at + 8, length);
    if (type == "IHDR") {
      if (length != 13) throw std::runtime_error("IHDR length " + std::to_string(length));
      png.width = be32(data, 0);
      png.height = be32(data, 4);
      png.bit_depth = static_cast<std::uint8_t>(data[8]);
      png.colour_type = static_cast<std::uint8_t>(data[9]);
      png.interlace = static_cast<std::uint8_t>(data[12]);
    } else if (type == "IDAT") {
      idat += data;
    }
    at += 12 + length;
    if (type == "IEND") break;
  }
  if (png.chunks.empty() || png.chunks.front() != "IHDR") throw std::runtime_error("IHDR is not the first chunk");
  if (png.chunks.back() != "IEND") throw std::runtime_error("no IEND chunk");
  if (png.colour_type != 2 || png.bit_depth != 8 || png.interlace != 0)
    throw std::runtime_error("only 8-bit RGB without interlace is read here");
  const std::size_t stride = 3 * static_cast<std::size_t>(png.width);
  uLongf raw_size = static_cast<uLongf>((stride + 1) * png.height);
  std::vector<std::uint8_t> raw(raw_size);
  if (uncompress(raw.data(), &raw_size, reinterpret_cast<const Bytef*>(idat.data()), static_cast<uLong>(idat.size())) !=
          Z_OK ||
      raw_size != raw.size())
    throw std::runtime_error("IDAT does not inflate to height x (1 + 3 x width) bytes");
  png.rgb.assign(stride * png.height, 0);
  for (std::size_t r = 0; r < png.height; ++r) {
    const int filter = raw[r * (stride + 1)];
    const std::uint8_t* in = raw.data() + r * (stride + 1) + 1;
    std::uint8_t* out = png.rgb.data() + r * stride;
    const std::uint8_t* up = r ? out - stride : nullptr;
    for (std::size_t b = 0; b < stride; ++b) {
      const int a = b >= 3 ? out[b - 3] : 0, u = up ? up[b] : 0, c = (b >= 3 && up) ? up[b - 3] : 0;
      int pred = 0;
      switch (filter) {
        case 0:
          pred = 0;
          break;
        case 1:
          pred = a;
          break;
        case 2:
          pred = u;
          break;
        case 3:
          pred = (a + u) / 2;
          break;
        case 4:
          pred = paeth(a, u, c);
          break;
        default:
          throw std::runtime_error("unknown filter type " + std::to_string(filter));
      }
      out[b] = static_cast<std::uint8_t>(in[b] + pred);
    }
  }
  return png;
}

std::string read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace ctarr::test
