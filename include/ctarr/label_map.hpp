// ctarr — hard labels from the network's probabilities: on the grid the network ran on (3 mm canonical), or on any
// other grid, above all the scan's own, looked up in world space.
//
// The network sees the scan at 3 mm. A label map on the scan's own voxels (what `ctarr segment` writes by default,
// and what a user overlays on the scan or feeds to a tool that expects the scan's grid) is not the 3 mm map looked up
// nearest: each of the scan's voxel centres is mapped to the 3 mm grid through both grids' origin, spacing and
// direction, the probabilities of the 8 surrounding 3 mm voxels are interpolated trilinearly, and the voxel takes
// the class with the highest interpolated probability. Boundaries then fall between the 3 mm voxel centres where
// the probabilities cross, not on the 3 mm voxel faces (measured on the validation CTs: most classes gain up to 0.046
// Dice; a thin class the network finds with low confidence shrinks, s0002's ribs lose 0.02-0.03; docs/TRAINING.md).
#pragma once

#include "ctarr/image.hpp"

#include <cstdint>

namespace ctarr {

// Hard labels (argmax; ties go to the lower label, so background wins a tie) of per-class probabilities on their own
// grid. Channel c is label c (channel 0 background).
Image<std::uint8_t> hard_labels(const MultiChannelImage<Scanner>& probabilities_with_background);

// Hard labels on `target`: at every voxel centre of `target`, the argmax (ties as hard_labels) of the probabilities
// interpolated trilinearly at that world position in `probabilities_with_background`'s grid. Positions outside that
// grid take the value at the nearest point of its voxel-centre box (edge replication: the 3 mm canonical grid covers
// the scan's extent, and the scan's edge voxel centres lie up to half a 3 mm voxel beyond its outermost centres).
// On the probabilities' own grid the result is hard_labels's. Exact and fast: a voxel whose 8 surrounding
// 3 mm voxels share one hard label takes it without interpolating (a mean with non-negative weights of vectors whose
// largest entry is c has its largest entry at c). Throws Internal for an image without channels or with more than
// 256, and UnsupportedGeometry for an invalid target grid.
Image<std::uint8_t> hard_labels_on_grid(const MultiChannelImage<Scanner>& probabilities_with_background,
                                        const Grid<Scanner>& target);

}  // namespace ctarr
