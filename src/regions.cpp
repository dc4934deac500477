// ctarr — named regions: boxes in atlas millimetres.
#include "ctarr/regions.hpp"

#include "detail/json_geometry.hpp"
#include "detail/json_text.hpp"

#include "ctarr/error.hpp"
#include "ctarr/io.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>

namespace ctarr {

namespace fs = std::filesystem;
using nlohmann::json;

Region load_region(const std::string& path) {
  const std::string text = read_text_file(path);
  try {
    const json j = json::parse(text);
    if (!j.is_object()) throw std::invalid_argument("the file must hold a JSON object");
    Region r;
    r.name = j.at("name").get<std::string>();
    // The name becomes part of output file names (<stem>_<name>.nii.gz): no folders, no hidden or empty names.
    if (r.name.empty() || r.name.size() > 100 || r.name.front() == '.' ||
        r.name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") != std::string::npos)
      throw std::invalid_argument("name \"" + r.name + "\" must be 1-100 letters, digits, '_', '-' or '.' (not first)");
    const std::string frame = j.value("frame", std::string("atlas"));
    if (frame != "atlas") throw std::invalid_argument("frame is \"" + frame + "\"; only \"atlas\" is supported");
    if (j.contains("units") && j.at("units").get<std::string>() != "mm")
      throw std::invalid_argument("units must be \"mm\"");
    r.margin_mm = j.value("margin_mm", 10.0);
    if (!std::isfinite(r.margin_mm) || r.margin_mm < 0.0 || r.margin_mm > 1000.0)
      throw std::invalid_argument("margin_mm must be in [0, 1000]");
    const json& boxes = j.at("boxes");
    if (!boxes.is_array() || boxes.empty()) throw std::invalid_argument("boxes must be a non-empty array");
    if (boxes.size() > 10000) throw std::invalid_argument("boxes holds " + std::to_string(boxes.size()) + " boxes (at most 10000)");
    for (std::size_t n = 0; n < boxes.size(); ++n) {
      const std::string what = "boxes[" + std::to_string(n) + "]";
      // |x| <= 100 m: atlas boxes are a body's size; larger values would overflow index arithmetic downstream.
      Box<Atlas> b{{detail::read_vec3(boxes[n].at("lower"), what + ".lower", 1e5)},
                   {detail::read_vec3(boxes[n].at("upper"), what + ".upper", 1e5)}};
      if (!b.valid()) throw std::invalid_argument(what + " has lower > upper on some axis");
      r.boxes.push_back(b);
    }
    r.provenance_json = j.contains("provenance") ? detail::json_text(j.at("provenance")) : "{}";
    if (j.contains("provenance") && j.at("provenance").is_object() && j.at("provenance").contains("atlas_id")) {
      const json& id = j.at("provenance").at("atlas_id");
      if (!id.is_string() || id.get<std::string>().empty())
        throw std::invalid_argument("provenance.atlas_id must be a non-empty string");
      r.atlas_id = id.get<std::string>();
    }
    r.file = path;
    return r;
  } catch (const json::exception& e) {
    throw Error(ErrorCode::UnreadableInput, "region file " + path + " is malformed: " + e.what());
  } catch (const std::invalid_argument& e) {
    throw Error(ErrorCode::UnreadableInput, "region file " + path + " is malformed: " + e.what());
  }
}

std::vector<Region> load_regions(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.path().extension() == ".json" && entry.path().filename() != "manifest.json")
      files.push_back(entry.path().string());
  if (ec) throw Error(ErrorCode::UnreadableInput, "regions folder " + dir + " cannot be read: " + ec.message());
  std::sort(files.begin(), files.end());
  std::vector<Region> regions;
  for (const std::string& f : files) regions.push_back(load_region(f));
  return regions;
}

Region find_region(const std::string& dir, const std::string& name) {
  const fs::path p = fs::path(dir) / (name + ".json");
  if (name.find('/') == std::string::npos && fs::is_regular_file(p)) return load_region(p.string());
  std::string names;
  for (const Region& r : load_regions(dir)) names += (names.empty() ? "" : ", ") + r.name;
  throw Error(ErrorCode::Usage, "unknown region \"" + name + "\" (regions in " + dir + ": " + names + ")");
}

bool check_region_atlas(const Region& region, const std::string& atlas_id, const std::string& atlas_dir) {
  if (region.atlas_id.empty()) return false;
  if (region.atlas_id == atlas_id) return true;
  throw Error(ErrorCode::ModelFailure,
              "region file " + (region.file.empty() ? region.name : region.file) + " holds boxes in the millimetres of atlas " +
                  region.atlas_id + ", but the atlas in use (" + atlas_dir + ") is " + atlas_id +
                  ": its boxes would land in the wrong place. Infer the region again on this atlas (ctarr infer-region "
                  "--atlas " + atlas_dir + "), or crop with the atlas it was made on (--atlas)");
}

std::string region_to_json(const Region& region) {
  json j;
  j["name"] = region.name;
  j["frame"] = "atlas";
  j["units"] = "mm";
  j["margin_mm"] = region.margin_mm;
  j["boxes"] = json::array();
  for (const Box<Atlas>& b : region.boxes)
    j["boxes"].push_back({{"lower", detail::vec3_json(b.lower.mm)}, {"upper", detail::vec3_json(b.upper.mm)}});
  j["provenance"] = json::parse(region.provenance_json);
  return detail::json_text(j, 2) + "\n";
}

void save_region(const Region& region, const std::string& path) { write_text_file(path, region_to_json(region)); }

std::vector<Box<Atlas>> merge_overlapping(std::vector<Box<Atlas>> boxes) {
  bool merged = true;
  while (merged) {
    merged = false;
    for (std::size_t a = 0; a < boxes.size() && !merged; ++a)
      for (std::size_t b = a + 1; b < boxes.size() && !merged; ++b) {
        const bool overlap = (boxes[a].lower.mm.array() <= boxes[b].upper.mm.array()).all() &&
                             (boxes[b].lower.mm.array() <= boxes[a].upper.mm.array()).all();
        if (overlap) {
          boxes[a].lower.mm = boxes[a].lower.mm.cwiseMin(boxes[b].lower.mm);
          boxes[a].upper.mm = boxes[a].upper.mm.cwiseMax(boxes[b].upper.mm);
          boxes.erase(boxes.begin() + static_cast<std::ptrdiff_t>(b));
          merged = true;
        }
      }
  }
  return boxes;
}

Region resolve_region(const std::string& name_or_path, const std::string& regions_dir) {
  std::error_code ec;
  if (name_or_path.size() > 5 && name_or_path.substr(name_or_path.size() - 5) == ".json" &&
      std::filesystem::is_regular_file(name_or_path, ec))
    return load_region(name_or_path);
  return find_region(regions_dir, name_or_path);
}

}  // namespace ctarr
