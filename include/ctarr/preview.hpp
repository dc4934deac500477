// ctarr — pictures for checking a fit at a glance: coronal and sagittal projections of a scan with the fitted atlas
// outline and the crop boxes (or of an atlas-space heatmap with region boxes), written as PNG files.
//
// Views (docs/CLI.md, "Pictures"): both are drawn from the scan's canonical grid (its axes permuted and flipped to
// lie closest to LPS, preprocess.hpp), so the picture does not depend on how the voxels are stored. Coronal view:
// patient's head up, patient's right on the image's left (radiological convention). Sagittal view: head up,
// anterior on the left. Display pixels are square, `pixel_mm` on a side, so distances read true in both views.
// A scan whose header lies (e.g. a 90° turn the fit found) is shown as its header states it; the fit's
// orientation is written in the corner.
#pragma once

#include "ctarr/pipeline.hpp"
#include "ctarr/regions.hpp"

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
};

// The bytes of a PNG file holding `image` (8-bit RGB, zlib-compressed). Throws Internal for an empty picture.
std::string encode_png(const RgbImage& image);
// Writes encode_png(image) atomically (temporary file, then rename). Throws OutputNotWritable naming the path.
void write_png(const RgbImage& image, const std::string& path);

// Writes `text` (ASCII; lower case drawn as upper case, unknown characters as '?') with a 5x7 bitmap font scaled
// by `scale`, top-left corner at (column, row). Returns the column after the last character.
int draw_text(RgbImage& image, int column, int row, const std::string& text, Rgb colour, int scale = 1);

enum class Projection {
  Mean,  // pseudo-X-ray: mean attenuation along the ray (HU + 1000, clamped at 0), scaled to its 99.5th percentile
  Max,   // maximum intensity projection, HU window [-300, 1300]
};

struct PreviewOptions {
  Projection projection = Projection::Mean;
  double pixel_mm = 0.0;  // display pixel side, mm; 0: the scan's finest spacing, coarsened until the longest side
                          // of a view is at most max_pixels, or divided by the smallest whole number that makes
                          // it at least min_pixels
  int max_pixels = 512;
  int min_pixels = 400;
};

// A crop's extent in the scan (scanner mm, LPS), outlined in both views; boxes sharing a label share a colour.
struct PreviewBox {
  std::string label;
  Box<Scanner> box;
};

struct PreviewOverlay {
  std::vector<PreviewBox> boxes;
  const MultiChannelImage<Atlas>* atlas_masks = nullptr;  // optional: mean masks, outlined (one colour per class)
                                                          // where >= 0.5 after mapping into the scan
  Affine<Scanner, Atlas> scanner_to_atlas;                // the fit, for atlas_masks
  std::vector<std::string> text;                          // lines written in the top-left corner
};

// A rendered picture and where its views lie. Display pixel (column c, row r) of the coronal view shows the
// display-grid voxels (i = c, k = size_k - 1 - r) projected along j; the sagittal view shows (j = c, same k)
// projected along i. Coronal view at columns [coronal_left, coronal_left + size_i), sagittal at
// [sagittal_left, sagittal_left + size_j), both at rows [views_top, views_top + size_k).
template <class Frame>
struct Preview {
  RgbImage image;
  Grid<Frame> display_grid;  // canonical axes, isotropic pixel_mm spacing, covering the input grid
  int coronal_left = 0;
  int sagittal_left = 0;
  int views_top = 0;
};

// Scan (HU) -> canonical grid -> projections resampled to square pixels -> atlas outline, boxes, text.
Preview<Scanner> render_scan_preview(const Image<float>& scan_hu, const PreviewOverlay& overlay,
                                     const PreviewOptions& options = {});

// Maximum projections of an atlas-space heatmap (values in [0, 1], colour map black-red-yellow-white), the
// region's boxes (atlas mm) outlined, `text` in the corner; when `atlas_masks` is given (on the heatmap's frame),
// their outlines (>= 0.5) are drawn dimmed where the heatmap is 0, for orientation. Pixels are the atlas spacing
// divided by a whole zoom factor chosen so the longest side of the views is at least `min_height` pixels.
Preview<Atlas> render_heatmap_preview(const Image<float, Atlas>& heatmap, const std::vector<Box<Atlas>>& boxes,
                                      const std::vector<std::string>& text, int min_height = 400,
                                      const MultiChannelImage<Atlas>* atlas_masks = nullptr);

// File name of a scan's preview: "<stem>_preview.png".
std::string preview_file_name(const std::string& input_path);

// The crop command's picture for one fitted scan: OUT/<stem>_preview.png with the atlas (mean masks mapped by
// the fit) outlined, every region's crop box (its margin and --pad / --z-only as cropped) outlined and named, the
// orientation found and the fit Dice in the corner. Returns the path written. Throws OutputNotWritable.
std::string write_crop_preview(const Scan& scan, const Fit& fit, const std::vector<Region>& regions,
                               const CropRequest& request, const AtlasModel& atlas);

}  // namespace ctarr
