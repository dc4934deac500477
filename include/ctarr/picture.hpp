// ctarr — small raster pictures: an 8-bit RGB image, a 5x7 bitmap font, rectangles, blending and a PNG encoder.
// The drawing layer under the previews (preview.hpp); it knows nothing of scans or frames.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace ctarr {

using Rgb = std::array<std::uint8_t, 3>;

// 8-bit RGB picture; rows top to bottom, columns left to right: rgb[3 * (row * width + column) + channel].
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> rgb;

  RgbImage() = default;
  RgbImage(int w, int h, Rgb fill = {0, 0, 0});
  Rgb pixel(int column, int row) const;
  void set(int column, int row, Rgb colour);  // pixels outside the picture are ignored
  // Mixes `colour` into the pixel: (1 - alpha) * pixel + alpha * colour. Outside the picture: ignored.
  void blend(int column, int row, Rgb colour, double alpha);
};

// The bytes of a PNG file holding `image` (8-bit RGB, zlib-compressed). Throws Internal for an empty picture.
std::string encode_png(const RgbImage& image);
// Writes encode_png(image) atomically (temporary file, then rename). Throws OutputNotWritable naming the path.
void write_png(const RgbImage& image, const std::string& path);

// The font's cell: 5x7 glyphs with a 1-pixel gap to the right and 2 below, times the scale.
constexpr int kCharWidth = 6;
constexpr int kCharHeight = 9;

// Writes `text` (ASCII; lower case drawn as upper case, unknown characters as '?') with the 5x7 bitmap font scaled
// by `scale`, top-left corner at (column, row). Returns the column after the last character.
int draw_text(RgbImage& image, int column, int row, const std::string& text, Rgb colour, int scale = 1);
// draw_text on a dark plate (one pixel of margin), so the text reads on any background.
int draw_label(RgbImage& image, int column, int row, const std::string& text, Rgb colour, int scale = 1);
// Width in pixels of `text` as draw_text writes it.
int text_width(const std::string& text, int scale = 1);
// `text` broken at spaces into lines of at most `max_chars` characters (a longer word is cut).
std::vector<std::string> wrap_text(const std::string& text, std::size_t max_chars);

// Filled and outlined rectangles, corners inclusive; pixels outside the picture are ignored.
void fill_rect(RgbImage& image, int left, int top, int right, int bottom, Rgb colour);
void outline_rect(RgbImage& image, int left, int top, int right, int bottom, Rgb colour, int thickness = 1);

}  // namespace ctarr
