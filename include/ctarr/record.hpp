// ctarr — the JSON record written beside every crop: enough to find, check and undo it exactly.
#pragma once

#include "ctarr/crop.hpp"
#include "ctarr/io.hpp"
#include "ctarr/landmarks.hpp"
#include "ctarr/preprocess.hpp"
#include "ctarr/refine.hpp"

#include <optional>
#include <string>
#include <vector>

namespace ctarr {

struct CropRecordBox {
  MappedBox box;
  std::string file;             // crop written for this box ("" when it missed the scan)
  Grid<Scanner> output_grid;    // geometry of the written crop
};

struct CropRecord {
  std::string input;
  ScanInfo scan_info;
  Grid<Scanner> input_grid;
  Reorientation reorientation;
  std::string region;
  std::string region_provenance_json = "{}";
  CropOptions options;
  std::vector<CropRecordBox> boxes;
  InitialFit initial;
  RefineResult refined;
  std::string segmentation_source;
  std::string model_id;
  std::string atlas_id;
  std::vector<std::string> warnings;
};

// The record as JSON: geometry in LPS mm, index boxes [start, end) in the input grid, transforms with their
// frames (scanner -> atlas and back, 4x4, mm), fit, options, provenance, warnings.
std::string crop_record_json(const CropRecord& record);

// What uncrop needs back from a record: the input grid and, per box, the index range and file.
struct ParsedCropRecord {
  std::string input;
  Grid<Scanner> input_grid;
  std::vector<std::pair<IndexBox, std::string>> boxes;  // range actually written ([start, end) in the input grid)
};
// `text` is the record's contents; `path` names it in errors.
ParsedCropRecord parse_crop_record(const std::string& path, const std::string& text);

}  // namespace ctarr
