// ctarr — JSON to text for every file ctarr writes (records, summaries, manifests, regions, dataset.json, the QA
// page). File names on Linux are bytes, not necessarily UTF-8; nlohmann_json's default dump throws on such a
// string, which would turn a scan named in Latin-1 into an internal error. Here invalid bytes become U+FFFD.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace ctarr::detail {

inline std::string json_text(const nlohmann::json& j, int indent = -1) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace ctarr::detail
