// ctarr — loading and saving the atlas (building it: atlas_build.cpp).
#include "ctarr/atlas.hpp"

#include "ctarr/error.hpp"
#include "ctarr/io.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>

namespace ctarr {

namespace fs = std::filesystem;
using nlohmann::json;

AtlasModel load_atlas(const std::string& dir) {
  const std::string image_path = (fs::path(dir) / "atlas.nii.gz").string();
  const std::string manifest_path = (fs::path(dir) / "atlas.json").string();
  AtlasModel atlas;
  try {
    atlas.manifest_json = read_text_file(manifest_path);
    atlas.masks = with_frame<Atlas>(read_multichannel(image_path));  // the file holds the atlas
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
  write_multichannel(with_frame<Scanner>(atlas.masks), (fs::path(dir) / "atlas.nii.gz").string());  // files are frame-less
  write_text_file((fs::path(dir) / "atlas.json").string(), atlas.manifest_json);
}

}  // namespace ctarr
