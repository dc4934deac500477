// ctarr — dataset folders, segmentation look-up, labels kept by boxes, dataset.json.
#include "ctarr/dataset.hpp"

#include "detail/json_text.hpp"

#include "ctarr/error.hpp"
#include "ctarr/io.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>

namespace ctarr {

namespace fs = std::filesystem;

namespace {

// "case_001_0000" -> ("case_001", "_0000"); "liver_3" -> ("liver_3", "").
std::pair<std::string, std::string> split_channel(const std::string& stem) {
  if (stem.size() > 5 && stem[stem.size() - 5] == '_' &&
      stem.find_first_not_of("0123456789", stem.size() - 4) == std::string::npos)
    return {stem.substr(0, stem.size() - 5), stem.substr(stem.size() - 5)};
  return {stem, ""};
}

bool hidden(const fs::path& p) { return !p.filename().empty() && p.filename().string()[0] == '.'; }

std::vector<fs::path> image_files(const fs::path& dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (!hidden(e.path()) && e.is_regular_file() && has_image_extension(e.path().string())) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

// A file or folder in `dir` named `stem` + an image extension (or `stem` itself as a folder).
std::optional<std::string> find_by_stem(const fs::path& dir, const std::string& stem, bool allow_folder) {
  std::error_code ec;
  for (const fs::path& f : image_files(dir))
    if (image_stem(f.string()) == stem) return f.string();
  if (allow_folder && fs::is_directory(dir / stem, ec)) return (dir / stem).string();
  return std::nullopt;
}

}  // namespace

std::string label_subset(const std::string& image_subset) {
  if (image_subset.rfind("images", 0) == 0) return "labels" + image_subset.substr(6);
  return "labels";
}

std::vector<DatasetCase> find_dataset_cases(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error(ErrorCode::UnreadableInput, "dataset folder " + dir + " does not exist");
  std::vector<std::string> subsets;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_directory() && e.path().filename().string().rfind("images", 0) == 0)
      subsets.push_back(e.path().filename().string());
  std::sort(subsets.begin(), subsets.end());
  if (subsets.empty())
    throw Error(ErrorCode::UnreadableInput,
                "dataset folder " + dir + " has no images*/ sub-folder (expected the MSD / nnU-Net layout: imagesTr/, "
                "labelsTr/, imagesTs/)");
  std::vector<DatasetCase> cases;
  for (const std::string& subset : subsets) {
    std::map<std::string, DatasetCase> by_id;
    for (const fs::path& f : image_files(fs::path(dir) / subset)) {
      const auto [id, suffix] = split_channel(image_stem(f.string()));
      DatasetCase& c = by_id[id];
      c.id = id;
      c.subset = subset;
      c.images.push_back(f.string());  // sorted names: _0000 before _0001
      c.channel_suffixes.push_back(suffix);
    }
    const fs::path labels = fs::path(dir) / label_subset(subset);
    for (auto& [id, c] : by_id) {
      if (fs::is_directory(labels, ec)) c.label = find_by_stem(labels, id, false);
      cases.push_back(std::move(c));
    }
  }
  if (cases.empty()) throw Error(ErrorCode::UnreadableInput, "dataset folder " + dir + " holds no images in its images*/ folders");
  return cases;
}

std::map<std::string, std::string> image_entries_by_id(const std::string& dir, bool allow_folders) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error(ErrorCode::UnreadableInput, "folder " + dir + " does not exist");
  std::map<std::string, std::string> out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (hidden(e.path())) continue;
    const std::string p = e.path().string();
    const bool folder = allow_folders && e.is_directory();
    if (!folder && !(e.is_regular_file() && has_image_extension(p))) continue;
    const std::string id = folder ? e.path().filename().string() : image_stem(p);
    if (const auto [it, added] = out.emplace(id, p); !added)
      throw Error(ErrorCode::Usage, "folder " + dir + " holds two entries for case " + id + ": " + it->second + ", " + p);
  }
  if (ec) throw Error(ErrorCode::UnreadableInput, "folder " + dir + " cannot be read: " + ec.message());
  return out;
}

std::vector<DatasetCase> cases_from_inputs(const std::vector<std::string>& inputs) {
  std::vector<std::string> sorted = inputs;
  std::sort(sorted.begin(), sorted.end());
  std::vector<DatasetCase> cases;
  for (const std::string& in : sorted) {
    DatasetCase c;
    c.id = image_stem(in);
    c.images = {in};
    c.channel_suffixes = {""};
    cases.push_back(c);
  }
  return cases;
}

