// ctarr — the 19 anatomical classes (the paper's Table 1 order) and mappings from other label sets.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ctarr {

constexpr int kNumClasses = 19;  // label values 1..19; 0 is background

// The segmentation contract lives in share/classes.json, compiled in (and read by python/ctarr_train): the class
// names in output-channel order (index c = label value - 1), the network's HU windows, its spacing, the one-piece and
// the lateralised classes.
const std::array<std::string, kNumClasses>& class_names();

using WindowHU = std::pair<float, float>;  // [lower, upper] HU, scaled to [0, 1]
const std::vector<WindowHU>& contract_windows_hu();
double contract_spacing_mm();
// Label values (1..19) of the classes that are one piece of tissue (share/classes.json "one_piece"): `ctarr segment`
// keeps each one's largest connected component (components.hpp).
const std::vector<int>& one_piece_labels();
// Label values of the classes that lie on one side of every body (share/classes.json "lateralised": heart, liver,
// spleen): their mirror image is not anatomy, so `ctarr segment`'s mirrored pass does not vote on them (mirror.hpp).
const std::vector<int>& lateralised_labels();
// The label of the class that label `value` becomes in a left-right mirror image: a class named *_left <-> the one
// named *_right (e.g. ribs_left <-> ribs_right), every other value (background, midline and lateralised classes, a
// value outside 1..19) itself.
int mirror_label(int value);

// Label set of an external segmentation.
enum class LabelSet { Ctarr19, TotalSegV1, TotalSegV2 };

// Lookup table old label -> ctarr label (0 = background / not one of the 19 groups), for the label set.
std::vector<std::uint8_t> label_lookup(LabelSet set);

// Maps a TotalSegmentator structure name (v1 or v2, e.g. "rib_left_3", "vertebrae_T7", "lung_upper_lobe_left")
// to its ctarr label 1..19, or nullopt if it is not part of one of the 19 groups. ctarr's own class names map to
// themselves; v1 heart parts, v2 atrial_appendage_left and kidney_cyst_* join heart and kidneys.
std::optional<int> ctarr_label_for_totalseg_name(const std::string& name);

// The label set a segmentation most likely uses, from its largest label value: <= 19 -> Ctarr19,
// 104 -> TotalSegV1, 105..117 -> TotalSegV2; nullopt when the value is ambiguous (20..103) or too large.
std::optional<LabelSet> guess_label_set(std::uint16_t max_label);

// Structure names of a label set, index = label value (index 0 is "background"). For Ctarr19 these are
// "background" followed by class_names().
std::vector<std::string> totalseg_names(LabelSet set);

}  // namespace ctarr
