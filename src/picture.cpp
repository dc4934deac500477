// ctarr — raster pictures: RgbImage, a PNG encoder, a 5x7 bitmap font, rectangles.
#include "ctarr/picture.hpp"

#include "ctarr/error.hpp"
#include "ctarr/io.hpp"

#include <zlib.h>

#include <algorithm>
#include <cmath>

namespace ctarr {

// ---- RgbImage and PNG -----------------------------------------------------------------------------------------

RgbImage::RgbImage(int w, int h, Rgb fill) : width(w), height(h) {
  rgb.resize(static_cast<std::size_t>(std::max(w, 0)) * static_cast<std::size_t>(std::max(h, 0)) * 3);
  for (std::size_t n = 0; n < rgb.size(); n += 3)
    std::copy(fill.begin(), fill.end(), rgb.begin() + static_cast<std::ptrdiff_t>(n));
}

Rgb RgbImage::pixel(int column, int row) const {
  const std::size_t n =
      3 * (static_cast<std::size_t>(row) * static_cast<std::size_t>(width) + static_cast<std::size_t>(column));
  return Rgb{rgb[n], rgb[n + 1], rgb[n + 2]};
}

void RgbImage::set(int column, int row, Rgb colour) {
  if (column < 0 || row < 0 || column >= width || row >= height) return;
  const std::size_t n =
      3 * (static_cast<std::size_t>(row) * static_cast<std::size_t>(width) + static_cast<std::size_t>(column));
  rgb[n] = colour[0];
  rgb[n + 1] = colour[1];
  rgb[n + 2] = colour[2];
}

void RgbImage::blend(int column, int row, Rgb colour, double alpha) {
  if (column < 0 || row < 0 || column >= width || row >= height) return;
  const Rgb old = pixel(column, row);
  Rgb mixed;
  for (std::size_t c = 0; c < 3; ++c)
    mixed[c] = static_cast<std::uint8_t>(std::lround((1.0 - alpha) * old[c] + alpha * colour[c]));
  set(column, row, mixed);
}

namespace {

void put_u32(std::string& out, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xffu));
}

// length, type, data, CRC-32 of type + data (PNG specification, section 5.3)
void put_chunk(std::string& out, const char* type, const std::string& data) {
  put_u32(out, static_cast<std::uint32_t>(data.size()));
  const std::string body = std::string(type, 4) + data;
  out += body;
  put_u32(out, static_cast<std::uint32_t>(
                   crc32(0L, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()))));
}

}  // namespace

std::string encode_png(const RgbImage& image) {
  if (image.width <= 0 || image.height <= 0 ||
      image.rgb.size() != 3 * static_cast<std::size_t>(image.width) * static_cast<std::size_t>(image.height))
    throw Error(ErrorCode::Internal, "encode_png: empty or inconsistent picture (" + std::to_string(image.width) +
                                         " x " + std::to_string(image.height) + ")");
  // Scanlines, each led by its filter type: 1 (Sub, the difference to the pixel on the left) compresses the flat
  // backgrounds and smooth projections well.
  const std::size_t stride = 3 * static_cast<std::size_t>(image.width);
  std::string raw;
  raw.reserve((stride + 1) * static_cast<std::size_t>(image.height));
  for (int r = 0; r < image.height; ++r) {
    const std::uint8_t* line = image.rgb.data() + stride * static_cast<std::size_t>(r);
    raw.push_back(1);
    for (std::size_t b = 0; b < stride; ++b)
      raw.push_back(static_cast<char>(static_cast<std::uint8_t>(line[b] - (b >= 3 ? line[b - 3] : 0))));
  }
  uLongf packed_size = compressBound(static_cast<uLong>(raw.size()));
  std::string packed(packed_size, '\0');
  if (compress2(reinterpret_cast<Bytef*>(packed.data()), &packed_size, reinterpret_cast<const Bytef*>(raw.data()),
                static_cast<uLong>(raw.size()), 6) != Z_OK)
    throw Error(ErrorCode::Internal, "encode_png: zlib compression failed");
  packed.resize(packed_size);

  std::string png("\x89PNG\r\n\x1a\n", 8);
  std::string ihdr;
  put_u32(ihdr, static_cast<std::uint32_t>(image.width));
  put_u32(ihdr, static_cast<std::uint32_t>(image.height));
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8 bits, truecolour, deflate, adaptive filtering, no interlace
  put_chunk(png, "IHDR", ihdr);
  put_chunk(png, "IDAT", packed);
  put_chunk(png, "IEND", "");
  return png;
}

void write_png(const RgbImage& image, const std::string& path) { write_text_file(path, encode_png(image)); }

// ---- font -----------------------------------------------------------------------------------------------------

