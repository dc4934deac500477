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
  bool has_summary = false;
  try {
    const json j = json::parse(text);
    has_summary = j.is_object() && j.contains("summary");
  } catch (const json::exception&) {
  }
  if (!has_summary)
    throw Error(ErrorCode::UnreadableInput, "crop record " + path + " has no readable summary (written by an older ctarr?); "
                                            "rerun with --overwrite");
  return crop_summary(parse_crop_record(path, text), path);
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
  j["record_version"] = kCropRecordVersion;
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
  const Affine<Scanner, Atlas> s2a = r.refined.transform();
  j["transform"] = {
      {"from", "scanner (LPS mm)"},
      {"to", "atlas (LPS mm)"},
      {"model", "x_atlas = diag(scale) * rotation * (x_scanner - pivot_scanner) + pivot_atlas + translation"},
      {"orientation", r.initial.orientation},
      {"rotation", mat3_json(r.refined.rotation)},
      {"scale", vec3_json(r.refined.scale)},
      {"translation_mm", vec3_json(r.refined.translation_mm)},
      {"pivot_scanner_mm", vec3_json(r.refined.pivot_from_mm)},
      {"pivot_atlas_mm", vec3_json(r.refined.pivot_to_mm)},
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

namespace {

// ---- reading a record back: every field crop_record_json writes -----------------------------------------------

PixelType stored_type_named(const std::string& name) {
  if (const std::optional<PixelType> t = pixel_type_named(name)) return *t;
  malformed("unknown voxel type \"" + name + "\"");
}

int class_named(const std::string& name) {
  const auto& names = class_names();
  const auto it = std::find(names.begin(), names.end(), name);
  if (it == names.end()) malformed("unknown class \"" + name + "\"");
  return static_cast<int>(it - names.begin());
}

Grid<Scanner> read_scanner_grid(const json& g, const std::string& what) {
  Grid<Scanner> grid;
  grid.size = read_index3(g.at("size"), what + ".size");
  grid.origin = read_vec3(g.at("origin_mm"), what + ".origin_mm");
  grid.spacing = read_vec3(g.at("spacing_mm"), what + ".spacing_mm");
  grid.direction = detail::read_mat3(g.at("direction"), what + ".direction");
  validate_grid(grid, what);
  return grid;
}

IndexBox read_index_box(const json& j, const std::string& what) {
  IndexBox b{read_index3(j.at("start"), what + ".start"), read_index3(j.at("end"), what + ".end")};
  for (int a = 0; a < 3; ++a)
    if (b.start[a] > b.end[a]) malformed("a box has " + what + " start > end");
  return b;
}

template <class Frame>
Box<Frame> read_box(const json& j, const std::string& what) {
  return Box<Frame>{{read_vec3(j.at("lower"), what + ".lower")}, {read_vec3(j.at("upper"), what + ".upper")}};
}

std::vector<int> read_classes(const json& names) {
  std::vector<int> out;
  for (const json& n : names) out.push_back(class_named(n.get<std::string>()));
  return out;
}

CropOptions read_options(const json& o) {
  CropOptions options;
  if (o.contains("margin_mm") && !o.at("margin_mm").is_null()) options.margin_mm = o.at("margin_mm").get<double>();
  options.pad = o.value("pad", false);
  if (o.contains("pad_value") && !o.at("pad_value").is_null()) options.pad_value = o.at("pad_value").get<float>();
  if (o.contains("target_spacing_mm") && !o.at("target_spacing_mm").is_null())
    options.target_spacing_mm = read_vec3(o.at("target_spacing_mm"), "options.target_spacing_mm");
  options.z_only = o.value("z_only", false);
  return options;
}

CropRecordBox read_record_box(const json& b, bool pad) {
  CropRecordBox rb;
  rb.file = b.at("file").get<std::string>();
  const IndexBox written = read_index_box(b.at("index_box_written"), "index_box_written");
  // A record that gives only the range written (hand-made, or trimmed): it is both the requested and the clipped one.
  rb.box.requested = b.contains("index_box_requested") ? read_index_box(b.at("index_box_requested"), "index_box_requested") : written;
  rb.box.clipped = b.contains("index_box_in_scan") ? read_index_box(b.at("index_box_in_scan"), "index_box_in_scan") : written;
  if ((pad ? rb.box.requested : rb.box.clipped).start != written.start ||
      (pad ? rb.box.requested : rb.box.clipped).end != written.end)
    malformed("a box's index_box_written is neither its requested range (with pad) nor its range in the scan");
  if (b.contains("atlas_box_mm")) rb.box.atlas_box = read_box<Atlas>(b.at("atlas_box_mm"), "atlas_box_mm");
  if (b.contains("scanner_box_mm")) rb.box.scanner_box = read_box<Scanner>(b.at("scanner_box_mm"), "scanner_box_mm");
  rb.box.was_clipped = b.value("clipped", false);
  rb.box.misses_scan = b.value("missed_scan", false);
  rb.box.fraction_inside = b.value("fraction_inside_scan", 0.0);
  if (b.contains("output_grid")) rb.output_grid = read_scanner_grid(b.at("output_grid"), "output_grid");
  if (b.contains("channel_files")) rb.channel_files = b.at("channel_files").get<std::vector<std::string>>();
  rb.label_file = b.value("label_file", "");
  return rb;
}

void read_fit(const json& j, CropRecord& r) {
  if (j.contains("transform")) {
    const json& t = j.at("transform");
    r.initial.orientation = t.at("orientation").get<std::string>();
    r.refined.rotation = detail::read_mat3(t.at("rotation"), "transform.rotation");
    r.refined.scale = read_vec3(t.at("scale"), "transform.scale");
    r.refined.translation_mm = read_vec3(t.at("translation_mm"), "transform.translation_mm");
    r.refined.pivot_from_mm = read_vec3(t.at("pivot_scanner_mm"), "transform.pivot_from_mm");
    r.refined.pivot_to_mm = read_vec3(t.at("pivot_atlas_mm"), "transform.pivot_to_mm");
  }
  if (!j.contains("fit")) return;
  const json& f = j.at("fit");
  r.refined.dice = f.at("dice").get<double>();
  r.refined.initial_dice = f.at("initial_dice").get<double>();
  r.refined.iterations = f.at("iterations").get<int>();
  r.initial.searched = f.at("orientation_searched").get<bool>();
  for (const json& c : f.at("orientation_candidates"))
    r.initial.candidates.push_back({c.at("orientation").get<std::string>(), Eigen::Matrix3d::Identity(),
                                    c.at("rms_error_mm").get<double>()});
  r.initial.scale = f.at("landmark_scale").get<double>();
  r.initial.classes_seen = read_classes(f.at("classes_seen"));
  r.initial.classes_left_out = read_classes(f.at("classes_left_out"));
  if (f.contains("network_passes"))
    for (const json& p : f.at("network_passes"))
      r.network_passes.push_back({p.at("turn").get<std::string>(), p.at("dice").get<double>(), p.at("classes").get<int>(),
                                  p.value("orientation", ""), p.at("score").get<double>(), p.value("error", ""),
                                  p.at("kept").get<bool>()});
}

void read_labels_and_preview(const json& j, CropRecord& r) {
  if (j.contains("labels"))
    for (const json& l : j.at("labels")) {
      LabelKept k;
      k.value = l.at("value").get<int>();
      k.voxels = l.at("voxels").get<std::int64_t>();
      k.kept = l.at("kept").get<std::int64_t>();
      k.lost_beyond = read_faces(l.at("lost_beyond_face"));
      k.lost_between = l.at("lost_between_boxes").get<std::int64_t>();
      k.touching = read_faces(l.at("kept_on_inner_box_face"));
      r.labels.push_back(k);
    }
  if (!j.contains("preview")) return;
  const json& p = j.at("preview");
  PreviewRecord pr;
  pr.file = p.at("file").get<std::string>();
  pr.pixel_mm = p.at("pixel_mm").get<double>();
  pr.views_top = p.at("views").at("top").get<int>();
  pr.coronal_left = p.at("views").at("coronal_left").get<int>();
  pr.sagittal_left = p.at("views").at("sagittal_left").get<int>();
  for (const json& a : p.at("axial_slices"))
    pr.axial.push_back({a.at("label").get<std::string>(), a.at("left").get<int>(), a.at("top").get<int>(),
                        a.at("display_k").get<std::int64_t>()});
  r.preview = pr;
}

}  // namespace

CropRecord parse_crop_record(const std::string& path, const std::string& text) {
  try {
    const json j = json::parse(text);
    if (!j.is_object()) malformed("not a JSON object");
    const int version = j.value("record_version", 1);
    if (version > kCropRecordVersion)
      malformed("record_version " + std::to_string(version) + " is newer than this ctarr reads (" +
                std::to_string(kCropRecordVersion) + "): read it with a newer ctarr");
    CropRecord r;
    r.case_id = j.value("case", "");
    const json& in = j.at("input");
    r.input = in.at("path").get<std::string>();
    r.scan_info.path = r.input;
    r.scan_info.format = in.value("format", "");
    if (in.contains("stored_type")) r.scan_info.stored_type = stored_type_named(in.at("stored_type").get<std::string>());
    r.input_grid = read_scanner_grid(in.at("grid"), "input.grid");
    if (in.contains("channels")) r.channel_inputs = in.at("channels").get<std::vector<std::string>>();
    r.label_input = in.value("labels", "");
    if (in.contains("dicom")) {
      r.scan_info.series_uid = in.at("dicom").at("series_uid").get<std::string>();
      r.scan_info.series_description = in.at("dicom").at("series_description").get<std::string>();
      r.scan_info.slices_read = in.at("dicom").at("slices").get<int>();
    }
    if (!j.at("boxes").is_array()) malformed("\"boxes\" is not an array");
    r.region = j.at("region").at("name").get<std::string>();
    if (j.at("region").contains("provenance")) r.region_provenance_json = detail::json_text(j.at("region").at("provenance"));
    r.options = read_options(j.at("options"));
    for (const json& b : j.at("boxes")) r.boxes.push_back(read_record_box(b, r.options.pad));
    read_fit(j, r);
    if (j.contains("canonical_reorientation")) {
      r.reorientation.axis = j.at("canonical_reorientation").at("axis").get<std::array<int, 3>>();
      r.reorientation.flip = j.at("canonical_reorientation").at("flip").get<std::array<bool, 3>>();
    }
    r.segmentation_source = j.value("segmentation", "");
    r.model_id = j.value("model", "");
    r.atlas_id = j.value("atlas", "");
    if (j.contains("warnings")) r.warnings = j.at("warnings").get<std::vector<std::string>>();
    if (j.contains("warning_codes")) r.warning_codes = j.at("warning_codes").get<std::vector<std::string>>();
    read_labels_and_preview(j, r);
    return r;
  } catch (const json::exception& e) {
    throw Error(ErrorCode::UnreadableInput, "crop record " + path + " is malformed: " + e.what());
  } catch (const std::invalid_argument& e) {
    throw Error(ErrorCode::UnreadableInput, "crop record " + path + " is malformed: " + e.what());
  } catch (const Error& e) {  // validate_grid: zero/NaN spacing, non-orthonormal direction, empty size
    throw Error(ErrorCode::UnreadableInput, "crop record " + path + " is malformed: " + e.what());
  }
}

}  // namespace ctarr
