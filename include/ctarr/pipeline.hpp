// ctarr — the stages composed: segment a scan, fit it to the atlas, crop regions, write crops and records.
#pragma once

#include "ctarr/atlas.hpp"
#include "ctarr/batch.hpp"
#include "ctarr/crop.hpp"
#include "ctarr/dataset.hpp"
#include "ctarr/fit.hpp"
#include "ctarr/io.hpp"
#include "ctarr/label_map.hpp"
#include "ctarr/network.hpp"
#include "ctarr/preprocess.hpp"
#include "ctarr/record.hpp"
#include "ctarr/refine.hpp"
#include "ctarr/turns.hpp"
#include "ctarr/uncrop.hpp"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ctarr {

// Folder holding models/, atlas/ and regions/: $CTARR_DATA_DIR if set, else the installed share folder (found
// beside the running executable, <prefix>/bin/../share/ctarr, then at the prefix configured at build time), else
// the source tree ctarr was built from.
std::string default_data_dir();

// Below this fit Dice, Pipeline::fit throws FitFailed instead of returning a transform (the synthetic and real
// --seg fits in the tests reach 0.67-0.76; a model that sees nothing gives < 0.01).
constexpr double kMinFitDice = 0.1;
// Below this fit Dice the crop is written with a "low_fit_dice" warning: check it (the fits of complete torsos in
// the tests reach 0.67-0.76).
constexpr double kLowFitDice = 0.5;
// A turned network pass (turns.hpp) replaces the pass over the scan as stored only when its score (pass_score: fit
// Dice x sqrt(classes used)) is higher by more than this x sqrt(classes): the header gets the benefit of the doubt.
constexpr double kTurnedPassMargin = 0.02;

struct PipelineOptions {
  std::string model_path;   // empty: <data>/models/ctarr-unet.safetensors
  std::string atlas_dir;    // empty: <data>/atlas
  std::string regions_dir;  // empty: <data>/regions
  DeviceSpec device;
  bool reference_inference = false;  // true: every tile in float32 (the reference); false: fast_predict_options
  LandmarkOptions landmarks;
  RefineOptions refine;
  double min_fit_dice = kMinFitDice;  // fit() refuses (FitFailed) below this; tests lower it to compare weak fits
  // segment_and_fit: when the fit of the network's pass over the scan as stored has a Dice below this (or fails, or
  // saw too few classes to search the orientation),
  // the network runs again on the scan turned by the other orientation candidates (turns.hpp), one after the other
  // until a pass fits with a Dice of at least this, and the pass whose fit explains the most anatomy (Dice x
  // classes used) is kept. 0: never (one pass); above 1: every candidate.
  double turned_passes_below_dice = kLowFitDice;
};

// `options` with empty model, atlas and regions paths replaced by those in default_data_dir().
PipelineOptions with_default_paths(PipelineOptions options);

class Pipeline {
 public:
  explicit Pipeline(PipelineOptions options);
  ~Pipeline();

  const PipelineOptions& options() const { return options_; }
  const AtlasModel& atlas() const { return atlas_; }
  std::string model_id();  // loads the network on first use

  // Runs the network (loaded once, on first use) over the scan as stored; with `mirror_pass` (as `ctarr segment` by
  // default), a second time over its left-right mirror image, the two combined as mirror.hpp says (twice the network
  // time). The crop's fit runs one pass per orientation (segment_and_fit).
  Segmentation segment(const Scan& scan, bool mirror_pass = true);
  // Runs the network over the scan as stored and fits it; when that fit's Dice is below
  // options().turned_passes_below_dice, or it fails, runs the network again on the scan turned by the other
  // orientation candidates (turns.hpp) until a pass reaches that Dice, and keeps the pass with the highest Dice x
  // classes used (Fit::network_passes lists every pass). Throws the as-stored pass's FitFailed when no pass fits. `between_passes` runs before each
  // turned pass (a stop check).
  // `keep_refused`: when no pass fits, return the as-stored pass with its Fit::refusal set instead of throwing (the
  // crop command draws the refused fit).
  NetworkFit segment_and_fit(const Scan& scan, const std::function<void()>& between_passes = {},
                             bool keep_refused = false);
  // Uses a label map instead of the network: ctarr's 19 classes, TotalSegmentator v1/v2 multilabel files, or a
  // folder of TotalSegmentator per-structure masks. Its grid is read from the file(s).
  Segmentation segmentation_from_labels(const std::string& path) const;
  // The same from a label map in memory (ctarr's 19 classes or a TotalSegmentator v1/v2 multilabel map); `name`
  // stands for it in messages and in the segmentation's source.
  Segmentation segmentation_from_label_map(const Image<std::uint16_t>& labels, const std::string& name) const;
  // Landmark initialisation + orientation search + Dice refinement. Throws FitFailed when the fit is refused (too
  // few anatomies, diverged, or Dice < options().min_fit_dice).
  Fit fit(const Segmentation& segmentation) const;
  // As fit(), but a refused fit is returned with Fit::refusal set (and Fit::has_transform false where there is no
  // transform) instead of thrown. Other errors are thrown.
  Fit fit_or_refusal(const Segmentation& segmentation) const;

