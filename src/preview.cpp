// ctarr — preview pictures: projections on the canonical grid, overlays, a 5x7 bitmap font and a PNG encoder.
#include "ctarr/preview.hpp"

#include "ctarr/classes.hpp"
#include "ctarr/error.hpp"
#include "ctarr/io.hpp"
#include "ctarr/preprocess.hpp"
#include "parallel.hpp"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>

namespace ctarr {

namespace fs = std::filesystem;

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

constexpr int kCharWidth = 6;   // 5 + 1 gap
constexpr int kCharHeight = 9;  // 7 + 2 gap

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

// ---- projections ----------------------------------------------------------------------------------------------

namespace {

// Colours of the atlas classes (hue wheel, softened) and of the boxes (saturated, distinct from each other).
Rgb hsv(double h, double s, double v) {
  h = std::fmod(h, 360.0) / 60.0;
  const int i = static_cast<int>(h);
  const double f = h - i, p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  double r = v, g = t, b = p;
  switch (i) {
    case 1:
      r = q, g = v, b = p;
      break;
    case 2:
      r = p, g = v, b = t;
      break;
    case 3:
      r = p, g = q, b = v;
      break;
    case 4:
      r = t, g = p, b = v;
      break;
    case 5:
      r = v, g = p, b = q;
      break;
    default:
      break;
  }
  auto u8 = [](double x) { return static_cast<std::uint8_t>(std::lround(std::clamp(x, 0.0, 1.0) * 255.0)); };
  return Rgb{u8(r), u8(g), u8(b)};
}

Rgb class_colour(int c) { return hsv(360.0 * c / kNumClasses + 15.0, 0.55, 0.9); }

Rgb box_colour(std::size_t n) {
  static const Rgb kColours[] = {{255, 235, 0}, {0, 235, 255},   {255, 70, 255}, {140, 255, 40},
                                 {255, 140, 0}, {255, 255, 255}, {255, 60, 60},  {90, 120, 255}};
  return kColours[n % (sizeof(kColours) / sizeof(kColours[0]))];
}

// Projections of a volume along the canonical j (coronal) and i (sagittal) axes, at the volume's own resolution.
struct NativeProjections {
  Reorientation reorientation;
  Grid<Scanner> canonical;      // the volume's grid, canonical axis order
  std::vector<float> coronal;   // [k][i]
  std::vector<float> sagittal;  // [k][j]
};

template <class Frame>
Grid<Scanner> as_scanner_grid(const Grid<Frame>& g) {
  Grid<Scanner> s;
  s.size = g.size;
  s.origin = g.origin;
  s.spacing = g.spacing;
  s.direction = g.direction;
  return s;
}

// `value` maps a voxel to the projected quantity; `max` selects a maximum instead of a mean.
template <class T, class Frame, class Value>
NativeProjections project_native(const Image<T, Frame>& volume, bool max, const Value& value) {
  NativeProjections p;
  const Grid<Scanner> grid = as_scanner_grid(volume.grid);
  p.reorientation = canonical_reorientation(grid.direction);
  p.canonical = reorient_grid(grid, p.reorientation);
  const Index3 n = p.canonical.size;
  const auto ni = static_cast<std::size_t>(n[0]), nj = static_cast<std::size_t>(n[1]);
  const float init = max ? -std::numeric_limits<float>::infinity() : 0.0f;
  p.coronal.assign(ni * static_cast<std::size_t>(n[2]), init);
  p.sagittal.assign(nj * static_cast<std::size_t>(n[2]), init);
  parallel_for(n[2], [&](std::int64_t k) {
    float* cor = p.coronal.data() + ni * static_cast<std::size_t>(k);
    float* sag = p.sagittal.data() + nj * static_cast<std::size_t>(k);
    for (std::int64_t j = 0; j < n[1]; ++j)
      for (std::int64_t i = 0; i < n[0]; ++i) {
        const float v =
            value(volume.voxels[grid.linear(reoriented_to_original(Index3{{i, j, k}}, grid, p.reorientation))]);
        float& c = cor[i];
        float& s = sag[j];
        if (max) {
          c = std::max(c, v);
          s = std::max(s, v);
        } else {
          c += v;
          s += v;
        }
      }
    if (!max) {
      for (std::size_t i = 0; i < ni; ++i) cor[i] /= static_cast<float>(n[1]);
      for (std::size_t j = 0; j < nj; ++j) sag[j] /= static_cast<float>(n[0]);
    }
  });
  return p;
}

// Resamples a [rows][columns] picture with pixel size (sx, sz) mm onto square pixels of side s sharing its first
// corner: box filter (area average of bilinear samples) when shrinking, bilinear when enlarging. Output rows
// follow the input's (k upwards).
std::vector<float> resample_view(const std::vector<float>& in, std::int64_t w, std::int64_t h, double sx, double sz,
                                 std::int64_t out_w, std::int64_t out_h, double s) {
  auto at = [&](double x, double z) {
    x = std::clamp(x, 0.0, static_cast<double>(w - 1));
    z = std::clamp(z, 0.0, static_cast<double>(h - 1));
    const auto x0 = static_cast<std::int64_t>(std::floor(x)), z0 = static_cast<std::int64_t>(std::floor(z));
    const std::int64_t x1 = std::min(x0 + 1, w - 1), z1 = std::min(z0 + 1, h - 1);
    const double fx = x - static_cast<double>(x0), fz = z - static_cast<double>(z0);
    auto v = [&](std::int64_t xx, std::int64_t zz) {
      return static_cast<double>(in[static_cast<std::size_t>(zz * w + xx)]);
    };
    return (1 - fz) * ((1 - fx) * v(x0, z0) + fx * v(x1, z0)) + fz * ((1 - fx) * v(x0, z1) + fx * v(x1, z1));
  };
  const int sub_x = std::max(1, static_cast<int>(std::ceil(s / sx - 1e-9)));
  const int sub_z = std::max(1, static_cast<int>(std::ceil(s / sz - 1e-9)));
  std::vector<float> out(static_cast<std::size_t>(out_w * out_h));
  parallel_for(out_h, [&](std::int64_t r) {
    for (std::int64_t c = 0; c < out_w; ++c) {
      double sum = 0.0;
      for (int a = 0; a < sub_z; ++a)
        for (int b = 0; b < sub_x; ++b) {
          const double xmm = (static_cast<double>(c) + (b + 0.5) / sub_x) * s;  // from the first corner
          const double zmm = (static_cast<double>(r) + (a + 0.5) / sub_z) * s;
          sum += at(xmm / sx - 0.5, zmm / sz - 0.5);
        }
      out[static_cast<std::size_t>(r * out_w + c)] = static_cast<float>(sum / (sub_x * sub_z));
    }
  });
  return out;
}

// Views on the display grid: values per display pixel, [k][i] and [k][j], k upwards.
struct DisplayViews {
  Grid<Scanner> grid;  // canonical, isotropic
  std::vector<float> coronal, sagittal;
};

template <class T, class Frame, class Value>
DisplayViews display_views(const Image<T, Frame>& volume, double pixel_mm, bool max, const Value& value) {
  const NativeProjections p = project_native(volume, max, value);
  DisplayViews d;
  d.grid = isotropic_grid(p.canonical, pixel_mm);
  const Index3 n = p.canonical.size, m = d.grid.size;
  const Eigen::Vector3d& sp = p.canonical.spacing;
  d.coronal = resample_view(p.coronal, n[0], n[2], sp[0], sp[2], m[0], m[2], pixel_mm);
  d.sagittal = resample_view(p.sagittal, n[1], n[2], sp[1], sp[2], m[1], m[2], pixel_mm);
  return d;
}

// Layout: a text band on top, coronal view left, sagittal view right.
struct Layout {
  int scale = 1;
  int band = 0;
  int coronal_left = 0, sagittal_left = 0, top = 0, width = 0, height = 0;
};

constexpr int kGap = 8;

Layout layout_for(const Index3& m, const std::vector<std::string>& text, std::size_t legend_chars) {
  Layout l;
  const int views_w = static_cast<int>(m[0] + m[1]) + kGap;
  l.scale = views_w >= 500 ? 2 : 1;
  l.band = static_cast<int>(text.size() + 1) * kCharHeight * l.scale + 4;  // + one line for the view letters
  l.coronal_left = 0;
  l.sagittal_left = static_cast<int>(m[0]) + kGap;
  l.top = l.band;
  std::size_t chars = legend_chars;  // wide enough for the longest text line
  for (const std::string& t : text) chars = std::max(chars, t.size());
  l.width = std::max(views_w, static_cast<int>(chars) * kCharWidth * l.scale + 4);
  l.height = l.band + static_cast<int>(m[2]);
  return l;
}

// Paints the two views (value -> colour) and the view letters (R/L, A/P) just above them.
template <class Colour>
void paint_views(RgbImage& img, const Layout& l, const DisplayViews& d, const Colour& colour) {
  const Index3 m = d.grid.size;
  for (std::int64_t k = 0; k < m[2]; ++k) {
    const int row = l.top + static_cast<int>(m[2] - 1 - k);
    for (std::int64_t i = 0; i < m[0]; ++i)
      img.set(l.coronal_left + static_cast<int>(i), row, colour(d.coronal[static_cast<std::size_t>(k * m[0] + i)]));
    for (std::int64_t j = 0; j < m[1]; ++j)
      img.set(l.sagittal_left + static_cast<int>(j), row, colour(d.sagittal[static_cast<std::size_t>(k * m[1] + j)]));
  }
  const Rgb grey{170, 170, 170};
  const int row = l.top - kCharHeight * l.scale;
  const int cw = kCharWidth * l.scale;
  draw_text(img, l.coronal_left + 1, row, "R", grey, l.scale);
  draw_text(img, l.coronal_left + static_cast<int>(m[0]) - cw, row, "L", grey, l.scale);
  draw_text(img, l.sagittal_left + 1, row, "A", grey, l.scale);
  draw_text(img, l.sagittal_left + static_cast<int>(m[1]) - cw, row, "P", grey, l.scale);
}

// Rectangle of display pixels whose centres lie inside the world box (frame-free millimetres): [lo, hi] per
// canonical axis, possibly empty or outside the grid.
struct PixelRange {
  std::array<std::int64_t, 3> lo, hi;
};

PixelRange pixel_range(const Grid<Scanner>& grid, const Eigen::Vector3d& lower, const Eigen::Vector3d& upper) {
  Eigen::Vector3d lo = Eigen::Vector3d::Constant(1e300), hi = Eigen::Vector3d::Constant(-1e300);
  for (int c = 0; c < 8; ++c) {
    Point<Scanner> corner;
    for (int a = 0; a < 3; ++a) corner.mm[a] = ((c >> a) & 1) ? upper[a] : lower[a];
    const Eigen::Vector3d ci = grid.to_continuous_index(corner).v;
    lo = lo.cwiseMin(ci);
    hi = hi.cwiseMax(ci);
  }
  PixelRange r;
  for (int a = 0; a < 3; ++a) {
    r.lo[static_cast<std::size_t>(a)] = static_cast<std::int64_t>(std::ceil(lo[a] - 1e-6));
    r.hi[static_cast<std::size_t>(a)] = static_cast<std::int64_t>(std::floor(hi[a] + 1e-6));
  }
  return r;
}

// Outline of pixel columns [c0, c1] x display k [k0, k1] in a view whose k = 0 row is at `bottom`.
void draw_rect(RgbImage& img, int left, int width, int top, std::int64_t height, std::int64_t c0, std::int64_t c1,
               std::int64_t k0, std::int64_t k1, Rgb colour) {
  if (c1 < c0 || k1 < k0) return;
  auto put = [&](std::int64_t c, std::int64_t k) {
    if (c < 0 || c >= width || k < 0 || k >= height) return;
    img.set(left + static_cast<int>(c), top + static_cast<int>(height - 1 - k), colour);
  };
  for (std::int64_t c = c0; c <= c1; ++c) {
    put(c, k0);
    put(c, k1);
  }
  for (std::int64_t k = k0; k <= k1; ++k) {
    put(c0, k);
    put(c1, k);
  }
}

void draw_box(RgbImage& img, const Layout& l, const Grid<Scanner>& grid, const Eigen::Vector3d& lower,
              const Eigen::Vector3d& upper, Rgb colour) {
  const PixelRange r = pixel_range(grid, lower, upper);
  const Index3& m = grid.size;
  draw_rect(img, l.coronal_left, static_cast<int>(m[0]), l.top, m[2], r.lo[0], r.hi[0], r.lo[2], r.hi[2], colour);
  draw_rect(img, l.sagittal_left, static_cast<int>(m[1]), l.top, m[2], r.lo[1], r.hi[1], r.lo[2], r.hi[2], colour);
}

// Per display pixel, the classes (bit c) whose mapped mean mask reaches 0.5 somewhere along the ray.
// `only_on_black`: leave pixels that already show something (the heatmap) alone.
void draw_atlas_outline(RgbImage& img, const Layout& l, const Grid<Scanner>& grid,
                        const MultiChannelImage<Atlas>& atlas, const Affine<Scanner, Atlas>& scanner_to_atlas,
                        bool only_on_black = false, double dim = 1.0) {
  const std::size_t nv = static_cast<std::size_t>(atlas.grid.voxels());
  std::vector<std::uint32_t> bits(nv, 0);
  for (int c = 0; c < std::min(atlas.channels, 32); ++c) {
    const float* ch = atlas.channel(c);
    for (std::size_t v = 0; v < nv; ++v)
      if (ch[v] >= 0.5f) bits[v] |= 1u << c;
  }
  // The masks are sampled on a grid no finer than half the atlas spacing (a small scan's display grid can be much
  // finer: 0.75 mm pixels would cost 16x the look-ups for the same outline), then looked up per display pixel.
  const double sb = std::max(grid.spacing[0], 0.5 * atlas.grid.spacing.minCoeff());
  const Grid<Scanner> gb = sb > grid.spacing[0] * (1.0 + 1e-9) ? isotropic_grid(grid, sb) : grid;
  // atlas continuous index = A * sampling index + b
  const Eigen::Matrix3d to_atlas_index =
      atlas.grid.spacing.cwiseInverse().asDiagonal() * atlas.grid.direction.transpose();
  const Eigen::Matrix3d a = to_atlas_index * scanner_to_atlas.matrix().linear() * gb.index_to_world_linear();
  const Eigen::Vector3d b = to_atlas_index * (scanner_to_atlas(Point<Scanner>{gb.origin}).mm - atlas.grid.origin);
  const Index3 n = gb.size, an = atlas.grid.size;
  std::vector<std::uint32_t> cor_b(static_cast<std::size_t>(n[0] * n[2]), 0),
      sag_b(static_cast<std::size_t>(n[1] * n[2]), 0);
  parallel_for(n[2], [&](std::int64_t k) {
    for (std::int64_t j = 0; j < n[1]; ++j)
      for (std::int64_t i = 0; i < n[0]; ++i) {
        const Eigen::Vector3d ci =
            a * Eigen::Vector3d(static_cast<double>(i), static_cast<double>(j), static_cast<double>(k)) + b;
        Index3 q;
        bool in = true;
        for (int ax = 0; ax < 3 && in; ++ax) {
          q[ax] = static_cast<std::int64_t>(std::lround(ci[ax]));
          in = q[ax] >= 0 && q[ax] < an[ax];
        }
        if (!in) continue;
        const std::uint32_t v = bits[atlas.grid.linear(q)];
        cor_b[static_cast<std::size_t>(k * n[0] + i)] |= v;
        sag_b[static_cast<std::size_t>(k * n[1] + j)] |= v;
      }
  });
  // display pixel -> the sampling pixel holding its centre (same first corner)
  const Index3 m = grid.size;
  auto sample_index = [&](std::int64_t d, std::int64_t size) {
    return std::clamp<std::int64_t>(
        static_cast<std::int64_t>(std::floor((static_cast<double>(d) + 0.5) * grid.spacing[0] / sb)), 0, size - 1);
  };
  std::vector<std::uint32_t> cor(static_cast<std::size_t>(m[0] * m[2])), sag(static_cast<std::size_t>(m[1] * m[2]));
  for (std::int64_t k = 0; k < m[2]; ++k) {
    const std::int64_t kb = sample_index(k, n[2]);
    for (std::int64_t i = 0; i < m[0]; ++i)
      cor[static_cast<std::size_t>(k * m[0] + i)] = cor_b[static_cast<std::size_t>(kb * n[0] + sample_index(i, n[0]))];
    for (std::int64_t j = 0; j < m[1]; ++j)
      sag[static_cast<std::size_t>(k * m[1] + j)] = sag_b[static_cast<std::size_t>(kb * n[1] + sample_index(j, n[1]))];
  }
  // outline: a pixel of class c with a 4-neighbour outside class c (or at the view's edge)
  auto outline = [&](const std::vector<std::uint32_t>& view, std::int64_t w, int left) {
    for (std::int64_t k = 0; k < m[2]; ++k)
      for (std::int64_t x = 0; x < w; ++x) {
        const std::uint32_t v = view[static_cast<std::size_t>(k * w + x)];
        if (!v) continue;
        auto at = [&](std::int64_t xx, std::int64_t kk) -> std::uint32_t {
          return (xx < 0 || kk < 0 || xx >= w || kk >= m[2]) ? 0u : view[static_cast<std::size_t>(kk * w + xx)];
        };
        const std::uint32_t edge = v & ~(at(x - 1, k) & at(x + 1, k) & at(x, k - 1) & at(x, k + 1));
        if (!edge) continue;
        int c = 0;
        while (!((edge >> c) & 1u)) ++c;
        const int col = left + static_cast<int>(x), row = l.top + static_cast<int>(m[2] - 1 - k);
        if (only_on_black && img.pixel(col, row) != Rgb{0, 0, 0}) continue;
        Rgb colour = class_colour(c);
        for (auto& ch : colour) ch = static_cast<std::uint8_t>(std::lround(ch * dim));
        img.set(col, row, colour);
      }
  };
  outline(cor, m[0], l.coronal_left);
  outline(sag, m[1], l.sagittal_left);
}

// Text lines in the band; the box legend follows the overlay's text, each label in its colour.
void draw_band(RgbImage& img, const Layout& l, const std::vector<std::string>& text,
               const std::vector<std::pair<std::string, Rgb>>& legend) {
  int row = 2;
  for (const std::string& line : text) {
    draw_text(img, 2, row, line, Rgb{235, 235, 235}, l.scale);
    row += kCharHeight * l.scale;
  }
  if (!legend.empty()) {
    int col = 2;
    row -= kCharHeight * l.scale;  // the legend takes the line reserved for it by the caller
    for (const auto& [label, colour] : legend) col = draw_text(img, col, row, label + " ", colour, l.scale);
  }
}

double auto_pixel_mm(const Grid<Scanner>& grid, const PreviewOptions& o) {
  if (o.pixel_mm > 0.0) return o.pixel_mm;
  double finest = grid.spacing.minCoeff(), longest = 0.0;
  for (int a = 0; a < 3; ++a) longest = std::max(longest, static_cast<double>(grid.size[a]) * grid.spacing[a]);
  const double s = std::max(finest, longest / std::max(o.max_pixels, 16));
  if (longest / s >= o.min_pixels) return s;
  return s / std::ceil(o.min_pixels / (longest / s) - 1e-9);  // a small scan: split its voxels evenly
}

}  // namespace

Preview<Scanner> render_scan_preview(const Image<float>& scan_hu, const PreviewOverlay& overlay,
                                     const PreviewOptions& options) {
  validate_grid(scan_hu.grid, "preview");
  if (scan_hu.voxels.size() != static_cast<std::size_t>(scan_hu.grid.voxels()))
    throw Error(ErrorCode::Internal, "render_scan_preview: voxels do not match the grid");
  const bool max = options.projection == Projection::Max;
  const double s = auto_pixel_mm(scan_hu.grid, options);
  const DisplayViews d = display_views(scan_hu, s, max, [max](float hu) {
    return max ? hu : std::max(hu + 1000.0f, 0.0f) / 1000.0f;  // attenuation relative to water
  });

  // intensity window
  float lo = -300.0f, hi = 1300.0f;
  if (!max) {
    std::vector<float> all(d.coronal);
    all.insert(all.end(), d.sagittal.begin(), d.sagittal.end());
    const auto p = all.begin() + static_cast<std::ptrdiff_t>(0.995 * static_cast<double>(all.size() - 1));
    std::nth_element(all.begin(), p, all.end());
    lo = 0.0f;
    hi = std::max(*p, 1e-6f);
  }

  // legend: one entry per box label
  std::vector<std::pair<std::string, Rgb>> legend;
  std::map<std::string, Rgb> colours;
  for (const PreviewBox& b : overlay.boxes)
    if (!colours.count(b.label)) {
      colours[b.label] = box_colour(legend.size());
      legend.emplace_back(b.label, colours[b.label]);
    }
  std::vector<std::string> text = overlay.text;
  std::size_t legend_chars = 0;
  for (const auto& e : legend) legend_chars += e.first.size() + 1;
  if (!legend.empty()) text.emplace_back();  // the legend's line
  const Layout l = layout_for(d.grid.size, text, legend_chars);

  Preview<Scanner> out;
  out.display_grid = d.grid;
  out.coronal_left = l.coronal_left;
  out.sagittal_left = l.sagittal_left;
  out.views_top = l.top;
  out.image = RgbImage(l.width, l.height, Rgb{0, 0, 0});
  // Mean projection: squared, so soft tissue recedes and bone (the longer attenuation paths) stands out, as on a
  // radiograph; the maximum projection is shown linearly.
  const double gamma = max ? 1.0 : 2.0;
  paint_views(out.image, l, d, [lo, hi, gamma](float v) {
    const double t = std::pow(std::clamp(static_cast<double>((v - lo) / (hi - lo)), 0.0, 1.0), gamma);
    const auto g = static_cast<std::uint8_t>(std::lround(255.0 * t));
    return Rgb{g, g, g};
  });
  if (overlay.atlas_masks) draw_atlas_outline(out.image, l, d.grid, *overlay.atlas_masks, overlay.scanner_to_atlas);
  for (const PreviewBox& b : overlay.boxes)
    draw_box(out.image, l, d.grid, b.box.lower.mm, b.box.upper.mm, colours[b.label]);
  draw_band(out.image, l, text, legend);
  return out;
}

Preview<Atlas> render_heatmap_preview(const Image<float, Atlas>& heatmap, const std::vector<Box<Atlas>>& boxes,
                                      const std::vector<std::string>& text, int min_height,
                                      const MultiChannelImage<Atlas>* atlas_masks) {
  validate_grid(heatmap.grid, "heatmap");
  // a whole zoom factor on the coarsest spacing, so the longest side reaches min_height pixels
  const double spacing = heatmap.grid.spacing.maxCoeff();
  double longest_mm = 0.0;
  for (int a = 0; a < 3; ++a)
    longest_mm = std::max(longest_mm, static_cast<double>(heatmap.grid.size[a]) * heatmap.grid.spacing[a]);
  const int zoom = std::max(1, static_cast<int>(std::ceil(min_height / (longest_mm / spacing) - 1e-9)));
  const double s = spacing / zoom;
  const DisplayViews d = display_views(heatmap, s, true, [](float v) { return v; });
  const Layout l = layout_for(d.grid.size, text, 0);
  Preview<Atlas> out;
  out.display_grid.size = d.grid.size;
  out.display_grid.origin = d.grid.origin;
  out.display_grid.spacing = d.grid.spacing;
  out.display_grid.direction = d.grid.direction;
  out.coronal_left = l.coronal_left;
  out.sagittal_left = l.sagittal_left;
  out.views_top = l.top;
  out.image = RgbImage(l.width, l.height, Rgb{0, 0, 0});
  paint_views(out.image, l, d, [](float v) {  // black - red - yellow - white
    const double t = std::clamp(static_cast<double>(v), 0.0, 1.0) * 3.0;
    auto u8 = [](double x) { return static_cast<std::uint8_t>(std::lround(255.0 * std::clamp(x, 0.0, 1.0))); };
    return Rgb{u8(t), u8(t - 1.0), u8(t - 2.0)};
  });
  if (atlas_masks)  // the heatmap's frame is the atlas's: identity map
    draw_atlas_outline(out.image, l, d.grid, *atlas_masks, Affine<Scanner, Atlas>::identity(), true, 0.6);
  for (const Box<Atlas>& b : boxes) draw_box(out.image, l, d.grid, b.lower.mm, b.upper.mm, Rgb{0, 235, 255});
  draw_band(out.image, l, text, {});
  return out;
}

std::string preview_file_name(const std::string& input_path) { return image_stem(input_path) + "_preview.png"; }

std::string write_crop_preview(const Scan& scan, const Fit& fit, const std::vector<Region>& regions,
                               const CropRequest& request, const AtlasModel& atlas) {
  PreviewOverlay overlay;
  overlay.atlas_masks = &atlas.masks;
  overlay.scanner_to_atlas = fit.scanner_to_atlas;
  const Affine<Atlas, Scanner> atlas_to_scanner = fit.scanner_to_atlas.inverse();
  // each region's crops as crop_regions cuts them: voxel ranges [start, end) -> their faces in scanner mm
  for (const Region& region : regions) {
    CropOptions options = request.crop;
    if (!options.margin_mm) options.margin_mm = region.margin_mm;
    for (const Box<Atlas>& box : region.boxes) {
      const MappedBox m = map_box(box, atlas_to_scanner, scan.image.grid, options);
      if (m.misses_scan) continue;
      const IndexBox& r = options.pad ? m.requested : m.clipped;
      Eigen::Vector3d lo = Eigen::Vector3d::Constant(1e300), hi = Eigen::Vector3d::Constant(-1e300);
      for (int c = 0; c < 8; ++c) {
        ContinuousIndex ci;
        for (int a = 0; a < 3; ++a) ci.v[a] = static_cast<double>(((c >> a) & 1) ? r.end[a] : r.start[a]) - 0.5;
        const Eigen::Vector3d p = scan.image.grid.to_world(ci).mm;
        lo = lo.cwiseMin(p);
        hi = hi.cwiseMax(p);
      }
      overlay.boxes.push_back(PreviewBox{region.name, Box<Scanner>{Point<Scanner>{lo}, Point<Scanner>{hi}}});
    }
  }
  char dice[64];
  std::snprintf(dice, sizeof(dice), "fit Dice %.3f", fit.refined.dice);
  overlay.text = {image_stem(scan.info.path), "orientation " + fit.initial.orientation + ", " + dice + ", " +
                                                  std::to_string(fit.initial.classes_seen.size()) + " classes seen"};
  const Preview<Scanner> p = render_scan_preview(scan.image, overlay);
  const std::string path = (fs::path(request.out_dir) / preview_file_name(scan.info.path)).string();
  write_png(p.image, path);
  return path;
}

}  // namespace ctarr
