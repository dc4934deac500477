// ctarr — crop records (JSON).
#include "ctarr/record.hpp"

#include "detail/json_geometry.hpp"
#include "detail/json_text.hpp"

#include "ctarr/classes.hpp"
#include "ctarr/error.hpp"
#include "ctarr/version.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

namespace ctarr {

using nlohmann::json;

namespace {

using detail::index3_json;
using detail::mat3_json;
using detail::mat4_json;
using detail::read_index3;
using detail::read_vec3;
using detail::vec3_json;

json scanner_grid_json(const Grid<Scanner>& g) { return detail::grid_json(g, "scanner (LPS mm)"); }

// parse_crop_record's own checks; malformed types and values are reported the same way by json_geometry's readers.
[[noreturn]] void malformed(const std::string& what) { throw std::invalid_argument(what); }
json index_box(const IndexBox& b) { return {{"start", index3_json(b.start)}, {"end", index3_json(b.end)}}; }

json faces(const std::array<std::int64_t, 6>& counts) {
  json f = json::object();
  for (std::size_t n = 0; n < 6; ++n) f[kFaceNames[n]] = counts[n];
  return f;
}
std::array<std::int64_t, 6> read_faces(const json& j) {
  std::array<std::int64_t, 6> c{};
  for (std::size_t n = 0; n < 6; ++n) c[n] = j.at(kFaceNames[n]).get<std::int64_t>();
  return c;
}

json labels_json(const std::vector<LabelKept>& labels) {
  json a = json::array();
  for (const LabelKept& l : labels)
    a.push_back({{"value", l.value},
                 {"voxels", l.voxels},
                 {"kept", l.kept},
                 {"fraction_kept", l.fraction_kept()},
                 {"lost_beyond_face", faces(l.lost_beyond)},
                 {"lost_between_boxes", l.lost_between},
                 {"kept_on_inner_box_face", faces(l.touching)}});
  return a;
}

// The summary fields of a row (no status: the record stores this object as "summary").
json summary_fields(const CropSummary& s) {
  json boxes = json::array();
  for (const CropSummary::Box& b : s.boxes)
    boxes.push_back({{"index_start", index3_json(b.written.start)},
                     {"index_end", index3_json(b.written.end)},
                     {"atlas_lower_mm", vec3_json(b.atlas_box.lower.mm)},
                     {"atlas_upper_mm", vec3_json(b.atlas_box.upper.mm)},
                     {"fraction_inside_scan", b.fraction_inside},
                     {"file", b.file}});
  return {{"case", s.case_id},
          {"region", s.region},
          {"input", s.input},
          {"fit_dice", s.fit_dice},
          {"orientation", s.orientation},
          {"orientation_searched", s.orientation_searched},
          {"boxes", boxes},
          {"input_voxels", s.input_voxels},
          {"crop_voxels", s.crop_voxels},
          {"voxel_reduction", s.voxel_reduction()},
          {"labels", labels_json(s.labels)},
          {"warnings", s.warnings},
          {"warning_codes", s.warning_codes},
          {"preview", s.preview}};
}

json row_json(const CropSummary& s) {
  json j = summary_fields(s);
  j["status"] = s.status;
  j["record"] = s.record;
  if (s.status == "failed") {
    j["error"] = s.error;
    j["error_code"] = s.error_code;
  }
  return j;
}

}  // namespace

CropSummary crop_summary(const CropRecord& r, const std::string& record_path) {
  CropSummary s;
  s.case_id = r.case_id;
  s.region = r.region;
  s.input = r.input;
  s.record = record_path;
  s.fit_dice = r.refined.dice;
  s.orientation = r.initial.orientation;
  s.orientation_searched = r.initial.searched;
  s.input_voxels = r.input_grid.voxels();
  for (const CropRecordBox& b : r.boxes) {
    CropSummary::Box sb;
    sb.written = r.options.pad ? b.box.requested : b.box.clipped;
    sb.atlas_box = b.box.atlas_box;
    sb.fraction_inside = b.box.fraction_inside;
    sb.file = b.file;
    if (!b.file.empty()) s.crop_voxels += b.output_grid.voxels();
    s.boxes.push_back(sb);
  }
  s.labels = r.labels;
  s.warnings = r.warnings;
  s.warning_codes = r.warning_codes;
  if (r.preview) s.preview = r.preview->file;
  return s;
}

CropSummary parse_crop_summary(const std::string& path, const std::string& text) {
  try {
    const json j = json::parse(text).at("summary");
    CropSummary s;
    s.case_id = j.at("case").get<std::string>();
    s.region = j.at("region").get<std::string>();
    s.input = j.at("input").get<std::string>();
    s.record = path;
    s.fit_dice = j.at("fit_dice").get<double>();
    s.orientation = j.at("orientation").get<std::string>();
    s.orientation_searched = j.at("orientation_searched").get<bool>();
    for (const json& b : j.at("boxes")) {
      CropSummary::Box sb;
      sb.written = IndexBox{read_index3(b.at("index_start"), "index_start"), read_index3(b.at("index_end"), "index_end")};
      sb.atlas_box = Box<Atlas>{{read_vec3(b.at("atlas_lower_mm"), "atlas_lower_mm")},
                                {read_vec3(b.at("atlas_upper_mm"), "atlas_upper_mm")}};
      sb.fraction_inside = b.at("fraction_inside_scan").get<double>();
      sb.file = b.at("file").get<std::string>();
      s.boxes.push_back(sb);
    }
    s.input_voxels = j.at("input_voxels").get<std::int64_t>();
    s.crop_voxels = j.at("crop_voxels").get<std::int64_t>();
    for (const json& l : j.at("labels")) {
      LabelKept k;
      k.value = l.at("value").get<int>();
      k.voxels = l.at("voxels").get<std::int64_t>();
      k.kept = l.at("kept").get<std::int64_t>();
      k.lost_beyond = read_faces(l.at("lost_beyond_face"));
      k.lost_between = l.at("lost_between_boxes").get<std::int64_t>();
      k.touching = read_faces(l.at("kept_on_inner_box_face"));
      s.labels.push_back(k);
    }
    s.warnings = j.at("warnings").get<std::vector<std::string>>();
    s.warning_codes = j.at("warning_codes").get<std::vector<std::string>>();
    s.preview = j.value("preview", "");
    return s;
  } catch (const json::exception& e) {
    throw Error(ErrorCode::UnreadableInput, "crop record " + path + " has no readable summary (written by an older ctarr?): " +
                                                e.what() + "; rerun with --overwrite");
  } catch (const std::invalid_argument& e) {  // read_vec3 / read_index3: wrong types or absurd indices
    throw Error(ErrorCode::UnreadableInput, "crop record " + path + " has a malformed summary: " + e.what() +
                                                "; rerun with --overwrite");
  }
}

std::string summary_json(const std::vector<CropSummary>& rows) {
  json cases = json::array();
  std::size_t ok = 0, skipped = 0, failed = 0;
  for (const CropSummary& r : rows) {
    cases.push_back(row_json(r));
    (r.status == "ok" ? ok : r.status == "skipped" ? skipped : failed)++;
  }
  json j = {{"ctarr_version", kVersion},
            {"counts", {{"ok", ok}, {"skipped", skipped}, {"failed", failed}}},
            {"faces", "x-/x+/y-/y+/z-/z+: sides of the input grid's index axes i, j, k"},
            {"cases", cases}};
  return detail::json_text(j, 2) + "\n";
}

namespace {

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (std::size_t n = 0; n < items.size(); ++n) out += (n ? sep : "") + items[n];
  return out;
}

}  // namespace

