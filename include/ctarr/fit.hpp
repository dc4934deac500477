// ctarr — a scan's segmentation and its fit to the atlas: what Pipeline (pipeline.hpp) produces, and what the crop
// plan (crop_plan.hpp), the preview (preview.hpp) and the record read. Types only.
#pragma once

#include "ctarr/image.hpp"
#include "ctarr/landmarks.hpp"
#include "ctarr/preprocess.hpp"
#include "ctarr/refine.hpp"
#include "ctarr/turns.hpp"

#include <string>
#include <vector>

namespace ctarr {

// 19 soft masks on the canonical isotropic grid of a scan, and where they came from.
struct Segmentation {
  MultiChannelImage<Scanner> soft_masks;  // kNumClasses channels, probabilities
  Reorientation reorientation;            // input grid -> canonical grid
  std::string source;                     // "network:<model id>" or "labels:<path> (<label set>)"
  bool from_network = false;              // probabilities of the network (else fractions of a label map)
  // Network: the orientation candidate the scan was shown to the network as ("identity": as stored; turns.hpp).
  // A fit that sees too few classes for the orientation search assumes this orientation.
  std::string turn = "identity";
  Eigen::Matrix3d turn_rotation = Eigen::Matrix3d::Identity();
};

struct Fit {
  InitialFit initial;
  RefineResult refined;
  Affine<Scanner, Atlas> scanner_to_atlas;
  std::vector<std::string> warnings;
  std::vector<std::string> warning_codes;  // warning_code values (record.hpp) of `warnings`, distinct
  std::vector<NetworkPass> network_passes; // segment_and_fit: every network pass tried, in order ("identity" first)
  // Pipeline::fit_or_refusal: non-empty when the fit is refused (the FitFailed message Pipeline::fit throws).
  std::string refusal;
  // false when no transform was found (too few anatomies for landmarks, or the refinement diverged): then
  // scanner_to_atlas is the identity and means nothing. A fit refused for its low Dice has its transform.
  bool has_transform = true;
};

// A scan segmented by the network and fitted (Pipeline::segment_and_fit).
struct NetworkFit {
  Segmentation segmentation;  // the kept pass's, on the scan's canonical grid
  Fit fit;
};

}  // namespace ctarr
