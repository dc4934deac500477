// ctarr — turned passes: index-axis turns of the canonical grid (no interpolation).
#include "ctarr/turns.hpp"

#include "ctarr/error.hpp"
#include "parallel.hpp"

#include <algorithm>
#include <cmath>

namespace ctarr {

Reorientation turn_for_orientation(const Eigen::Matrix3d& rotation) {
  // Turned axis a runs along rotation^T e_a = row a of rotation; for a signed permutation that row has one entry
  // +-1, at column j: canonical axis j, reversed when the entry is -1.
  Reorientation turn;
  std::array<bool, 3> used{false, false, false};
  for (int a = 0; a < 3; ++a) {
    int axis = -1;
    for (int j = 0; j < 3; ++j) {
      const double v = rotation(a, j);
      if (std::abs(std::abs(v) - 1.0) < 1e-9) {
        if (axis >= 0) axis = 3;  // two unit entries in one row
        else axis = j;
      } else if (std::abs(v) > 1e-9) {
        axis = 3;
      }
    }
    if (axis < 0 || axis > 2 || used[static_cast<std::size_t>(axis)])
      throw Error(ErrorCode::Internal, "turn_for_orientation: the rotation is not a signed permutation matrix");
    used[static_cast<std::size_t>(axis)] = true;
    turn.axis[static_cast<std::size_t>(a)] = axis;
    turn.flip[static_cast<std::size_t>(a)] = rotation(a, axis) < 0.0;
  }
  return turn;
}

namespace {

// Copies every channel between `image` (on `original`) and its turned copy (on reorient_grid(original, turn)):
// turned[idx] = image[reoriented_to_original(idx)] when `forward`, the reverse otherwise.
void copy_turned(const float* from, float* to, const Grid<Scanner>& original, const Grid<Scanner>& turned,
                 const Reorientation& turn, int channels, bool forward) {
  const Index3 n = turned.size;
  const auto voxels = static_cast<std::size_t>(original.voxels());
  parallel_for(n[2], [&](std::int64_t k) {
    Index3 idx;
    idx[2] = k;
    for (idx[1] = 0; idx[1] < n[1]; ++idx[1])
      for (idx[0] = 0; idx[0] < n[0]; ++idx[0]) {
        const std::size_t t = turned.linear(idx);
        const std::size_t o = original.linear(reoriented_to_original(idx, original, turn));
        for (int c = 0; c < channels; ++c) {
          const std::size_t off = static_cast<std::size_t>(c) * voxels;
          if (forward) to[off + t] = from[off + o];
          else to[off + o] = from[off + t];
        }
      }
  });
}

}  // namespace

MultiChannelImage<Scanner> turn_channels(const MultiChannelImage<Scanner>& image, const Reorientation& turn) {
  MultiChannelImage<Scanner> out(reorient_grid(image.grid, turn), image.channels);
  copy_turned(image.data.data(), out.data.data(), image.grid, out.grid, turn, image.channels, true);
  return out;
}

MultiChannelImage<Scanner> unturn_channels(const MultiChannelImage<Scanner>& turned, const Grid<Scanner>& original,
                                           const Reorientation& turn) {
  const Grid<Scanner> expected = reorient_grid(original, turn);
  if (turned.grid.size != expected.size)
    throw Error(ErrorCode::Internal, "unturn_channels: the turned image's size does not match the turn of the grid");
  MultiChannelImage<Scanner> out(original, turned.channels);
  copy_turned(turned.data.data(), out.data.data(), original, turned.grid, turn, turned.channels, false);
  return out;
}

double pass_score(double dice, int classes) { return dice * std::sqrt(static_cast<double>(std::max(classes, 0))); }

bool pass_replaces(double score, int classes, double best_score, bool best_is_as_stored, double margin) {
  const double needed = best_is_as_stored ? margin * std::sqrt(static_cast<double>(std::max(classes, 0))) : 0.0;
  return score > best_score + needed;
}

}  // namespace ctarr