std::string summary_csv(const std::vector<CropSummary>& rows) {
  std::set<int> values;
  for (const CropSummary& r : rows)
    for (const LabelKept& l : r.labels) values.insert(l.value);
  std::ostringstream os;
  os << "case,region,status,fit_dice,orientation,voxel_reduction,input_voxels,crop_voxels,index_boxes,atlas_boxes_mm";
  for (int v : values) os << ",kept_" << v << ",lost_faces_" << v;
  os << ",warning_codes,warnings,error,record\n";
  for (const CropSummary& r : rows) {
    std::vector<std::string> ib, ab;
    for (const CropSummary::Box& b : r.boxes) {
      std::string t;
      for (int a = 0; a < 3; ++a) t += (a ? " " : "") + std::to_string(b.written.start[a]) + ":" + std::to_string(b.written.end[a]);
      ib.push_back(t);
      std::string m;
      for (int a = 0; a < 3; ++a) m += (a ? " " : "") + num(b.atlas_box.lower.mm[a]) + ":" + num(b.atlas_box.upper.mm[a]);
      ab.push_back(m);
    }
    const bool done = r.status != "failed";
    os << csv_field(r.case_id) << ',' << csv_field(r.region) << ',' << r.status << ',' << (done ? num(r.fit_dice) : "")
       << ',' << r.orientation << ',' << (done ? num(r.voxel_reduction()) : "") << ',' << (done ? std::to_string(r.input_voxels) : "")
       << ',' << (done ? std::to_string(r.crop_voxels) : "") << ',' << csv_field(join(ib, "; ")) << ','
       << csv_field(join(ab, "; "));
    for (int v : values) {
      const LabelKept* l = nullptr;
      for (const LabelKept& k : r.labels)
        if (k.value == v) l = &k;
      std::vector<std::string> lost;
      if (l) {
        for (std::size_t f = 0; f < 6; ++f)
          if (l->lost_beyond[f]) lost.push_back(std::string(kFaceNames[f]) + ":" + std::to_string(l->lost_beyond[f]));
        if (l->lost_between) lost.push_back("between:" + std::to_string(l->lost_between));
      }
      os << ',' << (l ? num(l->fraction_kept()) : "") << ',' << csv_field(join(lost, " "));
    }
    os << ',' << csv_field(join(r.warning_codes, " ")) << ',' << csv_field(join(r.warnings, "; ")) << ','
       << csv_field(r.error) << ',' << csv_field(r.record) << '\n';
  }
  return os.str();
}

