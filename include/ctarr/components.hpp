// ctarr — connected components of a voxel mask (26-neighbourhood), and the one-piece clean-up of a label map:
// an organ that is one piece of tissue (share/classes.json "one_piece") keeps its largest component only.
#pragma once

#include "ctarr/image.hpp"

#include <cstdint>
#include <vector>

namespace ctarr {

// Connected components of the voxels where `on` is non-zero, `on` laid out on a grid of `size` (x fastest).
// Neighbours share a face, an edge or a corner (26-neighbourhood). Each component lists its linear voxel indices;
// components come in the order of their first voxel in memory.
std::vector<std::vector<std::int64_t>> connected_components(const std::vector<std::uint8_t>& on, const Index3& size);

struct PiecesRemoved {
  int pieces = 0;               // components of the label other than the kept one
  std::int64_t voxels = 0;      // their voxels, now background (0)
};

// Keeps only the largest connected component of label `value` in `labels` (ties: the component whose first voxel
// comes first in memory); the voxels of its other components become background. A label absent from the map, or
// in one piece, is left as it is.
PiecesRemoved keep_largest_component(LabelImage& labels, std::uint8_t value);

}  // namespace ctarr
