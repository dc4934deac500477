// ctarr — named regions: boxes in atlas millimetres (regions/<name>.json).
#pragma once

#include "ctarr/geometry.hpp"

#include <string>
#include <vector>

namespace ctarr {

struct Region {
  std::string name;
  std::vector<Box<Atlas>> boxes;  // atlas mm, LPS
  double margin_mm = 10.0;        // default margin added on every side when cropping
  std::string provenance_json = "{}";  // how the boxes were made (command, inputs, threshold)
  // The atlas whose millimetres the boxes are in (provenance.atlas_id, as ctarr infer-region writes it); empty when
  // the file does not say (hand-written boxes).
  std::string atlas_id;
  std::string file;  // where it was read from (empty for a region made in memory)
};

// Parses one region file. Throws UnreadableInput naming the file and the problem (missing fields, lower > upper,
// frame other than "atlas").
Region load_region(const std::string& path);
// Every *.json in `dir` (sorted by name).
std::vector<Region> load_regions(const std::string& dir);
// `dir`/<name>.json; throws Usage listing the available names when there is none.
Region find_region(const std::string& dir, const std::string& name);
// A region given as the crop command takes it: a path to a region file (ending in .json and existing), else a name
// looked up in `regions_dir`.
Region resolve_region(const std::string& name_or_path, const std::string& regions_dir);
// Boxes are atlas millimetres of one atlas: a region inferred on another atlas would be silently used in the wrong
// frame. Throws ModelFailure naming the region file and both atlas ids when region.atlas_id is set and differs from
// `atlas_id`; returns false (the caller warns) when the region does not name its atlas, true when they agree.
bool check_region_atlas(const Region& region, const std::string& atlas_id, const std::string& atlas_dir);
// The region file's JSON ("frame": "atlas", boxes as lower/upper corners in atlas mm, margin_mm, provenance).
std::string region_to_json(const Region& region);
// Writes region_to_json atomically. Throws OutputNotWritable naming the path.
void save_region(const Region& region, const std::string& path);

// Boxes that overlap (or touch) are merged into their bounding box until none overlap.
std::vector<Box<Atlas>> merge_overlapping(std::vector<Box<Atlas>> boxes);

}  // namespace ctarr
