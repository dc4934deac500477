// ctarr — reading and writing images (ITK stays behind this header).
#pragma once

#include "ctarr/image.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ctarr {

// Voxel type an image is stored with on disk; crops are written with the input's type so values stay exact.
enum class PixelType { UInt8, Int8, UInt16, Int16, UInt32, Int32, Float32, Float64 };
// The type's name, e.g. "int16", "float32".
const char* to_string(PixelType t) noexcept;
// The type to_string names `name`, or nothing.
std::optional<PixelType> pixel_type_named(const std::string& name) noexcept;

// How a scan's intensities compare with CT in Hounsfield units (checked before any network run).
struct IntensityCheck {
  double body_fraction = 0.0;  // fraction of voxels above kBodyThresholdHu (soft tissue, bone)
  double air_fraction = 0.0;   // fraction of voxels below kAirThresholdHu (air, lungs)
  float min_value = 0.0f, max_value = 0.0f;
  std::string warning;         // "" when the values look like CT in HU
};
constexpr float kBodyThresholdHu = -200.0f;
constexpr float kAirThresholdHu = -500.0f;
constexpr double kMinBodyFraction = 0.01;   // below: "no body in the scan"
constexpr double kMinAirFraction = 0.001;   // below: not CT in HU (MR, PET, CT without its rescale) -> warning

struct ScanInfo {
  std::string path;                   // as given by the user
  std::string format;                 // "nifti", "nrrd", "meta", "dicom"
  PixelType stored_type = PixelType::Float32;  // smallest type holding every voxel exactly (after NIfTI scaling)
  std::vector<std::string> warnings;  // e.g. gantry tilt resampled, uneven slice spacing, missing slice
  std::string series_uid;             // DICOM only: the series chosen
  std::string series_description;     // DICOM only
  int slices_read = 0;                // DICOM only
  // read_scan's check of the voxels as read (check_ct_intensities, non-finite voxels counted as their replacement):
  // require_body and the crop's padding value use it instead of walking the voxels again. A Scan built in memory
  // (or whose voxels were changed) leaves it empty, and the check is computed where it is needed.
  std::optional<IntensityCheck> intensities;
};

// A CT as read: voxel values (HU for CT) as float on the scan's grid, plus how it was read.
struct Scan {
  Image<float> image;
  ScanInfo info;
};

// Reads a 3D scan: a NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) file or a DICOM series
// given as a directory. A scan whose intensities do not look like CT in HU (no air below -500: MR, PET, a CT
// without its rescale) gets a warning in info.warnings (see check_ct_intensities). DICOM: the CT series with the most slices wins (localizers and secondary captures are
// ignored), slices are ordered by position along the slice normal, spacing comes from the positions, and a gantry
// tilt is resampled onto an orthogonal grid with a warning. Origin, spacing and direction are kept exactly.
// Throws UnreadableInput (missing/corrupt/not an image) or UnsupportedGeometry (2D, 4D, bad spacing, shear).
Scan read_scan(const std::string& path);

IntensityCheck check_ct_intensities(const Image<float>& image);
// Throws FitFailed naming `scan.info.path` when fewer than kMinBodyFraction of the voxels are above
// kBodyThresholdHu: an all-air (or empty) scan has no anatomy to find, so no network run is wasted on it.
void require_body(const Scan& scan);

// Reads an integer label map (any integer or float voxel type holding integers). Same geometry checks as
// read_scan. Files only (no DICOM).
Image<std::uint16_t> read_label_map(const std::string& path);
// The label map an image holds (read_label_map's check, for images in memory): throws UnreadableInput naming `what`
// and the first voxel that is not a whole number in 0..65535.
Image<std::uint16_t> label_map_from(const Image<float>& image, const std::string& what);

// Reads a multi-channel image (4D NIfTI, 4th dimension = channel) with a 3D grid.
MultiChannelImage<Scanner> read_multichannel(const std::string& path);

// Writes atomically: a temporary file in the target folder, then rename. The format follows the extension
// (.nii.gz, .nii, .nrrd, .mha). Throws OutputNotWritable naming the path.
void write_image(const Image<float>& image, const std::string& path, PixelType type = PixelType::Float32);
void write_image(const Image<std::uint8_t>& image, const std::string& path);   // labels, stored as uint8
void write_image(const Image<std::uint16_t>& image, const std::string& path);  // labels, stored as uint16
// A 4D image, the channel as 4th dimension (same rules).
void write_multichannel(const MultiChannelImage<Scanner>& image, const std::string& path);

// Atomically writes a text file (temp + rename). Throws OutputNotWritable.
void write_text_file(const std::string& path, const std::string& text);
// Reads a whole text file. Throws UnreadableInput naming the path.
std::string read_text_file(const std::string& path);

// True for paths ending in an image extension ctarr can read (.nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd).
bool has_image_extension(const std::string& path);
// File name without folder and image extension ("a/b/scan.nii.gz" -> "scan").
std::string image_stem(const std::string& path);

// Versions of the image libraries behind this header ("ITK 5.2.1, GDCM 3.0.21"), for the CLI's start-up log.
std::string image_io_versions();

}  // namespace ctarr
