// ctarr — the model card: the JSON beside the weights that says what the network is (see network.hpp). No torch.
#include "ctarr/network.hpp"

#include "ctarr/error.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

namespace ctarr {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// ---- model card ---------------------------------------------------------------------------------------------

[[noreturn]] void card_fail(const std::string& path, const std::string& what) {
  throw Error(ErrorCode::ModelFailure, "model card " + path + ": " + what +
                                           " (the card must be the JSON written with the weights, see "
                                           "python/ctarr_train/export.py)");
}

const json& require(const json& j, const char* key, const std::string& path) {
  if (!j.contains(key)) card_fail(path, std::string("missing field \"") + key + "\"");
  return j.at(key);
}

}  // namespace

// ---- model card ---------------------------------------------------------------------------------------------

std::string model_card_path(const std::string& safetensors_path) {
  return fs::path(safetensors_path).replace_extension(".json").string();
}

ModelCard read_model_card(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Error(ErrorCode::ModelFailure, "model card " + path +
                                             " cannot be opened: every <name>.safetensors needs its card <name>.json "
                                             "beside it");
  ModelCard card;
  card.json.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  try {
    const json j = json::parse(card.json);
    if (!j.is_object()) card_fail(path, "not a JSON object");

    const json& id = require(j, "id", path);
    if (!id.is_string() || id.get<std::string>().empty()) card_fail(path, "\"id\" must be a non-empty string");
    card.id = id.get<std::string>();

    const json& classes = require(j, "classes", path);
    if (!classes.is_array() || classes.empty() || classes.size() > 1000)
      card_fail(path, "\"classes\" must be a non-empty array of at most 1000 names");
    for (const json& c : classes) {
      if (!c.is_string() || c.get<std::string>().empty()) card_fail(path, "\"classes\" entries must be non-empty strings");
      card.classes.push_back(c.get<std::string>());
    }
    // The contract (share/classes.json): output channel c + 1 is class_names()[c]. Anything else would put one
    // organ's probabilities where the atlas expects another's.
    const auto& own = class_names();
    if (card.classes.size() != own.size() || !std::equal(own.begin(), own.end(), card.classes.begin())) {
      std::string what = "\"classes\" must be ctarr's " + std::to_string(own.size()) +
                         " classes in ctarr's order (share/classes.json); the card lists " +
                         std::to_string(card.classes.size());
      for (std::size_t c = 0; c < std::min(own.size(), card.classes.size()); ++c)
        if (card.classes[c] != own[c]) {
          what += ", channel " + std::to_string(c + 1) + " is \"" + card.classes[c] + "\" where \"" + own[c] +
                  "\" is expected";
          break;
        }
      card_fail(path, what);
    }

    const json& spacing = require(j, "spacing_mm", path);
    if (!spacing.is_number() || !(spacing.get<double>() > 0.0) || !std::isfinite(spacing.get<double>()))
      card_fail(path, "\"spacing_mm\" must be a positive number");
    card.spacing_mm = spacing.get<double>();

    const json& windows = require(j, "windows_hu", path);
    if (!windows.is_array() || windows.empty()) card_fail(path, "\"windows_hu\" must be a non-empty array of [lower, upper]");
    card.windows_hu.clear();
    for (const json& w : windows) {
      // Bounded so that the float conversion below is defined (1e300 does not fit a float).
      if (!w.is_array() || w.size() != 2 || !w[0].is_number() || !w[1].is_number() ||
          !(w[0].get<double>() < w[1].get<double>()) || !(std::abs(w[0].get<double>()) <= 1e6) ||
          !(std::abs(w[1].get<double>()) <= 1e6))
        card_fail(path, "each \"windows_hu\" entry must be [lower, upper] HU with lower < upper, |HU| <= 1e6");
      card.windows_hu.emplace_back(w[0].get<float>(), w[1].get<float>());
    }

    const json& patch = require(j, "patch_size", path);
    if (!patch.is_number_integer() || patch.get<std::int64_t>() < 8 || patch.get<std::int64_t>() > 512 ||
        patch.get<std::int64_t>() % 8 != 0)
      card_fail(path, "\"patch_size\" must be a multiple of 8 from 8 to 512");
    card.patch_size = patch.get<int>();

    const json& filters = require(j, "filters", path);
    if (!filters.is_array() || filters.size() < 2 || filters.size() > 6)
      card_fail(path, "\"filters\" must list 2 to 6 stage widths");
    card.filters.clear();
    for (const json& f : filters) {
      // Bounded: a corrupt card must not make LibTorch allocate a network of billions of channels.
      if (!f.is_number_integer() || f.get<std::int64_t>() < 1 || f.get<std::int64_t>() > 4096)
        card_fail(path, "\"filters\" entries must be integers from 1 to 4096");
      card.filters.push_back(f.get<int>());
    }
    // "architecture": an object (ctarr-unet-v2: stages, normalisation) or, in cards of ctarr-unet-v1, a text:
    // 4 stages with InstanceNorm.
    card.normalisation = ModelCard::Normalisation::Instance;
    if (j.contains("architecture") && j["architecture"].is_object()) {
      const json& a = j["architecture"];
      if (a.contains("stages") && (!a["stages"].is_number_integer() ||
                                   a["stages"].get<std::int64_t>() != static_cast<std::int64_t>(card.filters.size())))
        card_fail(path, "\"architecture.stages\" must equal the number of \"filters\"");
      if (!a.contains("normalisation") || !a["normalisation"].is_string())
        card_fail(path, "\"architecture.normalisation\" must be \"none\" (BatchNorm folded) or \"instance\"");
      const std::string norm = a["normalisation"].get<std::string>();
      if (norm == "none")
        card.normalisation = ModelCard::Normalisation::None;
      else if (norm != "instance")
        card_fail(path, "\"architecture.normalisation\" is \"" + norm +
                            "\": ctarr builds \"none\" (BatchNorm folded into the convolutions) or \"instance\"");
    } else if (card.filters.size() != 4) {
      card_fail(path, "a card without an \"architecture\" object describes ctarr-unet-v1, which has 4 stages");
    }
    if (card.patch_size % card.input_divisor() != 0)
      card_fail(path, "\"patch_size\" must be a multiple of " + std::to_string(card.input_divisor()) + " for " +
                          std::to_string(card.filters.size()) + " stages");

    const json& weights = require(j, "weights", path);
    if (!weights.is_object() || !weights.contains("sha256") || !weights["sha256"].is_string())
      card_fail(path, "\"weights\" must be an object with \"file\" and \"sha256\"");
    card.sha256 = weights["sha256"].get<std::string>();
    std::transform(card.sha256.begin(), card.sha256.end(), card.sha256.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (card.sha256.size() != 64 || card.sha256.find_first_not_of("0123456789abcdef") != std::string::npos)
      card_fail(path, "\"weights.sha256\" must be 64 hex digits");

    if (j.contains("trained")) {
      if (!j["trained"].is_boolean()) card_fail(path, "\"trained\" must be true or false");
      card.trained = j["trained"].get<bool>();
    }
  } catch (const json::exception& e) {
    card_fail(path, std::string("invalid JSON: ") + e.what());
  }
  return card;
}

}  // namespace ctarr