std::string records_json_array(const std::vector<CropSummary>& rows) {
  json a = json::array();
  for (const CropSummary& r : rows) {
    json j;
    if (r.status != "failed" && !r.record.empty()) {
      try {
        std::ifstream in(r.record);
        j = json::parse(in);
      } catch (const json::exception&) {
        j = json::object();
      }
    }
    j["case"] = r.case_id;
    j["status"] = r.status;
    j["record_path"] = r.record;
    if (r.status == "failed") {
      j["region"] = r.region;
      j["input"] = r.input;
      j["error"] = r.error;
      j["error_code"] = r.error_code;
    }
    a.push_back(j);
  }
  return detail::json_text(a, 2) + "\n";
}

std::string crop_record_json(const CropRecord& r) {
  json j;
  j["ctarr_version"] = kVersion;
  j["case"] = r.case_id;
  j["input"] = {{"path", r.input}, {"format", r.scan_info.format}, {"stored_type", to_string(r.scan_info.stored_type)},
                {"grid", scanner_grid_json(r.input_grid)}};
  if (!r.channel_inputs.empty()) j["input"]["channels"] = r.channel_inputs;
  if (!r.label_input.empty()) j["input"]["labels"] = r.label_input;
  if (!r.scan_info.series_uid.empty())
    j["input"]["dicom"] = {{"series_uid", r.scan_info.series_uid}, {"series_description", r.scan_info.series_description},
                           {"slices", r.scan_info.slices_read}};
  j["region"] = {{"name", r.region}, {"provenance", json::parse(r.region_provenance_json)}};
  j["options"] = {{"margin_mm", r.options.margin_mm ? json(*r.options.margin_mm) : json(nullptr)},
                  {"pad", r.options.pad},
                  {"pad_value", r.options.pad_value ? json(*r.options.pad_value) : json(nullptr)},
                  {"target_spacing_mm", r.options.target_spacing_mm ? vec3_json(*r.options.target_spacing_mm) : json(nullptr)},
                  {"z_only", r.options.z_only}};
  j["boxes"] = json::array();
  for (const CropRecordBox& b : r.boxes) {
    json e;
    e["file"] = b.file;
    e["atlas_box_mm"] = {{"lower", vec3_json(b.box.atlas_box.lower.mm)}, {"upper", vec3_json(b.box.atlas_box.upper.mm)},
                         {"frame", "atlas (LPS mm)"}, {"margin_included", true}};
    e["scanner_box_mm"] = {{"lower", vec3_json(b.box.scanner_box.lower.mm)}, {"upper", vec3_json(b.box.scanner_box.upper.mm)}};
    e["index_box_requested"] = index_box(b.box.requested);
    e["index_box_in_scan"] = index_box(b.box.clipped);
    e["index_box_written"] = index_box(r.options.pad ? b.box.requested : b.box.clipped);
    e["clipped"] = b.box.was_clipped;
    e["missed_scan"] = b.box.misses_scan;
    e["fraction_inside_scan"] = b.box.fraction_inside;
    if (!b.file.empty()) e["output_grid"] = scanner_grid_json(b.output_grid);
    if (!b.channel_files.empty()) e["channel_files"] = b.channel_files;
    if (!b.label_file.empty()) e["label_file"] = b.label_file;
    j["boxes"].push_back(e);
  }
  const Affine<Scanner, Atlas> s2a = r.refined.scanner_to_atlas();
  j["transform"] = {
      {"from", "scanner (LPS mm)"},
      {"to", "atlas (LPS mm)"},
      {"model", "x_atlas = diag(scale) * rotation * (x_scanner - pivot_scanner) + pivot_atlas + translation"},
      {"orientation", r.initial.orientation},
      {"rotation", mat3_json(r.refined.rotation)},
      {"scale", vec3_json(r.refined.scale)},
      {"translation_mm", vec3_json(r.refined.translation_mm)},
      {"pivot_scanner_mm", vec3_json(r.refined.pivot_scanner_mm)},
      {"pivot_atlas_mm", vec3_json(r.refined.pivot_atlas_mm)},
      {"scanner_to_atlas_4x4", mat4_json(s2a.matrix())},
      {"atlas_to_scanner_4x4", mat4_json(s2a.inverse().matrix())},
  };
  json seen = json::array();
  for (int c : r.initial.classes_seen) seen.push_back(class_names()[static_cast<std::size_t>(c)]);
  json left_out = json::array();
  for (int c : r.initial.classes_left_out) left_out.push_back(class_names()[static_cast<std::size_t>(c)]);
  json candidates = json::array();
  for (const OrientationCandidate& c : r.initial.candidates)
    candidates.push_back({{"orientation", c.name}, {"rms_error_mm", c.rms_error_mm}});
  j["fit"] = {{"dice", r.refined.dice},
              {"initial_dice", r.refined.initial_dice},
              {"iterations", r.refined.iterations},
              {"orientation_searched", r.initial.searched},
              {"orientation_candidates", candidates},
              {"landmark_scale", r.initial.scale},
              {"classes_seen", seen},
              {"classes_left_out", left_out}};
  if (!r.network_passes.empty()) {
    json passes = json::array();
    for (const NetworkPass& p : r.network_passes) {
      json e = {{"turn", p.turn}, {"dice", p.dice}, {"classes", p.classes}, {"score", p.score}, {"kept", p.kept}};
      if (!p.error.empty()) e["error"] = p.error;
      if (!p.orientation.empty()) e["orientation"] = p.orientation;
      passes.push_back(e);
    }
    j["fit"]["network_passes"] = passes;
  }
  j["canonical_reorientation"] = {{"axis", r.reorientation.axis}, {"flip", r.reorientation.flip}};
  j["segmentation"] = r.segmentation_source;
  j["model"] = r.model_id;
  j["atlas"] = r.atlas_id;
  j["warnings"] = r.warnings;
  j["warning_codes"] = r.warning_codes;
  if (!r.label_input.empty()) j["labels"] = labels_json(r.labels);
  if (r.preview) {
    json axial = json::array();
    for (const PreviewRecord::Axial& a : r.preview->axial)
      axial.push_back({{"label", a.label}, {"left", a.left}, {"top", a.top}, {"display_k", a.display_k}});
    j["preview"] = {{"file", r.preview->file},
                    {"pixel_mm", r.preview->pixel_mm},
                    {"views", {{"top", r.preview->views_top},
                               {"coronal_left", r.preview->coronal_left},
                               {"sagittal_left", r.preview->sagittal_left}}},
                    {"axial_slices", axial}};
  }
  j["summary"] = summary_fields(crop_summary(r, ""));
  return detail::json_text(j, 2) + "\n";
}

