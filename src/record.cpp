// ctarr — crop records (JSON).
#include "ctarr/record.hpp"

#include "ctarr/classes.hpp"
#include "ctarr/error.hpp"
#include "ctarr/version.hpp"

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <stdexcept>

namespace ctarr {

using nlohmann::json;

namespace {

json vec(const Eigen::Vector3d& v) { return json::array({v.x(), v.y(), v.z()}); }
json idx(const Index3& i) { return json::array({i[0], i[1], i[2]}); }
json mat3(const Eigen::Matrix3d& m) {
  json rows = json::array();
  for (int r = 0; r < 3; ++r) rows.push_back(json::array({m(r, 0), m(r, 1), m(r, 2)}));
  return rows;
}
json mat4(const Eigen::Affine3d& a) {
  json rows = json::array();
  for (int r = 0; r < 4; ++r) rows.push_back(json::array({a(r, 0), a(r, 1), a(r, 2), a(r, 3)}));
  return rows;
}
json grid(const Grid<Scanner>& g) {
  return {{"size", idx(g.size)}, {"origin_mm", vec(g.origin)}, {"spacing_mm", vec(g.spacing)},
          {"direction", mat3(g.direction)}, {"frame", "scanner (LPS mm)"}};
}
json index_box(const IndexBox& b) { return {{"start", idx(b.start)}, {"end", idx(b.end)}}; }

// Readers for parse_crop_record: exact types (a float where an index belongs, or one beyond int64, is malformed,
// not silently truncated: converting 1e300 to int64 is undefined behaviour).
[[noreturn]] void malformed(const std::string& what) { throw std::invalid_argument(what); }
Eigen::Vector3d read_vec(const json& j) {
  if (!j.is_array() || j.size() != 3) malformed("expected an array of 3 numbers, got " + j.dump());
  Eigen::Vector3d v;
  for (int a = 0; a < 3; ++a) {
    if (!j[static_cast<std::size_t>(a)].is_number()) malformed("expected numbers, got " + j.dump());
    v[a] = j[static_cast<std::size_t>(a)].get<double>();
  }
  return v;
}
Index3 read_idx(const json& j) {
  if (!j.is_array() || j.size() != 3) malformed("expected an array of 3 integers, got " + j.dump());
  Index3 i{};
  for (int a = 0; a < 3; ++a) {
    const json& e = j[static_cast<std::size_t>(a)];
    if (!e.is_number_integer() || (e.is_number_unsigned() && e.get<std::uint64_t>() > 1ull << 40) ||
        std::llabs(e.get<std::int64_t>()) > 1ll << 40)
      malformed("expected an array of 3 integers (|i| <= 2^40), got " + j.dump());
    i[a] = e.get<std::int64_t>();
  }
  return i;
}

}  // namespace

std::string crop_record_json(const CropRecord& r) {
  json j;
  j["ctarr_version"] = kVersion;
  j["input"] = {{"path", r.input}, {"format", r.scan_info.format}, {"stored_type", to_string(r.scan_info.stored_type)},
                {"grid", grid(r.input_grid)}};
  if (!r.scan_info.series_uid.empty())
    j["input"]["dicom"] = {{"series_uid", r.scan_info.series_uid}, {"series_description", r.scan_info.series_description},
                           {"slices", r.scan_info.slices_read}};
  j["region"] = {{"name", r.region}, {"provenance", json::parse(r.region_provenance_json)}};
  j["options"] = {{"margin_mm", r.options.margin_mm ? json(*r.options.margin_mm) : json(nullptr)},
                  {"pad", r.options.pad},
                  {"pad_value", r.options.pad_value ? json(*r.options.pad_value) : json(nullptr)},
                  {"target_spacing_mm", r.options.target_spacing_mm ? vec(*r.options.target_spacing_mm) : json(nullptr)},
                  {"z_only", r.options.z_only}};
  j["boxes"] = json::array();
  for (const CropRecordBox& b : r.boxes) {
    json e;
    e["file"] = b.file;
    e["atlas_box_mm"] = {{"lower", vec(b.box.atlas_box.lower.mm)}, {"upper", vec(b.box.atlas_box.upper.mm)},
                         {"frame", "atlas (LPS mm)"}, {"margin_included", true}};
    e["scanner_box_mm"] = {{"lower", vec(b.box.scanner_box.lower.mm)}, {"upper", vec(b.box.scanner_box.upper.mm)}};
    e["index_box_requested"] = index_box(b.box.requested);
    e["index_box_in_scan"] = index_box(b.box.clipped);
    e["index_box_written"] = index_box(r.options.pad ? b.box.requested : b.box.clipped);
    e["clipped"] = b.box.was_clipped;
    e["missed_scan"] = b.box.misses_scan;
    e["fraction_inside_scan"] = b.box.fraction_inside;
    if (!b.file.empty()) e["output_grid"] = grid(b.output_grid);
    j["boxes"].push_back(e);
  }
  const Affine<Scanner, Atlas> s2a = r.refined.scanner_to_atlas();
  j["transform"] = {
      {"from", "scanner (LPS mm)"},
      {"to", "atlas (LPS mm)"},
      {"model", "x_atlas = diag(scale) * rotation * (x_scanner - pivot_scanner) + pivot_atlas + translation"},
      {"orientation", r.initial.orientation},
      {"rotation", mat3(r.refined.rotation)},
      {"scale", vec(r.refined.scale)},
      {"translation_mm", vec(r.refined.translation_mm)},
      {"pivot_scanner_mm", vec(r.refined.pivot_scanner_mm)},
      {"pivot_atlas_mm", vec(r.refined.pivot_atlas_mm)},
      {"scanner_to_atlas_4x4", mat4(s2a.matrix())},
      {"atlas_to_scanner_4x4", mat4(s2a.inverse().matrix())},
  };
  json seen = json::array();
  for (int c : r.initial.classes_seen) seen.push_back(class_names()[static_cast<std::size_t>(c)]);
  json candidates = json::array();
  for (const OrientationCandidate& c : r.initial.candidates)
    candidates.push_back({{"orientation", c.name}, {"rms_error_mm", c.rms_error_mm}});
  j["fit"] = {{"dice", r.refined.dice},
              {"initial_dice", r.refined.initial_dice},
              {"iterations", r.refined.iterations},
              {"orientation_searched", r.initial.searched},
              {"orientation_candidates", candidates},
              {"landmark_scale", r.initial.scale},
              {"classes_seen", seen}};
  j["canonical_reorientation"] = {{"axis", r.reorientation.axis}, {"flip", r.reorientation.flip}};
  j["segmentation"] = r.segmentation_source;
  j["model"] = r.model_id;
  j["atlas"] = r.atlas_id;
  j["warnings"] = r.warnings;
  return j.dump(2) + "\n";
}

ParsedCropRecord parse_crop_record(const std::string& path, const std::string& text) {
  try {
    const json j = json::parse(text);
    ParsedCropRecord p;
    p.input = j.at("input").at("path").get<std::string>();
    const json& g = j.at("input").at("grid");
    p.input_grid.size = read_idx(g.at("size"));
    p.input_grid.origin = read_vec(g.at("origin_mm"));
    p.input_grid.spacing = read_vec(g.at("spacing_mm"));
    for (int r = 0; r < 3; ++r) p.input_grid.direction.row(r) = read_vec(g.at("direction").at(r)).transpose();
    validate_grid(p.input_grid, "input.grid");
    if (!j.at("boxes").is_array()) malformed("\"boxes\" is not an array");
    for (const json& b : j.at("boxes")) {
      IndexBox range{read_idx(b.at("index_box_written").at("start")), read_idx(b.at("index_box_written").at("end"))};
      for (int a = 0; a < 3; ++a)
        if (range.start[a] > range.end[a]) malformed("a box has index_box_written start > end");
      p.boxes.emplace_back(range, b.at("file").get<std::string>());
    }
    return p;
  } catch (const json::exception& e) {
    throw Error(ErrorCode::UnreadableInput, "crop record " + path + " is malformed: " + e.what());
  } catch (const std::invalid_argument& e) {
    throw Error(ErrorCode::UnreadableInput, "crop record " + path + " is malformed: " + e.what());
  } catch (const Error& e) {  // validate_grid: zero/NaN spacing, non-orthonormal direction, empty size
    throw Error(ErrorCode::UnreadableInput, "crop record " + path + " is malformed: " + e.what());
  }
}

}  // namespace ctarr
