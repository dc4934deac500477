// ctarr — the stages composed: segment a scan, fit it to the atlas, crop regions, write crops and records.
#pragma once

#include "ctarr/atlas.hpp"
#include "ctarr/crop.hpp"
#include "ctarr/io.hpp"
#include "ctarr/network.hpp"
#include "ctarr/preprocess.hpp"
#include "ctarr/refine.hpp"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ctarr {

// Folder holding models/, atlas/ and regions/: $CTARR_DATA_DIR if set, else the installed share folder, else the
// source tree ctarr was built from.
std::string default_data_dir();

// Below this fit Dice, Pipeline::fit throws FitFailed instead of returning a transform (the synthetic and real
// --seg fits in the tests reach 0.67-0.76; a model that sees nothing gives < 0.01).
constexpr double kMinFitDice = 0.1;

struct PipelineOptions {
  std::string model_path;   // empty: <data>/models/ctarr-unet.safetensors
  std::string atlas_dir;    // empty: <data>/atlas
  std::string regions_dir;  // empty: <data>/regions
  DeviceSpec device;
  bool reference_inference = false;  // true: every tile in float32 (the reference); false: fast_predict_options
  LandmarkOptions landmarks;
  RefineOptions refine;
};

// 19 soft masks on the canonical isotropic grid of a scan, and where they came from.
struct Segmentation {
  MultiChannelImage<Scanner> soft_masks;  // kNumClasses channels, probabilities
  Reorientation reorientation;            // input grid -> canonical grid
  std::string source;                     // "network:<model id>" or "labels:<path> (<label set>)"
};

struct Fit {
  InitialFit initial;
  RefineResult refined;
  Affine<Scanner, Atlas> scanner_to_atlas;
  std::vector<std::string> warnings;
};

class Pipeline {
 public:
  explicit Pipeline(PipelineOptions options);
  ~Pipeline();

  const PipelineOptions& options() const { return options_; }
  const AtlasModel& atlas() const { return atlas_; }
  std::string model_id();  // loads the network on first use

  // Runs the network (loaded once, on first use).
  Segmentation segment(const Scan& scan);
  // Uses a label map instead of the network: ctarr's 19 classes, TotalSegmentator v1/v2 multilabel files, or a
  // folder of TotalSegmentator per-structure masks. Its grid is read from the file(s).
  Segmentation segmentation_from_labels(const std::string& path) const;
  // Landmark initialisation + orientation search + Dice refinement.
  Fit fit(const Segmentation& segmentation) const;

 private:
  PipelineOptions options_;
  AtlasModel atlas_;
  MultiChannelImage<Atlas> fit_target_;  // the atlas as the Dice refinement sees it
  std::unique_ptr<Network> network_;
};

// Hard 19-class labels (argmax; background where no class beats it) of a segmentation, on its grid.
Image<std::uint8_t> hard_labels(const MultiChannelImage<Scanner>& probabilities_with_background);

// ---- the crop command ---------------------------------------------------------------------------------------

struct CropRequest {
  std::vector<std::string> inputs;   // image files or DICOM folders
  std::vector<std::string> regions;  // region names (regions_dir/<name>.json) or paths to region JSON files
  std::string out_dir = ".";
  std::string extension = ".nii.gz";  // crop format: .nii.gz, .nii, .nrrd or .mha
  std::optional<std::string> seg;    // external segmentation (one input only)
  CropOptions crop;
  PipelineOptions pipeline;
};

struct CropOutcome {
  std::string input;
  std::string region;
  std::vector<std::string> files;  // crops written
  std::string record_path;         // JSON record
  bool missed = false;             // no box met the scan: nothing but the record written
  std::vector<std::string> warnings;
};

// Crops every region out of every input. Progress and warnings go through log.hpp. Throws on the first error
// that stops an input (unreadable input, fit failure, unwritable output).
std::vector<CropOutcome> run_crop(const CropRequest& request);

// One input, already read and fitted: writes crops + record for each region.
std::vector<CropOutcome> crop_regions(const Scan& scan, const Fit& fit, const std::vector<Region>& regions,
                                      const CropRequest& request, const std::string& model_id,
                                      const std::string& atlas_id, const std::string& segmentation_source);

// ---- the segment command ------------------------------------------------------------------------------------

struct SegmentRequest {
  std::string input;
  std::string output;  // 19-class label map on the 3 mm canonical grid
  PipelineOptions pipeline;
};
void run_segment(const SegmentRequest& request);

}  // namespace ctarr
