// ctarr — the 19 anatomical classes (the paper's Table 1 order) and mappings from other label sets.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ctarr {

constexpr int kNumClasses = 19;  // label values 1..19; 0 is background

// Class names, index c = label value - 1.
const std::array<std::string, kNumClasses>& class_names();

// Label set of an external segmentation.
enum class LabelSet { Ctarr19, TotalSegV1, TotalSegV2 };

// Lookup table old label -> ctarr label (0 = background / not one of the 19 groups), for the label set.
std::vector<std::uint8_t> label_lookup(LabelSet set);

// Maps a TotalSegmentator structure name (v1 or v2, e.g. "rib_left_3", "vertebrae_T7", "lung_upper_lobe_left")
// to its ctarr label 1..19, or nullopt if it is not part of one of the 19 groups.
std::optional<int> ctarr_label_for_totalseg_name(const std::string& name);

}  // namespace ctarr