ParsedCropRecord parse_crop_record(const std::string& path, const std::string& text) {
  try {
    const json j = json::parse(text);
    ParsedCropRecord p;
    p.input = j.at("input").at("path").get<std::string>();
    p.stored_type = j.at("input").value("stored_type", "");
    const json& g = j.at("input").at("grid");
    p.input_grid.size = read_index3(g.at("size"), "input.grid.size");
    p.input_grid.origin = read_vec3(g.at("origin_mm"), "input.grid.origin_mm");
    p.input_grid.spacing = read_vec3(g.at("spacing_mm"), "input.grid.spacing_mm");
    p.input_grid.direction = detail::read_mat3(g.at("direction"), "input.grid.direction");
    validate_grid(p.input_grid, "input.grid");
    if (!j.at("boxes").is_array()) malformed("\"boxes\" is not an array");
    for (const json& b : j.at("boxes")) {
      IndexBox range{read_index3(b.at("index_box_written").at("start"), "index_box_written.start"),
                     read_index3(b.at("index_box_written").at("end"), "index_box_written.end")};
      for (int a = 0; a < 3; ++a)
        if (range.start[a] > range.end[a]) malformed("a box has index_box_written start > end");
      p.boxes.emplace_back(range, b.at("file").get<std::string>());
      p.label_files.push_back(b.value("label_file", ""));
    }
    const json& o = j.at("options");
    if (o.contains("pad_value") && !o.at("pad_value").is_null()) p.pad_value = o.at("pad_value").get<float>();
    p.resampled = o.contains("target_spacing_mm") && !o.at("target_spacing_mm").is_null();
    p.region = j.at("region").at("name").get<std::string>();
    if (o.contains("margin_mm") && !o.at("margin_mm").is_null()) p.options.margin_mm = o.at("margin_mm").get<double>();
    p.options.pad = o.value("pad", false);
    p.options.pad_value = p.pad_value;
    if (p.resampled) p.options.target_spacing_mm = read_vec3(o.at("target_spacing_mm"), "options.target_spacing_mm");
    p.options.z_only = o.value("z_only", false);
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
