// ctarr — cases of a batch: plain inputs or a Medical Segmentation Decathlon / nnU-Net dataset folder, their
// segmentations for the fit, and how much of a label map a set of boxes keeps.
#pragma once

#include "ctarr/geometry.hpp"
#include "ctarr/image.hpp"

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace ctarr {

// One case: the images cropped with the same boxes (nnU-Net channels), its label map, its segmentation.
struct DatasetCase {
  std::string id;                        // "case_001" (image name without channel suffix and extension)
  std::string subset;                    // dataset mode: "imagesTr", "imagesTs", ...; plain inputs: ""
  std::vector<std::string> images;       // channel files in channel order (first: the one the fit uses)
  std::vector<std::string> channel_suffixes;  // "_0000", "_0001" ... ("" for MSD single-file cases)
  std::optional<std::string> label;      // labelsTr/<id><ext>, when present
  std::optional<std::string> seg;        // segmentation for the fit (--seg / --seg-dir), when given
};

// Label folder of an image subset: imagesTr -> labelsTr, imagesTs -> labelsTs.
std::string label_subset(const std::string& image_subset);

// The cases of a dataset folder: every images*/ sub-folder (imagesTr, imagesTs, ...), one case per image name
// after removing a 4-digit channel suffix (_0000); labels from the matching labels*/ folder with the case's name.
// Hidden files (MSD's "._x.nii.gz" macOS droppings) are ignored. Sorted by subset, then id. Throws UnreadableInput
// when the folder has no images*/ sub-folder or no image in them.
std::vector<DatasetCase> find_dataset_cases(const std::string& dir);

// The image files of `dir` (and, with allow_folders, its sub-folders: DICOM series, folders of TotalSegmentator
// masks) by id, the image_stem (a folder: its name); hidden entries are skipped, as in find_dataset_cases. Two
// entries with one id ("a.nii.gz" and "a.nrrd") are a Usage error naming both; a missing or unreadable folder is
// UnreadableInput.
std::map<std::string, std::string> image_entries_by_id(const std::string& dir, bool allow_folders);

// One case per input path (id: its image_stem), sorted by path.
std::vector<DatasetCase> cases_from_inputs(const std::vector<std::string>& inputs);

// The segmentation of a case in `seg_dir`: <id><ext>, <image stem><ext> (any readable extension) or a folder
// <id>/ of TotalSegmentator masks; nullopt when there is none.
std::optional<std::string> find_segmentation(const std::string& seg_dir, const DatasetCase& c);

// ---- labels kept by boxes ---------------------------------------------------------------------------------------

// Faces of the input grid's index box, in this order: x-, x+, y-, y+, z- and z+ (index axes i, j, k).
constexpr std::array<const char*, 6> kFaceNames{"x-", "x+", "y-", "y+", "z-", "z+"};

struct LabelKept {
  int value = 0;
  std::int64_t voxels = 0;  // in the whole label map
  std::int64_t kept = 0;    // inside at least one box
  // Lost voxels beyond each face of the boxes' bounding box (a voxel beyond two faces counts at both); voxels
  // inside the bounding box but in none of the boxes (between boxes) are `lost_between`.
  std::array<std::int64_t, 6> lost_beyond{};
  std::int64_t lost_between = 0;
  // Kept voxels lying on a box face that is inside the scan (not on the scan border): the label touches the crop
  // border there and is probably cut.
  std::array<std::int64_t, 6> touching{};
  double fraction_kept() const { return voxels ? static_cast<double>(kept) / static_cast<double>(voxels) : 1.0; }
};

// Per label value > 0 (ascending): how many voxels the boxes keep. `boxes` are index ranges in the label map's
// grid (clipped to it or not).
std::vector<LabelKept> labels_kept(const Image<float>& labels, const std::vector<IndexBox>& boxes);

// ---- dataset.json -----------------------------------------------------------------------------------------------

// One output case listed in dataset.json.
struct DatasetEntry {
  std::string subset;                 // "imagesTr", "imagesTs"
  std::string id;                     // output case id
  std::optional<std::string> label;   // "./labelsTr/<id><ext>" when written
};

// The input's dataset.json (text, may be "") rewritten for the cropped dataset: "training" / "test" lists,
// numTraining / numTest and file_ending follow `entries`; every other field is kept. `path` names it in errors.
std::string updated_dataset_json(const std::string& path, const std::string& text, const std::vector<DatasetEntry>& entries,
                                 const std::string& extension, const std::string& note);

}  // namespace ctarr
