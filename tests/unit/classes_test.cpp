#include "ctarr/classes.hpp"

#include "support/support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

namespace ctarr {
namespace {

// Label value of `name` in a label set's name table; -1 when absent.
int id_of(LabelSet set, const std::string& name) {
  const auto names = totalseg_names(set);
  for (std::size_t v = 0; v < names.size(); ++v) {
    if (names[v] == name) return static_cast<int>(v);
  }
  return -1;
}

std::set<int> reachable(const std::vector<std::uint8_t>& lut) {
  std::set<int> labels;
  for (const auto v : lut) {
    if (v != 0) labels.insert(v);
  }
  return labels;
}

TEST(Classes, NamesAreThePapersNineteenInOrder) {
  const std::array<std::string, kNumClasses> expected = {
      "skull", "vertebrae_cervical", "vertebrae_thoracic", "vertebrae_lumbar", "ribs_left", "ribs_right",
      "sternum", "sacrum", "hip_left", "hip_right", "brain", "lung_left", "lung_right", "heart", "liver",
      "spleen", "kidney_left", "kidney_right", "urinary_bladder"};
  EXPECT_EQ(class_names(), expected);
}

TEST(Classes, ContractIsShareClassesJson) {
  // class_names(), contract_windows_hu() and contract_spacing_mm() are compiled from share/classes.json; the
  // Python training package reads the same file.
  std::ifstream in(test::repo_dir() + "/share/classes.json");
  ASSERT_TRUE(in) << "share/classes.json";
  const nlohmann::json j = nlohmann::json::parse(in);
  ASSERT_EQ(j.at("classes").size(), static_cast<std::size_t>(kNumClasses));
  for (int c = 0; c < kNumClasses; ++c)
    EXPECT_EQ(class_names()[static_cast<std::size_t>(c)], j.at("classes")[static_cast<std::size_t>(c)].get<std::string>());
  ASSERT_EQ(j.at("windows_hu").size(), contract_windows_hu().size());
  for (std::size_t w = 0; w < contract_windows_hu().size(); ++w) {
    EXPECT_EQ(contract_windows_hu()[w].first, j.at("windows_hu")[w][0].get<float>());
    EXPECT_EQ(contract_windows_hu()[w].second, j.at("windows_hu")[w][1].get<float>());
  }
  EXPECT_EQ(contract_spacing_mm(), j.at("spacing_mm").get<double>());
  std::vector<int> one_piece;
  for (const auto& name : j.at("one_piece")) one_piece.push_back(*ctarr_label_for_totalseg_name(name.get<std::string>()));
  EXPECT_EQ(one_piece_labels(), one_piece);
  std::vector<int> lateralised;
  for (const auto& name : j.at("lateralised"))
    lateralised.push_back(*ctarr_label_for_totalseg_name(name.get<std::string>()));
  EXPECT_EQ(lateralised_labels(), lateralised);
}

TEST(Classes, MirrorLabelSwapsTheLeftAndRightClassesOnly) {
  std::set<std::pair<std::string, std::string>> swapped;
  for (int v = 0; v <= kNumClasses + 1; ++v) {
    const int m = mirror_label(v);
    EXPECT_EQ(mirror_label(m), v) << v;  // an involution
    if (m != v)
      swapped.insert({class_names()[static_cast<std::size_t>(v - 1)], class_names()[static_cast<std::size_t>(m - 1)]});
  }
  const std::set<std::pair<std::string, std::string>> expected = {
      {"ribs_left", "ribs_right"},   {"ribs_right", "ribs_left"},     {"hip_left", "hip_right"},
      {"hip_right", "hip_left"},     {"lung_left", "lung_right"},     {"lung_right", "lung_left"},
      {"kidney_left", "kidney_right"}, {"kidney_right", "kidney_left"}};
  EXPECT_EQ(swapped, expected);
  EXPECT_EQ(mirror_label(-3), -3);
  std::set<std::string> lateralised;
  for (int v : lateralised_labels()) lateralised.insert(class_names()[static_cast<std::size_t>(v - 1)]);
  EXPECT_EQ(lateralised, (std::set<std::string>{"heart", "liver", "spleen"}));
}

TEST(Classes, OnePieceClassesAreTheSingleOrgansAndSacrum) {
  std::set<std::string> names;
  for (int v : one_piece_labels()) names.insert(class_names()[static_cast<std::size_t>(v - 1)]);
  const std::set<std::string> expected = {"sacrum", "brain", "lung_left", "lung_right", "heart", "liver",
                                          "spleen", "kidney_left", "kidney_right", "urinary_bladder"};
  EXPECT_EQ(names, expected);  // not the bones made of several pieces (skull, vertebrae, ribs, hips) or the sternum
}

TEST(Classes, Ctarr19LookupIsTheIdentity) {
  const auto lut = label_lookup(LabelSet::Ctarr19);
  ASSERT_EQ(lut.size(), 20u);
  for (std::size_t v = 0; v < lut.size(); ++v) EXPECT_EQ(lut[v], v);
}

TEST(Classes, NameTablesHaveTheTotalSegmentatorSizes) {
  EXPECT_EQ(totalseg_names(LabelSet::TotalSegV1).size(), 105u);
  EXPECT_EQ(totalseg_names(LabelSet::TotalSegV2).size(), 118u);
  EXPECT_EQ(label_lookup(LabelSet::TotalSegV1).size(), 105u);
  EXPECT_EQ(label_lookup(LabelSet::TotalSegV2).size(), 118u);
  for (const auto set : {LabelSet::Ctarr19, LabelSet::TotalSegV1, LabelSet::TotalSegV2}) {
    const auto names = totalseg_names(set);
    EXPECT_EQ(names[0], "background");
    EXPECT_EQ(std::set<std::string>(names.begin(), names.end()).size(), names.size()) << "duplicate names";
    EXPECT_EQ(label_lookup(set)[0], 0) << "background must stay background";
  }
}

TEST(Classes, EveryClassIsReachableFromV2) {
  std::set<int> all;
  for (int c = 1; c <= kNumClasses; ++c) all.insert(c);
  EXPECT_EQ(reachable(label_lookup(LabelSet::TotalSegV2)), all);
}

TEST(Classes, EveryClassButSkullAndSternumIsReachableFromV1) {
  // TotalSegmentator v1 segments neither the skull nor the sternum ("face" is a soft-tissue mask).
  std::set<int> expected;
  for (int c = 1; c <= kNumClasses; ++c) {
    if (c != 1 && c != 7) expected.insert(c);
  }
  EXPECT_EQ(reachable(label_lookup(LabelSet::TotalSegV1)), expected);
  EXPECT_EQ(id_of(LabelSet::TotalSegV1, "skull"), -1);
  EXPECT_EQ(id_of(LabelSet::TotalSegV1, "sternum"), -1);
}

TEST(Classes, KnownV1IdsMapToTheirGroups) {
  const auto lut = label_lookup(LabelSet::TotalSegV1);
  EXPECT_EQ(lut[1], 16);   // spleen
  EXPECT_EQ(lut[2], 18);   // kidney_right
  EXPECT_EQ(lut[3], 17);   // kidney_left
  EXPECT_EQ(lut[5], 15);   // liver
  EXPECT_EQ(lut[7], 0);    // aorta
  EXPECT_EQ(lut[13], 12);  // lung_upper_lobe_left
  EXPECT_EQ(lut[16], 13);  // lung_middle_lobe_right
  EXPECT_EQ(lut[18], 4);   // vertebrae_L5
  EXPECT_EQ(lut[23], 3);   // vertebrae_T12
  EXPECT_EQ(lut[34], 3);   // vertebrae_T1
  EXPECT_EQ(lut[35], 2);   // vertebrae_C7
  EXPECT_EQ(lut[41], 2);   // vertebrae_C1
  EXPECT_EQ(lut[43], 0);   // trachea
  for (int v = 44; v <= 48; ++v) EXPECT_EQ(lut[static_cast<std::size_t>(v)], 14) << v;  // heart parts
  EXPECT_EQ(lut[49], 0);   // pulmonary_artery
  EXPECT_EQ(lut[50], 11);  // brain
  for (int v = 58; v <= 69; ++v) EXPECT_EQ(lut[static_cast<std::size_t>(v)], 5) << v;  // rib_left_1..12
  for (int v = 70; v <= 81; ++v) EXPECT_EQ(lut[static_cast<std::size_t>(v)], 6) << v;  // rib_right_1..12
  EXPECT_EQ(lut[82], 0);   // humerus_left
  EXPECT_EQ(lut[84], 5);   // scapula_left
  EXPECT_EQ(lut[85], 6);   // scapula_right
  EXPECT_EQ(lut[86], 5);   // clavicula_left
  EXPECT_EQ(lut[87], 6);   // clavicula_right
  EXPECT_EQ(lut[88], 0);   // femur_left
  EXPECT_EQ(lut[90], 9);   // hip_left
  EXPECT_EQ(lut[91], 10);  // hip_right
  EXPECT_EQ(lut[92], 8);   // sacrum
  EXPECT_EQ(lut[93], 0);   // face
  EXPECT_EQ(lut[104], 19); // urinary_bladder
}

TEST(Classes, KnownV2IdsMapToTheirGroups) {
  const auto lut = label_lookup(LabelSet::TotalSegV2);
  EXPECT_EQ(lut[static_cast<std::size_t>(id_of(LabelSet::TotalSegV2, "liver"))], 15);
  EXPECT_EQ(lut[5], 15);    // liver
  EXPECT_EQ(lut[96], 5);    // rib_left_5
  EXPECT_EQ(lut[108], 6);   // rib_right_5
  EXPECT_EQ(lut[21], 19);   // urinary_bladder
  EXPECT_EQ(lut[25], 8);    // sacrum
  EXPECT_EQ(lut[26], 8);    // vertebrae_S1
  EXPECT_EQ(lut[27], 4);    // vertebrae_L5
  EXPECT_EQ(lut[31], 4);    // vertebrae_L1
  EXPECT_EQ(lut[32], 3);    // vertebrae_T12
  EXPECT_EQ(lut[43], 3);    // vertebrae_T1
  EXPECT_EQ(lut[44], 2);    // vertebrae_C7
  EXPECT_EQ(lut[50], 2);    // vertebrae_C1
  EXPECT_EQ(lut[51], 14);   // heart
  EXPECT_EQ(lut[52], 0);    // aorta
  EXPECT_EQ(lut[71], 5);    // scapula_left
  EXPECT_EQ(lut[74], 6);    // clavicula_right
  EXPECT_EQ(lut[77], 9);    // hip_left
  EXPECT_EQ(lut[78], 10);   // hip_right
  EXPECT_EQ(lut[79], 0);    // spinal_cord
  EXPECT_EQ(lut[90], 11);   // brain
  EXPECT_EQ(lut[91], 1);    // skull
  EXPECT_EQ(lut[116], 7);   // sternum
  EXPECT_EQ(lut[117], 0);   // costal_cartilages
}

TEST(Classes, NameRulesCoverBothVersionsAndRejectLookalikes) {
  EXPECT_EQ(ctarr_label_for_totalseg_name("vertebrae_T7"), 3);
  EXPECT_EQ(ctarr_label_for_totalseg_name("rib_left_3"), 5);
  EXPECT_EQ(ctarr_label_for_totalseg_name("lung_upper_lobe_left"), 12);
  EXPECT_EQ(ctarr_label_for_totalseg_name("lung_lower_lobe_right"), 13);
  EXPECT_EQ(ctarr_label_for_totalseg_name("heart_ventricle_right"), 14);
  EXPECT_EQ(ctarr_label_for_totalseg_name("skull"), 1);
  EXPECT_EQ(ctarr_label_for_totalseg_name("vertebrae_S1"), 8);
  EXPECT_EQ(ctarr_label_for_totalseg_name("ribs_right"), 6);  // ctarr's own names
  EXPECT_EQ(ctarr_label_for_totalseg_name("urinary_bladder"), 19);
  EXPECT_EQ(ctarr_label_for_totalseg_name("costal_cartilages"), std::nullopt);
  EXPECT_EQ(ctarr_label_for_totalseg_name("vertebrae_T13"), std::nullopt);
  EXPECT_EQ(ctarr_label_for_totalseg_name("vertebrae_C"), std::nullopt);
  EXPECT_EQ(ctarr_label_for_totalseg_name("rib_left_x"), std::nullopt);
  EXPECT_EQ(ctarr_label_for_totalseg_name("lung_vessels"), std::nullopt);
  EXPECT_EQ(ctarr_label_for_totalseg_name("humerus_left"), std::nullopt);
  EXPECT_EQ(ctarr_label_for_totalseg_name(""), std::nullopt);
}

TEST(Classes, LabelSetIsGuessedFromTheLargestLabel) {
  EXPECT_EQ(guess_label_set(0), LabelSet::Ctarr19);
  EXPECT_EQ(guess_label_set(19), LabelSet::Ctarr19);
  EXPECT_EQ(guess_label_set(20), std::nullopt);
  EXPECT_EQ(guess_label_set(103), std::nullopt);
  EXPECT_EQ(guess_label_set(104), LabelSet::TotalSegV1);
  EXPECT_EQ(guess_label_set(105), LabelSet::TotalSegV2);
  EXPECT_EQ(guess_label_set(117), LabelSet::TotalSegV2);
  EXPECT_EQ(guess_label_set(118), std::nullopt);
  EXPECT_EQ(guess_label_set(65535), std::nullopt);
}

TEST(Classes, V2NameTableMatchesTotalSegmentatorsLabelJson) {
  const auto data = test::shared_data_dir();
  if (!data) GTEST_SKIP() << "skipped: ../shared/data not found";
  const std::string path = *data + "/totalseg_example/totalseg_v2_total_labels.json";
  std::ifstream in(path);
  if (!in) GTEST_SKIP() << "skipped: " << path << " not found";
  std::stringstream text;
  text << in.rdbuf();

  // The file is one flat object {"id": "name", ...}.
  const std::string s = text.str();
  const std::regex entry(R"re("(\d+)"\s*:\s*"([^"]*)")re");
  std::map<int, std::string> from_json;
  for (auto it = std::sregex_iterator(s.begin(), s.end(), entry); it != std::sregex_iterator(); ++it) {
    from_json[std::stoi((*it)[1].str())] = (*it)[2].str();
  }
  const auto names = totalseg_names(LabelSet::TotalSegV2);
  ASSERT_EQ(from_json.size(), names.size() - 1) << path;
  for (const auto& [id, name] : from_json) {
    ASSERT_LT(static_cast<std::size_t>(id), names.size()) << name;
    EXPECT_EQ(names[static_cast<std::size_t>(id)], name) << "id " << id;
  }
  // Mapped through the file's own ids: liver -> 15, rib_left_5 -> ribs_left.
  const auto lut = label_lookup(LabelSet::TotalSegV2);
  for (const auto& [id, name] : from_json) {
    if (name == "liver") {
      EXPECT_EQ(lut[static_cast<std::size_t>(id)], 15);
    }
    if (name == "rib_left_5") {
      EXPECT_EQ(lut[static_cast<std::size_t>(id)], 5);
    }
  }
}

}  // namespace
}  // namespace ctarr