std::optional<std::string> find_segmentation(const std::string& seg_dir, const DatasetCase& c) {
  if (auto s = find_by_stem(seg_dir, c.id, true)) return s;
  if (!c.images.empty()) return find_by_stem(seg_dir, image_stem(c.images.front()), true);
  return std::nullopt;
}

// ---- labels kept by boxes ---------------------------------------------------------------------------------------

std::vector<LabelKept> labels_kept(const Image<float>& labels, const std::vector<IndexBox>& boxes) {
  const Index3 n = labels.grid.size;
  // The boxes clipped to the grid, and their bounding box.
  std::vector<IndexBox> clipped;
  IndexBox bound{Index3{{n[0], n[1], n[2]}}, Index3{{0, 0, 0}}};
  for (const IndexBox& b : boxes) {
    IndexBox c;
    for (int a = 0; a < 3; ++a) {
      c.start[a] = std::clamp<std::int64_t>(b.start[a], 0, n[a]);
      c.end[a] = std::clamp<std::int64_t>(b.end[a], 0, n[a]);
    }
    if (c.empty()) continue;
    clipped.push_back(c);
    for (int a = 0; a < 3; ++a) {
      bound.start[a] = std::min(bound.start[a], c.start[a]);
      bound.end[a] = std::max(bound.end[a], c.end[a]);
    }
  }
  std::map<int, LabelKept> stats;
  for (std::int64_t k = 0; k < n[2]; ++k)
    for (std::int64_t j = 0; j < n[1]; ++j)
      for (std::int64_t i = 0; i < n[0]; ++i) {
        const float v = labels.voxels[labels.grid.linear(Index3{{i, j, k}})];
        if (!(v > 0.5f)) continue;
        const int value = static_cast<int>(std::lround(v));
        LabelKept& s = stats[value];
        s.value = value;
        ++s.voxels;
        const std::int64_t p[3] = {i, j, k};
        const IndexBox* inside = nullptr;
        for (const IndexBox& b : clipped) {
          bool in = true;
          for (int a = 0; a < 3 && in; ++a) in = p[a] >= b.start[a] && p[a] < b.end[a];
          if (in) {
            inside = &b;
            break;
          }
        }
        if (inside) {
          ++s.kept;
          for (int a = 0; a < 3; ++a) {
            if (p[a] == inside->start[a] && inside->start[a] > 0) ++s.touching[static_cast<std::size_t>(2 * a)];
            if (p[a] == inside->end[a] - 1 && inside->end[a] < n[a]) ++s.touching[static_cast<std::size_t>(2 * a + 1)];
          }
          continue;
        }
        bool beyond = false;
        for (int a = 0; a < 3; ++a) {
          if (clipped.empty() || p[a] < bound.start[a]) {
            ++s.lost_beyond[static_cast<std::size_t>(2 * a)];
            beyond = true;
          } else if (p[a] >= bound.end[a]) {
            ++s.lost_beyond[static_cast<std::size_t>(2 * a + 1)];
            beyond = true;
          }
        }
        if (!beyond) ++s.lost_between;
      }
  std::vector<LabelKept> out;
  for (auto& [value, s] : stats) out.push_back(s);
  return out;
}

// ---- dataset.json -----------------------------------------------------------------------------------------------

std::string updated_dataset_json(const std::string& path, const std::string& text, const std::vector<DatasetEntry>& entries,
                                 const std::string& extension, const std::string& note) {
  using nlohmann::json;
  json j = json::object();
  if (!text.empty()) {
    try {
      j = json::parse(text);
    } catch (const json::exception& e) {
      throw Error(ErrorCode::UnreadableInput, "dataset description " + path + " is not valid JSON: " + e.what());
    }
    if (!j.is_object()) throw Error(ErrorCode::UnreadableInput, "dataset description " + path + " is not a JSON object");
  }
  json training = json::array(), test = json::array();
  for (const DatasetEntry& e : entries) {
    const std::string image = "./" + e.subset + "/" + e.id + extension;
    if (e.subset == "imagesTr") {
      json t = {{"image", image}};
      if (e.label) t["label"] = *e.label;
      training.push_back(t);
    } else if (e.subset == "imagesTs") {
      test.push_back(image);
    }
  }
  // MSD lists the cases; nnU-Net v2 only counts them. Keep whichever the input has (both when it had none).
  const bool lists = text.empty() || j.contains("training") || j.contains("test");
  if (lists) {
    j["training"] = training;
    j["test"] = test;
  }
  j["numTraining"] = training.size();
  if (lists || j.contains("numTest")) j["numTest"] = test.size();
  if (j.contains("file_ending") || text.empty()) j["file_ending"] = extension;
  j["ctarr"] = note;
  return detail::json_text(j, 4) + "\n";
}

}  // namespace ctarr
