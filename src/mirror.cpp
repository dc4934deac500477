// ctarr — the mirrored pass of `ctarr segment` (mirror.hpp).
#include "ctarr/mirror.hpp"

#include "ctarr/classes.hpp"
#include "ctarr/error.hpp"
#include "parallel.hpp"

#include <algorithm>
#include <array>
#include <cstddef>

namespace ctarr {

Reorientation left_right_mirror() {
  Reorientation r;
  r.flip[0] = true;
  return r;
}

void combine_mirrored_pass(MultiChannelImage<Scanner>& prob, const MultiChannelImage<Scanner>& mirrored) {
  constexpr int kChannels = kNumClasses + 1;
  if (prob.channels != kChannels || mirrored.channels != kChannels || prob.grid.size != mirrored.grid.size ||
      prob.data.size() != mirrored.data.size())
    throw Error(ErrorCode::Internal, "combine_mirrored_pass: expected two " + std::to_string(kChannels) +
                                         "-channel images on one grid, got " + std::to_string(prob.channels) +
                                         " and " + std::to_string(mirrored.channels) + " channels");
  // source[c]: the mirrored pass's channel that votes on channel c, or -1 where prob's stays alone
  std::array<int, kChannels> source{};
  source[0] = -1;
  for (int c = 1; c < kChannels; ++c) source[static_cast<std::size_t>(c)] = mirror_label(c);
  for (int c : lateralised_labels()) source[static_cast<std::size_t>(c)] = -1;
  const std::int64_t n = prob.grid.voxels();
  const std::int64_t rows = std::max<std::int64_t>(1, (n + 65535) / 65536);
  parallel_for(rows, [&](std::int64_t row) {
    const std::int64_t begin = row * 65536, end = std::min(n, begin + 65536);
    for (std::int64_t v = begin; v < end; ++v) {
      const auto at = static_cast<std::size_t>(v);
      float sum = 0.0f;
      for (int c = 0; c < kChannels; ++c) {
        float& p = prob.channel(c)[at];
        const int from = source[static_cast<std::size_t>(c)];
        if (from >= 0) p = 0.5f * (p + mirrored.channel(from)[at]);
        sum += p;
      }
      if (sum > 0.0f)
        for (int c = 0; c < kChannels; ++c) prob.channel(c)[at] /= sum;
    }
  });
}

}  // namespace ctarr
