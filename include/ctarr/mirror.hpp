// ctarr — the mirrored pass of `ctarr segment`: the network runs a second time on the scan mirrored left-right, and
// the two passes vote on every class whose mirror image is still anatomy.
//
// A network trained on few bodies learns asymmetries that are not anatomy (on the validation CT s0002 the shipped
// model found the left ribs worse than the right ones, and better in the mirror image). Shown the mirror image, it
// makes different errors; the mean of the two passes' probabilities cancels part of them. The liver, spleen and heart lie on one side of every body (share/classes.json "lateralised"): their mirror
// image is not anatomy and the mirrored pass's opinion of them is not averaged in (measured: it lowers their Dice;
// docs/TRAINING.md). No interpolation: the mirror reverses the canonical grid's x index axis (patient left-right when
// the header is right), every voxel keeps its world position (preprocess.hpp's Reorientation).
#pragma once

#include "ctarr/image.hpp"
#include "ctarr/preprocess.hpp"

namespace ctarr {

// The canonical grid with its x index axis reversed.
Reorientation left_right_mirror();

// Combines the network's probabilities over a scan (`prob`: background + the 19 classes, channels in label order)
// with those over its left-right mirror image (`mirrored`: the network's output on turn_channels(input,
// left_right_mirror()), put back on prob's grid with unturn_channels, so that its channel c still means "the class
// with label c in the mirror image"). Per voxel: channel c of every class that is not lateralised becomes the mean of
// prob[c] and mirrored[mirror_label(c)]; background and the lateralised classes keep prob's; then the channels are
// scaled to sum to 1. Throws Internal when the two images' grids or channel counts differ or are not
// kNumClasses + 1.
void combine_mirrored_pass(MultiChannelImage<Scanner>& prob, const MultiChannelImage<Scanner>& mirrored);

}  // namespace ctarr
