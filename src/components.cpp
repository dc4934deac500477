// ctarr — connected components (26-neighbourhood) and the one-piece clean-up of a label map.
#include "ctarr/components.hpp"

#include <algorithm>
#include <cstddef>
#include <cstring>

namespace ctarr {

std::vector<std::vector<std::int64_t>> connected_components(const std::vector<std::uint8_t>& on, const Index3& size) {
  std::vector<std::uint8_t> seen(on.size(), 0);
  std::vector<std::vector<std::int64_t>> comps;
  std::vector<std::int64_t> stack;
  const std::int64_t nx = size[0], nxy = size[0] * size[1];
  for (std::int64_t seed = 0; seed < static_cast<std::int64_t>(on.size()); ++seed) {
    if (!on[static_cast<std::size_t>(seed)] || seen[static_cast<std::size_t>(seed)]) continue;
    comps.emplace_back();
    seen[static_cast<std::size_t>(seed)] = 1;
    stack.assign(1, seed);
    while (!stack.empty()) {
      const std::int64_t n = stack.back();
      stack.pop_back();
      comps.back().push_back(n);
      const std::int64_t x = n % nx, y = (n / nx) % size[1], z = n / nxy;
      for (std::int64_t dz = -1; dz <= 1; ++dz) {
        if (z + dz < 0 || z + dz >= size[2]) continue;
        for (std::int64_t dy = -1; dy <= 1; ++dy) {
          if (y + dy < 0 || y + dy >= size[1]) continue;
          for (std::int64_t dx = -1; dx <= 1; ++dx) {
            if (x + dx < 0 || x + dx >= size[0]) continue;
            const std::int64_t m = n + dx + nx * dy + nxy * dz;
            if (on[static_cast<std::size_t>(m)] && !seen[static_cast<std::size_t>(m)]) {
              seen[static_cast<std::size_t>(m)] = 1;
              stack.push_back(m);
            }
          }
        }
      }
    }
  }
  return comps;
}

PiecesRemoved keep_largest_component(LabelImage& labels, std::uint8_t value) {
  // The label's bounding box first: on a scan's own grid (tens of millions of voxels) an organ fills a small part.
  const Index3& size = labels.grid.size;
  Index3 lo = size, hi{{-1, -1, -1}};
  for (std::int64_t k = 0; k < size[2]; ++k)
    for (std::int64_t j = 0; j < size[1]; ++j) {
      const std::uint8_t* row = labels.voxels.data() + labels.grid.linear(Index3{{0, j, k}});
      const void* first = std::memchr(row, value, static_cast<std::size_t>(size[0]));
      if (first == nullptr) continue;
      const std::int64_t i0 = static_cast<const std::uint8_t*>(first) - row;
      std::int64_t i1 = size[0] - 1;
      while (row[i1] != value) --i1;
      lo = Index3{{std::min(lo[0], i0), std::min(lo[1], j), std::min(lo[2], k)}};
      hi = Index3{{std::max(hi[0], i1), std::max(hi[1], j), std::max(hi[2], k)}};
    }
  PiecesRemoved removed;
  if (hi[0] < 0) return removed;  // absent
  const Index3 box{{hi[0] - lo[0] + 1, hi[1] - lo[1] + 1, hi[2] - lo[2] + 1}};
  std::vector<std::uint8_t> on(static_cast<std::size_t>(box[0] * box[1] * box[2]));
  std::size_t n = 0;
  for (std::int64_t k = lo[2]; k <= hi[2]; ++k)
    for (std::int64_t j = lo[1]; j <= hi[1]; ++j) {
      const std::uint8_t* row = labels.voxels.data() + labels.grid.linear(Index3{{lo[0], j, k}});
      for (std::int64_t i = 0; i < box[0]; ++i) on[n++] = row[i] == value;
    }
  const auto to_labels = [&](std::int64_t b) {  // box linear index -> the map's
    return labels.grid.linear(Index3{{lo[0] + b % box[0], lo[1] + (b / box[0]) % box[1], lo[2] + b / (box[0] * box[1])}});
  };
  const std::vector<std::vector<std::int64_t>> comps = connected_components(on, box);
  if (comps.size() < 2) return removed;
  std::size_t kept = 0;
  for (std::size_t c = 1; c < comps.size(); ++c)
    if (comps[c].size() > comps[kept].size()) kept = c;
  for (std::size_t c = 0; c < comps.size(); ++c) {
    if (c == kept) continue;
    ++removed.pieces;
    removed.voxels += static_cast<std::int64_t>(comps[c].size());
    for (std::int64_t n : comps[c]) labels.voxels[to_labels(n)] = 0;
  }
  return removed;
}

}  // namespace ctarr
