// ctarr — crops pasted back onto the record's input grid (see uncrop.hpp).
#include "ctarr/uncrop.hpp"

#include "ctarr/crop.hpp"
#include "ctarr/error.hpp"
#include "ctarr/io.hpp"
#include "ctarr/record.hpp"

#include <algorithm>
#include <filesystem>

namespace ctarr {

namespace fs = std::filesystem;

UncropResult run_uncrop(const UncropRequest& request) {
  const CropRecord rec = parse_crop_record(request.record, read_text_file(request.record));
  const fs::path folder = fs::path(request.record).parent_path();
  UncropResult result;
  result.output = request.output;
  // 1. which crops: given, or the record's (its label crops with --labels when it has them)
  std::vector<std::pair<IndexBox, std::string>> boxes;
  bool label_crops = false;
  if (request.crops.empty()) {
    const bool has_labels =
        std::any_of(rec.boxes.begin(), rec.boxes.end(), [](const CropRecordBox& b) { return !b.label_file.empty(); });
    label_crops = has_labels && request.labels.value_or(false);
    for (std::size_t b = 0; b < rec.boxes.size(); ++b) {
      const std::string& f = label_crops ? rec.boxes[b].label_file : rec.boxes[b].file;
      if (!f.empty()) boxes.emplace_back(rec.written_range(b), (folder / f).string());
    }
  } else {
    std::vector<std::size_t> written;
    for (std::size_t b = 0; b < rec.boxes.size(); ++b)
      if (!rec.boxes[b].file.empty()) written.push_back(b);
    if (request.crops.size() != written.size())
      throw Error(ErrorCode::Usage, "record " + request.record + " has " + std::to_string(written.size()) +
                                        " written box(es); give one crop per box in the record's order (" +
                                        std::to_string(request.crops.size()) + " given)");
    for (std::size_t n = 0; n < written.size(); ++n) {
      boxes.emplace_back(rec.written_range(written[n]), request.crops[n]);
      const std::string& lf = rec.boxes[written[n]].label_file;
      if (!lf.empty() && fs::weakly_canonical(folder / lf) == fs::weakly_canonical(request.crops[n])) label_crops = true;
    }
  }
  if (boxes.empty()) throw Error(ErrorCode::UnreadableInput, "record " + request.record + " lists no crop (its region missed the scan)");
  // 2. read them; labels or image
  std::vector<Scan> crops;
  for (const auto& [range, path] : boxes) {
    crops.push_back(read_scan(path));
    result.crops.push_back(path);
  }
  const PixelType type = crops.front().info.stored_type;
  const bool integer = type != PixelType::Float32 && type != PixelType::Float64;
  result.labels = request.labels.value_or(label_crops || (integer && type != rec.scan_info.stored_type));
  result.fill = request.fill.value_or(result.labels ? 0.0f : rec.options.pad_value.value_or(0.0f));
  // 3. paste every box onto the input grid
  Image<float> canvas(rec.input_grid, result.fill);
  for (std::size_t n = 0; n < crops.size(); ++n) {
    try {
      uncrop_into(crops[n].image, boxes[n].first, result.labels ? UncropInterpolation::Nearest : UncropInterpolation::Linear,
                  canvas);
    } catch (const Error& e) {
      throw Error(e.code(), boxes[n].second + ": " + e.what() + " (record " + request.record + ")");
    }
  }
  write_image(canvas, request.output, type);
  return result;
}

}  // namespace ctarr
