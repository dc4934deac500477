// ctarr — pictures for checking a fit at a glance: coronal and sagittal projections of a scan with the segmentation
// the fit used (filled in colour), the fitted atlas (outlined), the crop boxes (named) and axial slices through them
// (or projections of an atlas-space heatmap with region boxes), written as PNG files.
//
// Views (docs/CLI.md, "Pictures"): both are drawn from the scan's canonical grid (its axes permuted and flipped to
// lie closest to LPS, preprocess.hpp), so the picture does not depend on how the voxels are stored. Coronal view:
// patient's head up, patient's right on the image's left (radiological convention). Sagittal view: head up,
// anterior on the left. Display pixels are square, `pixel_mm` on a side, so distances read true in both views.
// A scan whose header lies (e.g. a 90° turn the fit found) is shown as its header states it; the fit's
// orientation is written in the corner.
#pragma once

#include "ctarr/atlas.hpp"
#include "ctarr/crop_plan.hpp"
#include "ctarr/fit.hpp"
#include "ctarr/io.hpp"
#include "ctarr/picture.hpp"
#include "ctarr/regions.hpp"

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace ctarr {

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

// Most axial slices one picture shows (one per box, in the order given).
constexpr int kMaxAxialSlices = 4;

struct PreviewOverlay {
  std::vector<PreviewBox> boxes;  // outlined in both projections and the axial slices; named above, in the coronal view
  const MultiChannelImage<Atlas>* atlas_masks = nullptr;  // optional: mean masks, outlined where their trilinear
                                                          // value reaches 0.5 after mapping into the scan
  Affine<Scanner, Atlas> scanner_to_atlas;                // the fit, for atlas_masks
  std::vector<int> atlas_classes;                         // the classes (0-based) outlined; empty: every class
  // Optional: soft masks (kNumClasses channels, probabilities or label fractions) on a grid in the scan's frame. A
  // voxel belongs to its most likely class where that reaches 0.5. Each projection pixel is filled (half
  // transparent) in the colour of the class most voxels along its ray belong to; each axial slice pixel in its
  // voxel's class.
  const MultiChannelImage<Scanner>* segmentation = nullptr;
  // Below the projections: an axial slice (soft-tissue window) through the centre of each box, or through the
  // scan's centre when there is no box.
  bool axial_slices = false;
  std::vector<std::string> text;      // lines written in the top band (wrapped to the picture's width)
  std::vector<std::string> warnings;  // lines written in orange below them
  std::string refused;                // non-empty: the picture of a refused fit: a red frame, "FIT REFUSED" and this
};

// An axial slice in the picture: display pixel (column c, row r) of the panel shows the display-grid voxel
// (i = c, j = r, k): patient's right on the left, anterior at the top.
struct AxialPanel {
  std::string label;
  int left = 0;
  int top = 0;
  std::int64_t k = 0;
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
  std::vector<AxialPanel> axial;     // PreviewOverlay::axial_slices
  std::vector<int> legend_classes;   // the classes (0-based) named in the legend: filled or outlined
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

// The crop command's picture of one scan, rendered, and where it goes.
struct CropPicture {
  Preview<Scanner> preview;
  std::string path;  // OUT/<stem>_preview.png
};

// The crop command's picture for one scan: the segmentation the fit used, filled; the atlas (mean masks mapped by the
// fit) outlined for the classes the fit saw; every planned region's crop box (the voxels its crop covers: margin,
// --pad and --z-only as cropped) outlined and named, and an axial slice through each; the orientation found, the fit
// Dice, the segmentation's source and the fit's warnings in the band. A refused fit (Fit::refusal) is drawn as such:
// red frame, the reason, its atlas outline where a transform was found, no boxes (`plan` is null then).
Preview<Scanner> render_crop_preview(const Scan& scan, const Segmentation& segmentation, const Fit& fit,
                                     const CropPlan* plan, const AtlasModel& atlas);

}  // namespace ctarr
