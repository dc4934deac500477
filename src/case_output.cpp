// ctarr — a crop case's files: layout, resume, the transaction, dataset.json (see case_output.hpp).
#include "ctarr/case_output.hpp"

#include "ctarr/error.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include <unistd.h>

namespace ctarr {

namespace fs = std::filesystem;

// ---- layout ---------------------------------------------------------------------------------------------------

std::string CaseLayout::record_path(const DatasetCase& c, const Region& r) const {
  if (!dataset) return (fs::path(out_dir) / (image_stem(c.images.front()) + "_" + r.name + ".json")).string();
  return (fs::path(out_dir) / "records" / (c.id + "_" + r.name + ".json")).string();
}

std::string CaseLayout::root(const Region& r) const {
  return (several_regions ? fs::path(out_dir) / r.name : fs::path(out_dir)).string();
}

std::string CaseLayout::out_id(const DatasetCase& c, const Region& r, std::size_t box) const {
  return r.boxes.size() > 1 ? c.id + "_" + std::to_string(box + 1) : c.id;
}

std::string CaseLayout::image_path(const DatasetCase& c, const Region& r, std::size_t box, std::size_t channel) const {
  if (!dataset)
    return (fs::path(out_dir) /
            (image_stem(c.images.front()) + "_" + r.name + (r.boxes.size() > 1 ? "_" + std::to_string(box + 1) : "") + extension))
        .string();
  return (fs::path(root(r)) / c.subset / (out_id(c, r, box) + c.channel_suffixes[channel] + extension)).string();
}

std::string CaseLayout::label_path(const DatasetCase& c, const Region& r, std::size_t box) const {
  return (fs::path(root(r)) / label_subset(c.subset) / (out_id(c, r, box) + extension)).string();
}

void check_output_dir(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) fs::create_directories(dir, ec);
  if (!fs::is_directory(dir, ec))
    throw Error(ErrorCode::OutputNotWritable, "output folder " + dir + " does not exist and cannot be created");
  const fs::path probe = fs::path(dir) / (".ctarr-write-test-" + std::to_string(::getpid()));
  try {
    write_text_file(probe.string(), "");
  } catch (const Error&) {
    throw Error(ErrorCode::OutputNotWritable, "output folder " + dir + " is not writable");
  }
  fs::remove(probe, ec);
}

// ---- resume ---------------------------------------------------------------------------------------------------

std::string options_differ(const CropOptions& before, const CropOptions& now) {
  std::string d;
  auto add = [&](const std::string& what) { d += (d.empty() ? "" : ", ") + what; };
  if (std::abs(before.margin_mm.value_or(0.0) - now.margin_mm.value_or(0.0)) > 1e-6)
    add("margin " + std::to_string(before.margin_mm.value_or(0.0)) + " mm, now " + std::to_string(now.margin_mm.value_or(0.0)));
  if (before.pad != now.pad) add(std::string("pad ") + (before.pad ? "on" : "off") + ", now " + (now.pad ? "on" : "off"));
  if (now.pad && now.pad_value && before.pad_value && *before.pad_value != *now.pad_value) add("pad value");
  if (before.target_spacing_mm.has_value() != now.target_spacing_mm.has_value() ||
      (now.target_spacing_mm && (*now.target_spacing_mm - *before.target_spacing_mm).cwiseAbs().maxCoeff() > 1e-6))
    add("target spacing");
  if (before.z_only != now.z_only) add("z-only");
  return d;
}

EarlierRun earlier_run(const std::string& record_path, const std::string& input, const CropOptions& options) {
  EarlierRun e;
  std::error_code ec;
  if (!fs::is_regular_file(record_path, ec)) return e;
  try {
    const std::string text = read_text_file(record_path);
    const CropRecord rec = parse_crop_record(record_path, text);
    e.other_options = rec.input != input ? "input " + rec.input + ", now " + input : options_differ(rec.options, options);
    if (!e.other_options.empty()) return e;
    const fs::path folder = fs::path(record_path).parent_path();
    for (const CropRecordBox& b : rec.boxes) {
      if (!b.file.empty() && !fs::is_regular_file(folder / b.file, ec)) return e;
      if (!b.label_file.empty() && !fs::is_regular_file(folder / b.label_file, ec)) return e;
    }
    CropSummary s = parse_crop_summary(record_path, text);
    s.status = "skipped";
    e.done = s;
  } catch (const Error&) {
    // unreadable record: redo the case (existing files are still never overwritten without --overwrite)
  }
  return e;
}

