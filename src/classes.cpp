#include "ctarr/classes.hpp"

#include <algorithm>
#include <cctype>

#include "ctarr_contract.inc"  // generated from share/classes.json

namespace ctarr {

namespace {

// clang-format off
// TotalSegmentator v1 "total" task (104 structures), index = label value; 0 = background.
const char* const kTotalSegV1Names[] = {
    "background",
    "spleen", "kidney_right", "kidney_left", "gallbladder", "liver",                                 // 1-5
    "stomach", "aorta", "inferior_vena_cava", "portal_vein_and_splenic_vein", "pancreas",            // 6-10
    "adrenal_gland_right", "adrenal_gland_left", "lung_upper_lobe_left", "lung_lower_lobe_left",     // 11-14
    "lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right",                      // 15-17
    "vertebrae_L5", "vertebrae_L4", "vertebrae_L3", "vertebrae_L2", "vertebrae_L1",                  // 18-22
    "vertebrae_T12", "vertebrae_T11", "vertebrae_T10", "vertebrae_T9", "vertebrae_T8",               // 23-27
    "vertebrae_T7", "vertebrae_T6", "vertebrae_T5", "vertebrae_T4", "vertebrae_T3",                  // 28-32
    "vertebrae_T2", "vertebrae_T1",                                                                  // 33-34
    "vertebrae_C7", "vertebrae_C6", "vertebrae_C5", "vertebrae_C4", "vertebrae_C3",                  // 35-39
    "vertebrae_C2", "vertebrae_C1",                                                                  // 40-41
    "esophagus", "trachea", "heart_myocardium", "heart_atrium_left", "heart_ventricle_left",         // 42-46
    "heart_atrium_right", "heart_ventricle_right", "pulmonary_artery", "brain",                      // 47-50
    "iliac_artery_left", "iliac_artery_right", "iliac_vena_left", "iliac_vena_right",                // 51-54
    "small_bowel", "duodenum", "colon",                                                              // 55-57
    "rib_left_1", "rib_left_2", "rib_left_3", "rib_left_4", "rib_left_5", "rib_left_6",              // 58-63
    "rib_left_7", "rib_left_8", "rib_left_9", "rib_left_10", "rib_left_11", "rib_left_12",           // 64-69
    "rib_right_1", "rib_right_2", "rib_right_3", "rib_right_4", "rib_right_5", "rib_right_6",        // 70-75
    "rib_right_7", "rib_right_8", "rib_right_9", "rib_right_10", "rib_right_11", "rib_right_12",     // 76-81
    "humerus_left", "humerus_right", "scapula_left", "scapula_right",                                // 82-85
    "clavicula_left", "clavicula_right", "femur_left", "femur_right",                                // 86-89
    "hip_left", "hip_right", "sacrum", "face",                                                       // 90-93
    "gluteus_maximus_left", "gluteus_maximus_right", "gluteus_medius_left", "gluteus_medius_right",  // 94-97
    "gluteus_minimus_left", "gluteus_minimus_right", "autochthon_left", "autochthon_right",          // 98-101
    "iliopsoas_left", "iliopsoas_right", "urinary_bladder",                                          // 102-104
};

// TotalSegmentator v2 "total" task (117 structures), index = label value; 0 = background.
const char* const kTotalSegV2Names[] = {
    "background",
    "spleen", "kidney_right", "kidney_left", "gallbladder", "liver",                                 // 1-5
    "stomach", "pancreas", "adrenal_gland_right", "adrenal_gland_left", "lung_upper_lobe_left",      // 6-10
    "lung_lower_lobe_left", "lung_upper_lobe_right", "lung_middle_lobe_right",                       // 11-13
    "lung_lower_lobe_right", "esophagus", "trachea", "thyroid_gland", "small_bowel",                 // 14-18
    "duodenum", "colon", "urinary_bladder", "prostate", "kidney_cyst_left",                          // 19-23
    "kidney_cyst_right", "sacrum", "vertebrae_S1",                                                   // 24-26
    "vertebrae_L5", "vertebrae_L4", "vertebrae_L3", "vertebrae_L2", "vertebrae_L1",                  // 27-31
    "vertebrae_T12", "vertebrae_T11", "vertebrae_T10", "vertebrae_T9", "vertebrae_T8",               // 32-36
    "vertebrae_T7", "vertebrae_T6", "vertebrae_T5", "vertebrae_T4", "vertebrae_T3",                  // 37-41
    "vertebrae_T2", "vertebrae_T1",                                                                  // 42-43
    "vertebrae_C7", "vertebrae_C6", "vertebrae_C5", "vertebrae_C4", "vertebrae_C3",                  // 44-48
    "vertebrae_C2", "vertebrae_C1",                                                                  // 49-50
    "heart", "aorta", "pulmonary_vein", "brachiocephalic_trunk", "subclavian_artery_right",          // 51-55
    "subclavian_artery_left", "common_carotid_artery_right", "common_carotid_artery_left",           // 56-58
    "brachiocephalic_vein_left", "brachiocephalic_vein_right", "atrial_appendage_left",              // 59-61
    "superior_vena_cava", "inferior_vena_cava", "portal_vein_and_splenic_vein",                      // 62-64
    "iliac_artery_left", "iliac_artery_right", "iliac_vena_left", "iliac_vena_right",                // 65-68
    "humerus_left", "humerus_right", "scapula_left", "scapula_right",                                // 69-72
    "clavicula_left", "clavicula_right", "femur_left", "femur_right",                                // 73-76
    "hip_left", "hip_right", "spinal_cord",                                                          // 77-79
    "gluteus_maximus_left", "gluteus_maximus_right", "gluteus_medius_left", "gluteus_medius_right",  // 80-83
    "gluteus_minimus_left", "gluteus_minimus_right", "autochthon_left", "autochthon_right",          // 84-87
    "iliopsoas_left", "iliopsoas_right", "brain", "skull",                                           // 88-91
    "rib_left_1", "rib_left_2", "rib_left_3", "rib_left_4", "rib_left_5", "rib_left_6",              // 92-97
    "rib_left_7", "rib_left_8", "rib_left_9", "rib_left_10", "rib_left_11", "rib_left_12",           // 98-103
    "rib_right_1", "rib_right_2", "rib_right_3", "rib_right_4", "rib_right_5", "rib_right_6",        // 104-109
    "rib_right_7", "rib_right_8", "rib_right_9", "rib_right_10", "rib_right_11", "rib_right_12",     // 110-115
    "sternum", "costal_cartilages",                                                                  // 116-117
};
// clang-format on

static_assert(sizeof(kTotalSegV1Names) / sizeof(kTotalSegV1Names[0]) == 105, "v1 has 104 structures");
static_assert(sizeof(kTotalSegV2Names) / sizeof(kTotalSegV2Names[0]) == 118, "v2 has 117 structures");

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// `s` after `prefix` is a whole number in [lo, hi].
bool numbered(const std::string& s, const std::string& prefix, int lo, int hi) {
  if (!starts_with(s, prefix) || s.size() == prefix.size() || s.size() > prefix.size() + 2) return false;
  int n = 0;
  for (std::size_t i = prefix.size(); i < s.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
    n = n * 10 + (s[i] - '0');
  }
  return n >= lo && n <= hi;
}

template <std::size_t N>
std::vector<std::string> to_vector(const char* const (&names)[N]) {
  return std::vector<std::string>(std::begin(names), std::end(names));
}

}  // namespace

static_assert(CTARR_CONTRACT_CLASS_COUNT == kNumClasses, "share/classes.json must list kNumClasses classes");

const std::array<std::string, kNumClasses>& class_names() {
  static const std::array<std::string, kNumClasses> names = {CTARR_CONTRACT_CLASSES};
  return names;
}

const std::vector<WindowHU>& contract_windows_hu() {
  static const std::vector<WindowHU> windows{CTARR_CONTRACT_WINDOWS};
  return windows;
}

double contract_spacing_mm() { return CTARR_CONTRACT_SPACING_MM; }

namespace {

// Label values of the contract's class names (CMake checked that each is a class).
std::vector<int> labels_of(const char* const* names) {
  std::vector<int> out;
  const auto& own = class_names();
  for (const char* const* name = names; *name; ++name)
    out.push_back(static_cast<int>(std::find(own.begin(), own.end(), *name) - own.begin()) + 1);
  return out;
}

}  // namespace

const std::vector<int>& one_piece_labels() {
  static const char* const names[] = {CTARR_CONTRACT_ONE_PIECE nullptr};  // the list may be empty
  static const std::vector<int> labels = labels_of(names);
  return labels;
}

const std::vector<int>& lateralised_labels() {
  static const char* const names[] = {CTARR_CONTRACT_LATERALISED nullptr};
  static const std::vector<int> labels = labels_of(names);
  return labels;
}

int mirror_label(int value) {
  if (value < 1 || value > kNumClasses) return value;
  const std::string& name = class_names()[static_cast<std::size_t>(value - 1)];
  auto swapped = [&](const std::string& from, const std::string& to) -> int {
    if (name.size() <= from.size() || name.compare(name.size() - from.size(), from.size(), from) != 0) return 0;
    const std::string other = name.substr(0, name.size() - from.size()) + to;
    const auto& own = class_names();
    const auto it = std::find(own.begin(), own.end(), other);
    return it == own.end() ? 0 : static_cast<int>(it - own.begin()) + 1;
  };
  if (const int v = swapped("_left", "_right")) return v;
  if (const int v = swapped("_right", "_left")) return v;
  return value;
}

std::optional<int> ctarr_label_for_totalseg_name(const std::string& name) {
  // ctarr's own names map to themselves.
  const auto& own = class_names();
  for (int c = 0; c < kNumClasses; ++c) {
    if (name == own[static_cast<std::size_t>(c)]) return c + 1;
  }

  if (name == "skull") return 1;
  if (numbered(name, "vertebrae_C", 1, 7)) return 2;
  if (numbered(name, "vertebrae_T", 1, 12)) return 3;
  if (numbered(name, "vertebrae_L", 1, 6)) return 4;  // L6: a lumbarised sixth vertebra where labelled
  if (name == "sacrum" || name == "vertebrae_S1") return 8;

  // Left/right shoulder girdle and ribs. Costal cartilages are not bone of either side: background.
  if (numbered(name, "rib_left_", 1, 13) || name == "scapula_left" || name == "clavicula_left") return 5;
  if (numbered(name, "rib_right_", 1, 13) || name == "scapula_right" || name == "clavicula_right") return 6;
  if (name == "sternum") return 7;
  if (name == "hip_left") return 9;
  if (name == "hip_right") return 10;
  if (name == "brain") return 11;

  // Lung lobes (v1/v2) and whole lungs (TotalSegmentator MR names).
  if (starts_with(name, "lung_") && ends_with(name, "_left")) return 12;
  if (starts_with(name, "lung_") && ends_with(name, "_right")) return 13;

  // v2 "heart" is the whole heart; v1 splits it into myocardium and four chambers. The left atrial appendage
  // (v2 only) is part of the left atrium, so it belongs to the heart as well.
  if (name == "heart" || name == "heart_myocardium" || name == "heart_atrium_left" ||
      name == "heart_atrium_right" || name == "heart_ventricle_left" || name == "heart_ventricle_right" ||
      name == "atrial_appendage_left") {
    return 14;
  }
  if (name == "liver") return 15;
  if (name == "spleen") return 16;
  // Renal cysts (v2) sit in or on the kidney; counting them keeps the kidney label free of holes.
  if (name == "kidney_left" || name == "kidney_cyst_left") return 17;
  if (name == "kidney_right" || name == "kidney_cyst_right") return 18;
  if (name == "urinary_bladder") return 19;
  return std::nullopt;
}

std::vector<std::string> totalseg_names(LabelSet set) {
  switch (set) {
    case LabelSet::TotalSegV1:
      return to_vector(kTotalSegV1Names);
    case LabelSet::TotalSegV2:
      return to_vector(kTotalSegV2Names);
    case LabelSet::Ctarr19:
      break;
  }
  std::vector<std::string> names{"background"};
  for (const auto& n : class_names()) names.push_back(n);
  return names;
}

std::vector<std::uint8_t> label_lookup(LabelSet set) {
  const std::vector<std::string> names = totalseg_names(set);
  std::vector<std::uint8_t> lut(names.size(), 0);
  for (std::size_t v = 1; v < names.size(); ++v) {
    if (const auto label = ctarr_label_for_totalseg_name(names[v])) lut[v] = static_cast<std::uint8_t>(*label);
  }
  return lut;
}

std::optional<LabelSet> guess_label_set(std::uint16_t max_label) {
  if (max_label <= kNumClasses) return LabelSet::Ctarr19;
  if (max_label == 104) return LabelSet::TotalSegV1;
  if (max_label >= 105 && max_label <= 117) return LabelSet::TotalSegV2;
  return std::nullopt;
}

}  // namespace ctarr