 private:
  Segmentation segmentation_from_ctarr_labels(const Image<std::uint8_t>& labels, const std::string& name,
                                              const std::string& set_name) const;
  PreprocessResult network_input(const Scan& scan);  // loads the network; canonical grid, its spacing and windows
  // The network over the scan shown turned as `turn` says; with `mirror`, combined with its mirrored pass.
  Segmentation network_pass(const PreprocessResult& input, const OrientationCandidate& turn, bool mirror);

  PipelineOptions options_;
  AtlasModel atlas_;
  std::unique_ptr<Network> network_;
};

// The grid a label map is written on: the scan's own voxels (its origin, spacing, direction and size; the 3 mm
// probabilities interpolated there, label_map.hpp), or the 3 mm canonical grid the network ran on.
enum class LabelGrid { Scan, Network };
struct LabelMapOptions {
  bool mirror_pass = true;      // combine the network's pass with its pass over the left-right mirror image (mirror.hpp)
  bool all_components = false;  // keep every piece of the one-piece classes
  LabelGrid grid = LabelGrid::Scan;
};
// The network's 19-class label map of a scan (0 background), as `ctarr segment` writes it: the network's pass, with
// its mirrored pass unless !mirror_pass, turned into hard labels on the scan's own grid (hard_labels_on_grid) or on
// the 3 mm canonical grid (hard_labels); then each one-piece class (classes.hpp: one_piece_labels) keeps only its
// largest connected component on that grid, unless all_components. (The crop's fit reads the soft masks of a single
// pass, not this map.)
Image<std::uint8_t> segment_labels(Pipeline& pipeline, const Scan& scan, const LabelMapOptions& options = {});

// ---- the crop command ---------------------------------------------------------------------------------------

struct CropRequest {
  std::vector<std::string> inputs;           // image files or DICOM folders (one case each)
  std::optional<std::string> dataset_dir;    // or: an MSD / nnU-Net dataset folder (imagesTr/, labelsTr/, imagesTs/)
  std::vector<std::string> regions;  // region names (regions_dir/<name>.json) or paths to region JSON files
  std::string out_dir = ".";
  std::string extension = ".nii.gz";  // crop format: .nii.gz, .nii, .nrrd or .mha
  std::optional<std::string> seg;     // external segmentation (one input only)
  std::optional<std::string> seg_dir; // external segmentations, one per case (dataset.hpp: find_segmentation)
  bool preview = false;                // also write OUT/<stem>_preview.png per input (preview.hpp)
  CropOptions crop;
  PipelineOptions pipeline;
  Shard shard;                        // this job's part of the sorted case list
  bool overwrite = false;             // redo cases whose record and crops exist (default: skip them: resume)
  bool stop_on_signals = false;       // SIGINT/SIGTERM stop the batch between steps (the CLI sets it)
  ProgressCallback progress;          // called as cases start and finish (the CLI draws a bar on a terminal)
  std::string command;                // the command line, shown on the QA page ("" none)
};

// What a crop run did. Plain inputs: OUT/<stem>_<region>[_k]<ext> + OUT/<stem>_<region>.json. Dataset mode:
// ROOT/<images subset>/<case>[_k]<channel suffix><ext>, ROOT/<labels subset>/<case>[_k]<ext>, ROOT/dataset.json,
// with ROOT = OUT for one region and OUT/<region> for several, and records in OUT/records/<case>_<region>.json.
struct CropRun {
  std::vector<CropSummary> rows;    // one per case and region, in case order (cases after a stop are absent)
  std::string summary_json;         // OUT/summary.json (summary_shard-I-of-N.json with --shard N > 1); "" if none
  std::string summary_csv;          // likewise .csv; none for a single plain input
  std::string summary_html;         // likewise .html: the QA page (qa_page.hpp)
  int stop_signal = 0;              // SIGINT/SIGTERM that stopped the run, or 0
  // 0: every region of every case cropped (or skipped as done); NoOverlap (8): some region missed its scan;
  // a case failed: that case's ErrorCode when the run had one case, SomeCasesFailed (9) otherwise;
  // Interrupted (130) / Terminated (143) after a stop request.
  int exit_code = 0;
};

// Crops every region out of every case: model, atlas and regions are loaded once. A failing case (unreadable,
// fit failed, existing output without `overwrite`, ...) is reported in its rows and the batch goes on; nothing
// of a failed or stopped case stays on disk. Throws (before any case) for bad requests, unknown regions or an
// unwritable output folder, and ModelFailure (after writing the summary) when the model cannot be loaded.
CropRun run_crop(const CropRequest& request);

// ---- the uncrop command -------------------------------------------------------------------------------------

// run_uncrop: uncrop.hpp

// ---- the segment command ------------------------------------------------------------------------------------

struct SegmentRequest {
  std::string input;
  std::string output;  // 19-class label map (LabelMapOptions::grid: the scan's grid or the 3 mm canonical grid)
  PipelineOptions pipeline;
  LabelMapOptions label_map;
};
// Reads, segments (network) and writes the hard 19-class labels (segment_labels) with the grid's origin, spacing and
// direction in the file (LPS mm).
void run_segment(const SegmentRequest& request);

}  // namespace ctarr