CaseResume resume_case(const DatasetCase& c, const std::vector<Region>& regions, const CaseLayout& layout,
                       const CropOptions& requested, bool overwrite) {
  CaseResume out;
  for (std::size_t r = 0; r < regions.size(); ++r) {
    const std::string record = layout.record_path(c, regions[r]);
    EarlierRun before;
    if (!overwrite) before = earlier_run(record, c.images.front(), effective_crop_options(requested, regions[r]));
    if (before.done) {
      out.done_rows.push_back(*before.done);
      continue;
    }
    out.pending.push_back(r);
    if (!before.other_options.empty())
      out.stale += (out.stale.empty() ? "" : "; ") + record + " (" + before.other_options + ")";
  }
  return out;
}

// ---- the transaction ------------------------------------------------------------------------------------------

void CaseTransaction::claim(const std::string& path, bool refuse_existing) {
  std::error_code ec;
  const bool ours = std::find(written_.begin(), written_.end(), path) != written_.end();
  if (refuse_existing && !overwrite_ && !ours && fs::exists(path, ec))
    throw Error(ErrorCode::OutputNotWritable, path + " exists (from another run or another case?); it is kept: "
                                                     "rerun with --overwrite to replace it");
  fs::create_directories(fs::path(path).parent_path(), ec);
  if (!ours) written_.push_back(path);
}

void CaseTransaction::write_image(const Image<float>& image, const std::string& path, PixelType type) {
  claim(path, true);
  ctarr::write_image(image, path, type);
}

void CaseTransaction::write_text(const std::string& path, const std::string& text) {
  claim(path, true);
  write_text_file(path, text);
}

void CaseTransaction::write_preview(const RgbImage& picture, const std::string& path) {
  claim(path, false);
  write_png(picture, path);
}

void CaseTransaction::write_failure_picture(const RgbImage& picture, const std::string& path) {
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  write_png(picture, path);
  failure_picture_ = path;
}

void CaseTransaction::roll_back() noexcept {
  std::error_code ec;
  for (const std::string& f : written_)
    if (f != failure_picture_) fs::remove(f, ec);
  written_.clear();
}

// ---- dataset.json ---------------------------------------------------------------------------------------------

void write_cropped_dataset_json(const std::string& dataset_dir, const CaseLayout& layout,
                                const std::vector<DatasetCase>& all_cases, const std::vector<Region>& regions,
                                const std::string& made_by) {
  const fs::path source = fs::path(dataset_dir) / "dataset.json";
  std::error_code ec;
  if (!fs::is_regular_file(source, ec)) return;
  const std::string text = read_text_file(source.string());
  for (const Region& r : regions) {
    std::vector<DatasetEntry> entries;
    for (const DatasetCase& c : all_cases) {
      const std::string rec_path = layout.record_path(c, r);
      if (!fs::is_regular_file(rec_path, ec)) continue;
      CropRecord rec;
      try {
        rec = parse_crop_record(rec_path, read_text_file(rec_path));
      } catch (const Error&) {
        continue;
      }
      for (std::size_t b = 0; b < rec.boxes.size(); ++b) {
        if (rec.boxes[b].file.empty()) continue;
        DatasetEntry e{c.subset, layout.out_id(c, r, b), std::nullopt};
        if (!rec.boxes[b].label_file.empty()) e.label = "./" + label_subset(c.subset) + "/" + e.id + layout.extension;
        entries.push_back(e);
      }
    }
    const fs::path target = fs::path(layout.root(r)) / "dataset.json";
    fs::create_directories(target.parent_path(), ec);
    write_text_file(target.string(), updated_dataset_json(source.string(), text, entries, layout.extension,
                                                         "cropped to region " + r.name + " by " + made_by));
  }
}

}  // namespace ctarr
