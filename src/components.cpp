// ctarr — connected components (26-neighbourhood) and the one-piece clean-up of a label map.
#include "ctarr/components.hpp"

#include <cstddef>

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
  std::vector<std::uint8_t> on(labels.voxels.size());
  for (std::size_t v = 0; v < on.size(); ++v) on[v] = labels.voxels[v] == value;
  const std::vector<std::vector<std::int64_t>> comps = connected_components(on, labels.grid.size);
  PiecesRemoved removed;
  if (comps.size() < 2) return removed;
  std::size_t kept = 0;
  for (std::size_t c = 1; c < comps.size(); ++c)
    if (comps[c].size() > comps[kept].size()) kept = c;
  for (std::size_t c = 0; c < comps.size(); ++c) {
    if (c == kept) continue;
    ++removed.pieces;
    removed.voxels += static_cast<std::int64_t>(comps[c].size());
    for (std::int64_t v : comps[c]) labels.voxels[static_cast<std::size_t>(v)] = 0;
  }
  return removed;
}

}  // namespace ctarr
