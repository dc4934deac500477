// ctarr — turned passes: the network run again on a scan turned by one of the orientation search's candidates, for
// scans whose header lies about how the patient lies.
//
// The orientation search (landmarks.hpp) finds a lying header from the soft masks, which works when the masks are
// right. A network that has learnt anatomy mostly from upright patients segments a scan turned by 90 degrees (or
// flipped head to feet) poorly, so its masks cannot tell the search the truth. A turned pass shows the network the
// scan as it would look if orientation candidate R were the truth: the canonical 3 mm grid's index axes are permuted
// and flipped (no interpolation: every voxel keeps its world position, preprocess.hpp's Reorientation), the network
// runs on that array, and its probabilities are put back on the canonical grid. The fit of each pass is scored by its
// Dice with the atlas; the best one is kept (Pipeline::segment_and_fit).
#pragma once

#include "ctarr/image.hpp"
#include "ctarr/preprocess.hpp"

#include <string>
#include <vector>

namespace ctarr {

// The index-axis permutation and flips that show a scan, whose fit needs `rotation` (x_atlas ~ rotation * x_scanner,
// a signed permutation: an OrientationCandidate's), to the network as an upright one: canonical axis a of the turned
// grid runs along scanner direction rotation^T e_a (the atlas axis a, as it lies in this scan). Throws Internal when
// `rotation` is not a signed permutation matrix.
Reorientation turn_for_orientation(const Eigen::Matrix3d& rotation);

// `image` with its index axes permuted and flipped by `turn`; out.grid == reorient_grid(image.grid, turn), so every
// voxel keeps its world position.
MultiChannelImage<Scanner> turn_channels(const MultiChannelImage<Scanner>& image, const Reorientation& turn);

// The inverse: channels on `turned_grid` (== reorient_grid(original, turn)) put back on `original`.
MultiChannelImage<Scanner> unturn_channels(const MultiChannelImage<Scanner>& turned, const Grid<Scanner>& original,
                                           const Reorientation& turn);

// One network pass a fit tried, in the record ("fit.network_passes").
struct NetworkPass {
  std::string turn;     // orientation candidate the scan was shown to the network as ("identity": as stored)
  double dice = 0.0;    // fit Dice of this pass's segmentation (0 when its fit failed)
  int classes = 0;      // classes its fit used
  std::string orientation;  // the orientation its fit found ("" when its fit failed)
  double score = 0.0;   // pass_score(dice, classes): the passes are compared by this (Pipeline::segment_and_fit)
  std::string error;    // its fit's failure ("" when it fitted)
  bool kept = false;    // the pass the crop uses
};

// How much anatomy a pass's fit explains: its fit Dice x sqrt(classes used). The Dice alone cannot compare passes:
// shown a scan turned the wrong way, the network finds an organ or two and a translation-only fit of one organ can
// reach a higher Dice than the right pass's fit of five (s0009, step-8142 model: 0.63 x 1 against 0.46 x 5). Dice x
// classes rewarded the spurious classes of a wrong pass instead: with the step-21837 model the upright s0002 head's
// as-stored pass (0.42 x 1, brain) lost to its 180-degree pass (0.24 x 2). The square root sits between the two;
// on every pass of the 31 crop checks (docs/TRAINING.md, run 10) it keeps the right orientation.
double pass_score(double dice, int classes);

// Whether a pass with `score` replaces the best pass so far: a turned pass must beat the pass over the scan as
// stored by margin x sqrt(its classes) (the header gets the benefit of the doubt); other passes by any amount.
bool pass_replaces(double score, int classes, double best_score, bool best_is_as_stored, double margin);

}  // namespace ctarr
