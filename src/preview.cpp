// ctarr — preview pictures: projections and axial slices on the scan's canonical grid, with the segmentation filled,
// the fitted atlas outlined, the crop boxes named, and the fit's numbers and warnings in a band on top.
#include "ctarr/preview.hpp"

#include "ctarr/classes.hpp"
#include "ctarr/error.hpp"
#include "ctarr/io.hpp"
#include "ctarr/preprocess.hpp"
#include "detail/preview_views.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <set>

namespace ctarr {

namespace fs = std::filesystem;

namespace {

using namespace detail;

// ---- colours --------------------------------------------------------------------------------------------------

// One colour per class (share/classes.json order): the spine in oranges, ribs lilac, pelvis teal, organs in hues
// distinct from their neighbours'; a left/right pair shares a hue in two shades.
constexpr Rgb kClassColours[kNumClasses] = {
    {255, 228, 130},  // skull
    {255, 200, 80},   // vertebrae_cervical
    {255, 160, 40},   // vertebrae_thoracic
    {255, 120, 0},    // vertebrae_lumbar
    {205, 190, 255},  // ribs_left
    {160, 140, 240},  // ribs_right
    {255, 150, 150},  // sternum
    {200, 130, 90},   // sacrum
    {120, 230, 230},  // hip_left
    {40, 170, 190},   // hip_right
    {255, 120, 220},  // brain
    {120, 200, 255},  // lung_left
    {40, 120, 240},   // lung_right
    {235, 40, 50},    // heart
    {170, 30, 120},   // liver
    {150, 90, 240},   // spleen
    {60, 230, 110},   // kidney_left
    {20, 160, 70},    // kidney_right
    {255, 255, 0},    // urinary_bladder
};

Rgb class_colour(int c) { return kClassColours[static_cast<std::size_t>(((c % kNumClasses) + kNumClasses) % kNumClasses)]; }

Rgb box_colour(std::size_t n) {
  static const Rgb kColours[] = {{255, 235, 0}, {0, 235, 255},   {255, 70, 255}, {140, 255, 40},
                                 {255, 140, 0}, {255, 255, 255}, {255, 60, 60},  {90, 120, 255}};
  return kColours[n % (sizeof(kColours) / sizeof(kColours[0]))];
}

const Rgb kTextColour{235, 235, 235};
const Rgb kWarningColour{255, 170, 60};
const Rgb kRefusedColour{255, 60, 60};
constexpr double kFillAlpha = 0.4;  // segmentation fill over the grey picture

// ---- layout ---------------------------------------------------------------------------------------------------

constexpr int kGap = 8;

struct BandLine {
  std::string text;
  Rgb colour;
  int scale;
};

struct LegendEntry {
  std::string label;
  Rgb colour;
  bool swatch;  // a filled square before the label (a class), else the label in its colour (a box)
};

// Top to bottom: [frame] band lines, legend rows, view letters, coronal | sagittal, [axial labels, axial panels].
struct Layout {
  int scale = 1;
  int pad = 0;  // the refused frame's width
  int width = 0, height = 0;
  int coronal_left = 0, sagittal_left = 0, top = 0;
  std::vector<BandLine> lines;
  std::vector<std::vector<LegendEntry>> legend_rows;
  int legend_top = 0;
  std::vector<std::pair<int, int>> panels;  // top-left corner of each axial panel
  int panel_label_height = 0;
};

int legend_entry_width(const LegendEntry& e, int scale) {
  return text_width(e.label + "  ", scale) + (e.swatch ? 9 * scale : 0);
}

// `views_m`: display grid size; `panels`: the number of axial panels (each size_i x size_j pixels).
Layout layout_for(const Index3& m, int panels, const std::string& refused, const std::vector<std::string>& text,
                  const std::vector<std::string>& warnings, const std::vector<LegendEntry>& legend) {
  Layout l;
  const int views_w = static_cast<int>(m[0] + m[1]) + kGap;
  l.scale = views_w >= 500 ? 2 : 1;
  const int s = l.scale;
  l.pad = refused.empty() ? 0 : 4 * s;
  // content width: the views, or a row of up to two axial panels, and room for 40 characters of text
  const int panel_w = static_cast<int>(m[0]);
  const int per_row = std::max(1, std::min(panels, std::max(1, views_w / std::max(panel_w, 1))));
  const int content_w = std::max({views_w, per_row * panel_w + (per_row - 1) * kGap, text_width(std::string(40, ' '), s)});
  const auto chars = static_cast<std::size_t>(content_w / (kCharWidth * s));
  if (!refused.empty()) {
    l.lines.push_back({"FIT REFUSED", kRefusedColour, s + 1});
    for (const std::string& w : wrap_text(refused, chars)) l.lines.push_back({w, kRefusedColour, s});
  }
  for (const std::string& t : text)
    for (const std::string& w : wrap_text(t, chars)) l.lines.push_back({w, kTextColour, s});
  for (const std::string& t : warnings)
    for (const std::string& w : wrap_text("! " + t, chars)) l.lines.push_back({w, kWarningColour, s});
  int x = 0;
  for (const LegendEntry& e : legend) {
    const int ew = legend_entry_width(e, s);
    if (l.legend_rows.empty() || (x + ew > content_w && x > 0)) l.legend_rows.emplace_back(), x = 0;
    l.legend_rows.back().push_back(e);
    x += ew;
  }
  int y = l.pad + 2;
  for (const BandLine& b : l.lines) y += kCharHeight * b.scale;
  l.legend_top = y;
  y += static_cast<int>(l.legend_rows.size()) * kCharHeight * s;
  y += kCharHeight * s;  // view letters
  l.top = y;
  l.coronal_left = l.pad;
  l.sagittal_left = l.pad + static_cast<int>(m[0]) + kGap;
  y += static_cast<int>(m[2]);
  if (panels > 0) {
    l.panel_label_height = kCharHeight * s + 2;
    for (int p = 0; p < panels; ++p) {
      const int col = p % per_row;
      if (col == 0) y += kGap + l.panel_label_height;
      l.panels.emplace_back(l.pad + col * (panel_w + kGap), y);
      if (col == per_row - 1 || p == panels - 1) y += static_cast<int>(m[1]);
    }
  }
  l.width = content_w + 2 * l.pad;
  l.height = y + l.pad;
  return l;
}

void draw_band(RgbImage& img, const Layout& l) {
  int row = l.pad + 2;
  for (const BandLine& b : l.lines) {
    draw_text(img, l.pad + 2, row, b.text, b.colour, b.scale);
    row += kCharHeight * b.scale;
  }
  const int s = l.scale;
  row = l.legend_top;
  for (const auto& entries : l.legend_rows) {
    int col = l.pad + 2;
    for (const LegendEntry& e : entries) {
      if (e.swatch) {
        fill_rect(img, col, row, col + 7 * s - 1, row + 7 * s - 1, e.colour);
        col += 9 * s;
        col = draw_text(img, col, row, e.label + "  ", kTextColour, s);
      } else {
        col = draw_text(img, col, row, e.label + "  ", e.colour, s);
      }
    }
    row += kCharHeight * s;
  }
  if (l.pad > 0) outline_rect(img, 0, 0, img.width - 1, img.height - 1, kRefusedColour, l.pad / 2);
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

// The box's name just above its top edge in the coronal view (inside the box when the edge is at the view's top),
// moved down past the names already written (`taken`: their rectangles, left, top, right, bottom).
void draw_box_label(RgbImage& img, const Layout& l, const Grid<Scanner>& grid, const Eigen::Vector3d& lower,
                    const Eigen::Vector3d& upper, const std::string& label, Rgb colour,
                    std::vector<std::array<int, 4>>& taken) {
  const PixelRange r = pixel_range(grid, lower, upper);
  const Index3& m = grid.size;
  if (r.hi[0] < r.lo[0] || r.hi[2] < r.lo[2] || r.hi[0] < 0 || r.lo[0] >= m[0] || r.hi[2] < 0 || r.lo[2] >= m[2]) return;
  const int col = l.coronal_left + static_cast<int>(std::clamp<std::int64_t>(r.lo[0], 0, m[0] - 1)) + 1;
  const int edge = l.top + static_cast<int>(m[2] - 1 - std::min(r.hi[2], m[2] - 1));
  const int h = 7 * l.scale, w = text_width(label, l.scale);
  int row = edge - 2 - h >= l.top ? edge - 2 - h : edge + 3;
  auto overlaps = [&](int top) {
    for (const auto& t : taken)
      if (col - 1 <= t[2] && col + w >= t[0] && top - 1 <= t[3] && top + h >= t[1]) return true;
    return false;
  };
  while (overlaps(row) && row + h < l.top + static_cast<int>(m[2])) row += h + 3;
  draw_label(img, col, row, label, colour, l.scale);
  taken.push_back({col - 1, row - 1, col + w, row + h});
}

// Fills each view's pixels half-transparently in the colour of the class most voxels along the ray belong to.
void fill_segmentation(RgbImage& img, const Layout& l, const Grid<Scanner>& display, const ClassVolume& vol,
                       const ClassViews& views) {
  const Index3 m = display.size, n = vol.grid.size;
  auto fill = [&](std::int64_t width, int left, int plane_axis, const std::vector<std::int8_t>& view) {
    for (std::int64_t k = 0; k < m[2]; ++k)
      for (std::int64_t x = 0; x < width; ++x) {
        ContinuousIndex d;
        d.v = Eigen::Vector3d(0.5 * static_cast<double>(m[0] - 1), 0.5 * static_cast<double>(m[1] - 1), static_cast<double>(k));
        d.v[plane_axis] = static_cast<double>(x);
        const Eigen::Vector3d ci = vol.grid.to_continuous_index(Point<Scanner>{display.to_world(d).mm}).v;
        const auto a = static_cast<std::int64_t>(std::llround(ci[plane_axis]));
        const auto z = static_cast<std::int64_t>(std::llround(ci[2]));
        if (a < 0 || z < 0 || a >= n[plane_axis] || z >= n[2]) continue;
        const std::int8_t c = view[static_cast<std::size_t>(z * n[plane_axis] + a)];
        if (c >= 0) img.blend(left + static_cast<int>(x), l.top + static_cast<int>(m[2] - 1 - k), class_colour(c), kFillAlpha);
      }
  };
  fill(m[0], l.coronal_left, 0, views.coronal);
  fill(m[1], l.sagittal_left, 1, views.sagittal);
}

// The 0.5 line of each class's mapped mean mask. `only_on_black`: leave pixels that already show something (the
// heatmap) alone; `dim` scales the colours.
void draw_atlas_outline(RgbImage& img, const Layout& l, const Grid<Scanner>& display, const AtlasViews& views,
                        bool only_on_black = false, double dim = 1.0) {
  const Index3 m = display.size;
  for (std::size_t c = 0; c < views.classes.size(); ++c) {
    Rgb colour = class_colour(views.classes[c]);
    for (auto& ch : colour) ch = static_cast<std::uint8_t>(std::lround(ch * dim));
    // a line as thick as the text's strokes (inwards and downwards from the 0.5 line, inside the view)
    auto put = [&](int left, std::int64_t width) {
      return [&, left, width](std::int64_t x, std::int64_t k) {
        for (int t = 0; t < l.scale; ++t)
          for (const auto& [dx, dk] : {std::pair<int, int>{t, 0}, std::pair<int, int>{0, -t}}) {
            const std::int64_t xx = x + dx, kk = k + dk;
            if (xx >= width || kk < 0) continue;
            const int col = left + static_cast<int>(xx), row = l.top + static_cast<int>(m[2] - 1 - kk);
            if (only_on_black && img.pixel(col, row) != Rgb{0, 0, 0}) continue;
            img.set(col, row, colour);
          }
      };
    };
    trace_half_line(views.coronal[c], m[0], m[2], put(l.coronal_left, m[0]));
    trace_half_line(views.sagittal[c], m[1], m[2], put(l.sagittal_left, m[1]));
  }
}

// What an axial panel shows besides the scan.
struct AxialContent {
  const ClassVolume* segmentation = nullptr;
  const MultiChannelImage<Atlas>* atlas = nullptr;
  Affine<Scanner, Atlas> scanner_to_atlas;
  std::vector<int> atlas_classes;
  const std::vector<PreviewBox>* boxes = nullptr;
  const std::map<std::string, Rgb>* box_colours = nullptr;
};

// The display grid's slice k (soft-tissue window, the scan's nearest voxel): segmentation filled, atlas outlined,
// the boxes that cross the slice outlined; the label above it.
void draw_axial_panel(RgbImage& img, const Layout& l, int left, int top, const Grid<Scanner>& display, std::int64_t k,
                      const Image<float>& scan, const AxialContent& content, const std::string& label) {
  const Index3 m = display.size;
  auto world = [&](std::int64_t i, std::int64_t j) {
    return display.to_world(Index3{{i, j, k}});
  };
  for (std::int64_t j = 0; j < m[1]; ++j)
    for (std::int64_t i = 0; i < m[0]; ++i) {
      const Point<Scanner> p = world(i, j);
      const Index3 q = scan.grid.nearest_index(p);
      std::uint8_t g = 0;
      if (scan.grid.contains(q)) {
        const double t = std::clamp((static_cast<double>(scan.voxels[scan.grid.linear(q)]) + 160.0) / 400.0, 0.0, 1.0);
        g = static_cast<std::uint8_t>(std::lround(255.0 * t));
      }
      const int col = left + static_cast<int>(i), row = top + static_cast<int>(j);
      img.set(col, row, Rgb{g, g, g});
      if (content.segmentation)
        if (const std::int8_t c = content.segmentation->at_world(p); c >= 0) img.blend(col, row, class_colour(c), kFillAlpha);
    }
  if (content.atlas) {
    const AtlasSampler sampler(*content.atlas, content.scanner_to_atlas);
    const auto nc = content.atlas_classes.size();
    std::vector<std::vector<float>> field(nc, std::vector<float>(static_cast<std::size_t>(m[0] * m[1]), 0.0f));
    std::array<std::size_t, 8> at{};
    std::array<double, 8> w{};
    for (std::int64_t j = 0; j < m[1]; ++j)
      for (std::int64_t i = 0; i < m[0]; ++i) {
        if (!sampler.corners(world(i, j).mm, at, w)) continue;
        for (std::size_t c = 0; c < nc; ++c)
          field[c][static_cast<std::size_t>(j * m[0] + i)] = sampler.value(content.atlas_classes[c], at, w);
      }
    for (std::size_t c = 0; c < nc; ++c) {
      const Rgb colour = class_colour(content.atlas_classes[c]);
      trace_half_line(field[c], m[0], m[1], [&](std::int64_t x, std::int64_t y) {
        for (int t = 0; t < l.scale; ++t) {
          if (x + t < m[0]) img.set(left + static_cast<int>(x + t), top + static_cast<int>(y), colour);
          if (y + t < m[1]) img.set(left + static_cast<int>(x), top + static_cast<int>(y + t), colour);
        }
      });
    }
  }
  if (content.boxes)
    for (const PreviewBox& b : *content.boxes) {
      const PixelRange r = pixel_range(display, b.box.lower.mm, b.box.upper.mm);
      if (k < r.lo[2] || k > r.hi[2]) continue;
      // draw_rect counts rows upwards from the bottom: panel row j = height - 1 - "k" with height m[1]
      draw_rect(img, left, static_cast<int>(m[0]), top, m[1], r.lo[0], r.hi[0], m[1] - 1 - r.hi[1], m[1] - 1 - r.lo[1],
                content.box_colours->at(b.label));
    }
  char z[64];
  std::snprintf(z, sizeof(z), "  axial z %.0f mm", display.to_world(Index3{{0, 0, k}}).mm.z());
  draw_text(img, left + 1, top - l.panel_label_height + 1, label + z, kTextColour, l.scale);
  const Rgb grey{170, 170, 170};  // the patient's sides, at the posterior edge (where the table lies)
  const int row = top + static_cast<int>(m[1]) - kCharHeight * l.scale;
  draw_text(img, left + static_cast<int>(m[0]) - kCharWidth * l.scale, row, "L", grey, l.scale);
  draw_text(img, left + 2, row, "R", grey, l.scale);
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
  if (overlay.segmentation) validate_grid(overlay.segmentation->grid, "preview segmentation");
  const bool max = options.projection == Projection::Max;
  const double s = auto_pixel_mm(scan_hu.grid, options);
  const DisplayViews d = display_views(scan_hu, s, max, [max](float hu) {
    return max ? hu : std::max(hu + 1000.0f, 0.0f) / 1000.0f;  // attenuation relative to water
  });
  const Index3 m = d.grid.size;

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

  // overlays: the segmentation's classes per view, the atlas' per class
  std::optional<ClassVolume> seg;
  ClassViews seg_views;
  if (overlay.segmentation) {
    seg = class_volume(*overlay.segmentation);
    seg_views = class_views(*seg);
  }
  std::vector<int> outlined;
  std::optional<AtlasViews> atlas;
  if (overlay.atlas_masks) {
    outlined = outlined_classes(*overlay.atlas_masks, overlay.atlas_classes);
    atlas = atlas_views(d.grid, *overlay.atlas_masks, overlay.scanner_to_atlas, outlined);
  }

  // legend: the boxes' labels, then the classes filled or outlined
  std::vector<LegendEntry> legend;
  std::map<std::string, Rgb> colours;
  for (const PreviewBox& b : overlay.boxes)
    if (!colours.count(b.label)) {
      colours[b.label] = box_colour(colours.size());
      legend.push_back({b.label + " box", colours[b.label], false});
    }
  std::set<int> legend_classes = seg_views.present;
  legend_classes.insert(outlined.begin(), outlined.end());
  for (int c : legend_classes) legend.push_back({class_names()[static_cast<std::size_t>(c)], class_colour(c), true});

  // axial slices: through each box's centre, or the scan's
  std::vector<std::pair<std::string, std::int64_t>> slices;
  if (overlay.axial_slices) {
    auto slice_at = [&](const Eigen::Vector3d& x) {
      const double k = d.grid.to_continuous_index(Point<Scanner>{x}).v[2];
      return std::clamp<std::int64_t>(static_cast<std::int64_t>(std::llround(k)), 0, m[2] - 1);
    };
    for (const PreviewBox& b : overlay.boxes) {
      if (static_cast<int>(slices.size()) == kMaxAxialSlices) break;
      slices.emplace_back(b.label, slice_at(0.5 * (b.box.lower.mm + b.box.upper.mm)));
    }
    if (overlay.boxes.empty()) slices.emplace_back("scan centre", slice_at(scan_hu.grid.centre().mm));
  }

  const Layout l = layout_for(m, static_cast<int>(slices.size()), overlay.refused, overlay.text, overlay.warnings, legend);
  Preview<Scanner> out;
  out.display_grid = d.grid;
  out.coronal_left = l.coronal_left;
  out.sagittal_left = l.sagittal_left;
  out.views_top = l.top;
  out.legend_classes.assign(legend_classes.begin(), legend_classes.end());
  out.image = RgbImage(l.width, l.height, Rgb{0, 0, 0});
  // Mean projection: squared, so soft tissue recedes and bone (the longer attenuation paths) stands out, as on a
  // radiograph; the maximum projection is shown linearly.
  const double gamma = max ? 1.0 : 2.0;
  paint_views(out.image, l, d, [lo, hi, gamma](float v) {
    const double t = std::pow(std::clamp(static_cast<double>((v - lo) / (hi - lo)), 0.0, 1.0), gamma);
    const auto g = static_cast<std::uint8_t>(std::lround(255.0 * t));
    return Rgb{g, g, g};
  });
  if (seg) fill_segmentation(out.image, l, d.grid, *seg, seg_views);
  if (atlas) draw_atlas_outline(out.image, l, d.grid, *atlas);
  for (const PreviewBox& b : overlay.boxes) draw_box(out.image, l, d.grid, b.box.lower.mm, b.box.upper.mm, colours[b.label]);
  std::vector<std::array<int, 4>> labels_taken;
  for (const PreviewBox& b : overlay.boxes)
    draw_box_label(out.image, l, d.grid, b.box.lower.mm, b.box.upper.mm, b.label, colours[b.label], labels_taken);
  AxialContent content;
  content.segmentation = seg ? &*seg : nullptr;
  content.atlas = overlay.atlas_masks;
  content.scanner_to_atlas = overlay.scanner_to_atlas;
  content.atlas_classes = outlined;
  content.boxes = &overlay.boxes;
  content.box_colours = &colours;
  for (std::size_t p = 0; p < slices.size(); ++p) {
    const auto [left, top] = l.panels[p];
    draw_axial_panel(out.image, l, left, top, d.grid, slices[p].second, scan_hu, content, slices[p].first);
    out.axial.push_back(AxialPanel{slices[p].first, left, top, slices[p].second});
  }
  draw_band(out.image, l);
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
  const Layout l = layout_for(d.grid.size, 0, "", text, {}, {});
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
  if (atlas_masks) {  // the heatmap's frame is the atlas's: identity map
    const auto identity = Affine<Scanner, Atlas>::identity();
    const AtlasViews views = atlas_views(d.grid, *atlas_masks, identity, outlined_classes(*atlas_masks, {}));
    draw_atlas_outline(out.image, l, d.grid, views, true, 0.6);
  }
  for (const Box<Atlas>& b : boxes) draw_box(out.image, l, d.grid, b.lower.mm, b.upper.mm, Rgb{0, 235, 255});
  draw_band(out.image, l);
  return out;
}

std::string preview_file_name(const std::string& input_path) { return image_stem(input_path) + "_preview.png"; }

Preview<Scanner> render_crop_preview(const Scan& scan, const Segmentation& segmentation, const Fit& fit,
                                     const CropPlan* plan, const AtlasModel& atlas) {
  PreviewOverlay overlay;
  overlay.segmentation = &segmentation.soft_masks;
  overlay.axial_slices = true;
  if (fit.has_transform) {
    overlay.atlas_masks = &atlas.masks;
    overlay.scanner_to_atlas = fit.scanner_to_atlas;
    overlay.atlas_classes = fit.initial.classes_seen;
  }
  overlay.refused = fit.refusal;
  std::string names;
  if (plan && fit.refusal.empty()) {
    // each region's crops as they are cut: the faces of the voxel ranges, in scanner mm
    for (const RegionPlan& region : plan->regions) {
      names += (names.empty() ? "" : ", ") + region.region.name;
      for (std::size_t b = 0; b < region.boxes.size(); ++b)
        if (!region.boxes[b].misses_scan)
          overlay.boxes.push_back(
              PreviewBox{region.region.name, voxel_range_extent(scan.image.grid, region.written_range(b))});
    }
  }
  overlay.text.push_back(image_stem(scan.info.path) + (names.empty() ? "" : "  crop: " + names));
  if (fit.has_transform) {
    char dice[96];
    std::snprintf(dice, sizeof(dice), ", fit Dice %.3f over %zu classes", fit.refined.dice, fit.initial.classes_seen.size());
    overlay.text.push_back("orientation " + fit.initial.orientation +
                           (fit.initial.searched ? " (searched)" : " (header trusted)") + dice);
  }
  overlay.text.push_back("segmentation " + segmentation.source);
  overlay.text.push_back("fill: segmentation, line: fitted atlas");
  overlay.warnings = scan.info.warnings;
  overlay.warnings.insert(overlay.warnings.end(), fit.warnings.begin(), fit.warnings.end());
  return render_scan_preview(scan.image, overlay);
}

}  // namespace ctarr