namespace {

struct Glyph {
  char c;
  const char* rows[7];
};

// 5x7 glyphs, '#' = ink.
constexpr Glyph kGlyphs[] = {
    {' ', {".....", ".....", ".....", ".....", ".....", ".....", "....."}},
    {'0', {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."}},
    {'1', {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."}},
    {'2', {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"}},
    {'3', {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."}},
    {'4', {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."}},
    {'5', {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."}},
    {'6', {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."}},
    {'7', {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."}},
    {'8', {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."}},
    {'9', {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."}},
    {'A', {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}},
    {'B', {"####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."}},
    {'C', {".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."}},
    {'D', {"###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.."}},
    {'E', {"#####", "#....", "#....", "####.", "#....", "#....", "#####"}},
    {'F', {"#####", "#....", "#....", "####.", "#....", "#....", "#...."}},
    {'G', {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"}},
    {'H', {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}},
    {'I', {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}},
    {'J', {"..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."}},
    {'K', {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"}},
    {'L', {"#....", "#....", "#....", "#....", "#....", "#....", "#####"}},
    {'M', {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"}},
    {'N', {"#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"}},
    {'O', {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}},
    {'P', {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."}},
    {'Q', {".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"}},
    {'R', {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"}},
    {'S', {".####", "#....", "#....", ".###.", "....#", "....#", "####."}},
    {'T', {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."}},
    {'U', {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}},
    {'V', {"#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."}},
    {'W', {"#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."}},
    {'X', {"#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"}},
    {'Y', {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."}},
    {'Z', {"#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"}},
    {'.', {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."}},
    {',', {".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."}},
    {':', {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."}},
    {';', {".....", ".##..", ".##..", ".....", ".##..", "..#..", ".#..."}},
    {'!', {"..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#.."}},
    {'"', {".#.#.", ".#.#.", ".....", ".....", ".....", ".....", "....."}},
    {'|', {"..#..", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."}},
    {'-', {".....", ".....", ".....", "#####", ".....", ".....", "....."}},
    {'+', {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."}},
    {'=', {".....", ".....", "#####", ".....", "#####", ".....", "....."}},
    {'%', {"##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"}},
    {'/', {".....", "....#", "...#.", "..#..", ".#...", "#....", "....."}},
    {'(', {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."}},
    {')', {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."}},
    {'[', {".###.", ".#...", ".#...", ".#...", ".#...", ".#...", ".###."}},
    {']', {".###.", "...#.", "...#.", "...#.", "...#.", "...#.", ".###."}},
    {'_', {".....", ".....", ".....", ".....", ".....", ".....", "#####"}},
    {'<', {"...#.", "..#..", ".#...", "#....", ".#...", "..#..", "...#."}},
    {'>', {".#...", "..#..", "...#.", "....#", "...#.", "..#..", ".#..."}},
    {'*', {".....", "..#..", "#.#.#", ".###.", "#.#.#", "..#..", "....."}},
    {'#', {".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#."}},
    {'\'', {"..#..", "..#..", ".#...", ".....", ".....", ".....", "....."}},
    {'?', {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."}},
};

const Glyph& glyph(char c) {
  if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  for (const Glyph& g : kGlyphs)
    if (g.c == c) return g;
  for (const Glyph& g : kGlyphs)
    if (g.c == '?') return g;
  return kGlyphs[0];
}

}  // namespace

int draw_text(RgbImage& image, int column, int row, const std::string& text, Rgb colour, int scale) {
  scale = std::max(scale, 1);
  for (char c : text) {
    const Glyph& g = glyph(c);
    for (int y = 0; y < 7; ++y)
      for (int x = 0; x < 5; ++x)
        if (g.rows[y][x] == '#')
          for (int sy = 0; sy < scale; ++sy)
            for (int sx = 0; sx < scale; ++sx) image.set(column + x * scale + sx, row + y * scale + sy, colour);
    column += kCharWidth * scale;
  }
  return column;
}

int draw_label(RgbImage& image, int column, int row, const std::string& text, Rgb colour, int scale) {
  scale = std::max(scale, 1);
  fill_rect(image, column - 1, row - 1, column + text_width(text, scale), row + 7 * scale, Rgb{0, 0, 0});
  return draw_text(image, column, row, text, colour, scale);
}

int text_width(const std::string& text, int scale) {
  return static_cast<int>(text.size()) * kCharWidth * std::max(scale, 1);
}

std::vector<std::string> wrap_text(const std::string& text, std::size_t max_chars) {
  max_chars = std::max<std::size_t>(max_chars, 1);
  std::vector<std::string> lines;
  std::string line;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = text.find(' ', at);
    if (end == std::string::npos) end = text.size();
    std::string word = text.substr(at, end - at);
    at = end + 1;
    while (word.size() > max_chars) {  // a word longer than a line: cut
      if (!line.empty()) lines.push_back(line), line.clear();
      lines.push_back(word.substr(0, max_chars));
      word.erase(0, max_chars);
    }
    if (line.empty())
      line = word;
    else if (line.size() + 1 + word.size() <= max_chars)
      line += " " + word;
    else
      lines.push_back(line), line = word;
  }
  if (!line.empty() || lines.empty()) lines.push_back(line);
  return lines;
}

void fill_rect(RgbImage& image, int left, int top, int right, int bottom, Rgb colour) {
  for (int r = std::max(top, 0); r <= std::min(bottom, image.height - 1); ++r)
    for (int c = std::max(left, 0); c <= std::min(right, image.width - 1); ++c) image.set(c, r, colour);
}

void outline_rect(RgbImage& image, int left, int top, int right, int bottom, Rgb colour, int thickness) {
  for (int t = 0; t < std::max(thickness, 1); ++t) {
    for (int c = left + t; c <= right - t; ++c) {
      image.set(c, top + t, colour);
      image.set(c, bottom - t, colour);
    }
    for (int r = top + t; r <= bottom - t; ++r) {
      image.set(left + t, r, colour);
      image.set(right - t, r, colour);
    }
  }
}

}  // namespace ctarr
