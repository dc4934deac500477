// ctarr — loading and saving the atlas (building it: atlas_build.cpp).
#include "ctarr/atlas.hpp"

#include "ctarr/error.hpp"
#include "ctarr/io.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>

namespace ctarr {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

template <class To, class From>
MultiChannelImage<To> reframe(MultiChannelImage<From>&& in) {
  MultiChannelImage<To> out;
  out.grid.size = in.grid.size;
  out.grid.origin = in.grid.origin;
  out.grid.spacing = in.grid.spacing;
  out.grid.direction = in.grid.direction;
  out.channels = in.channels;
  out.data = std::move(in.data);
  return out;
}

}  // namespace

AtlasModel load_atlas(const std::string& dir) {
  const std::string image_path = (fs::path(dir) / "atlas.nii.gz").string();
  const std::string manifest_path = (fs::path(dir) / "atlas.json").string();
  AtlasModel atlas;
  try {
    atlas.manifest_json = read_text_file(manifest_path);
    atlas.masks = reframe<Atlas>(read_multichannel(image_path));
  } catch (const Error& e) {
    throw Error(ErrorCode::ModelFailure, std::string("cannot load the atlas: ") + e.what());
  }
  try {
    const json j = json::parse(atlas.manifest_json);
    atlas.id = j.at("id").get<std::string>();
    if (j.at("frame").get<std::string>() != "atlas")
      throw Error(ErrorCode::ModelFailure, "atlas manifest " + manifest_path + ": frame must be \"atlas\"");
  } catch (const json::exception& e) {
    throw Error(ErrorCode::ModelFailure, "atlas manifest " + manifest_path + " is malformed: " + e.what());
  }
  if (atlas.masks.channels != kNumClasses)
    throw Error(ErrorCode::ModelFailure, "atlas " + image_path + " has " + std::to_string(atlas.masks.channels) +
                                             " channels; expected " + std::to_string(kNumClasses));
  atlas.landmarks = extract_landmarks(atlas.masks);
  return atlas;
}

void save_atlas(const AtlasModel& atlas, const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  MultiChannelImage<Atlas> copy = atlas.masks;
  write_multichannel(reframe<Scanner>(std::move(copy)), (fs::path(dir) / "atlas.nii.gz").string());
  write_text_file((fs::path(dir) / "atlas.json").string(), atlas.manifest_json);
}

}  // namespace ctarr
