// ctarr — the atlas of averaged anatomy masks, and how it is built.
#pragma once

#include "ctarr/landmarks.hpp"

#include <string>
#include <vector>

namespace ctarr {

// atlas/atlas.nii.gz: kNumClasses channels of mean masks in [0, 1] on an identity-direction 3 mm grid in the
// Atlas frame; atlas/atlas.json: frame, shape, spacing, classes, sources, command, licence terms.
struct AtlasModel {
  std::string id;
  MultiChannelImage<Atlas> masks;
  Landmarks<Atlas> landmarks;
  std::string manifest_json;  // atlas.json verbatim
};

// Loads atlas/atlas.nii.gz + atlas/atlas.json from `dir`. Throws ModelFailure naming the file.
AtlasModel load_atlas(const std::string& dir);

struct BuildAtlasOptions {
  double spacing_mm = 3.0;
  double margin_mm = 30.0;       // added around the mean anatomy
  std::string command;           // recorded in the manifest
  std::string licence;           // recorded in the manifest
  std::string device = "cpu";
};

struct AtlasSource {
  std::string path;              // 19-class label map (0 background, 1..19 in classes.hpp order)
  std::string note;              // provenance, recorded in the manifest
};

// The paper's procedure: register each label map to every other one and average those transforms, resample into
// the provisional mean space and average, register each again to that provisional atlas, average voxel-wise.
AtlasModel build_atlas(const std::vector<AtlasSource>& sources, const BuildAtlasOptions& options);

// Writes atlas.nii.gz and atlas.json into `dir` (atomically, file by file).
void save_atlas(const AtlasModel& atlas, const std::string& dir);

}  // namespace ctarr
