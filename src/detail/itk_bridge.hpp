// ctarr — the ITK/GDCM adapter behind io.hpp. Implemented in parts: image_files.cpp (NIfTI, NRRD, MetaImage through
// ITK), nifti_reader.cpp (ctarr's NIfTI-1 voxel reader and header checks), dicom_guard.cpp (the element walker that
// runs before GDCM), dicom_header.cpp (one file's header and frames), dicom_series.cpp (series choice and assembly),
// itk_support.cpp (set-up and error text they share).
//
// This header is plain C++ on purpose: ITK bundles its own Eigen under the same namespace and include guards
// as the system Eigen, so a translation unit that includes ITK headers must not include geometry.hpp,
// image.hpp or io.hpp. Geometry crosses this boundary as std::arrays; io.cpp turns it into ctarr::Grid.
//
// Every function here throws ctarr::Error (error.hpp has no Eigen) and nothing else: ITK and GDCM failures are
// translated into UnreadableInput / UnsupportedGeometry / OutputNotWritable messages that name the path.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace ctarr::detail {

// Voxel component type on disk (ITK's names, with ctarr's spelling).
enum class ComponentType { UInt8, Int8, UInt16, Int16, UInt32, Int32, UInt64, Int64, Float32, Float64 };
const char* to_string(ComponentType t) noexcept;

// world(idx) = origin + D * diag(spacing) * idx, LPS millimetres, exactly as ITK reports it.
struct RawGeometry {
  std::array<std::int64_t, 3> size{1, 1, 1};  // voxels along i, j, k
  std::array<double, 3> origin{0.0, 0.0, 0.0};
  std::array<double, 3> spacing{1.0, 1.0, 1.0};
  std::array<double, 9> direction{1, 0, 0, 0, 1, 0, 0, 0, 1};  // D row-major: D[3*row + col]; column = axis

  std::int64_t voxels() const { return size[0] * size[1] * size[2]; }
};

// An image as read from disk, before any ctarr validation.
struct RawImage {
  RawGeometry geometry;
  int channels = 1;           // > 1 only for multi-channel reads (4th dimension, or vector pixels)
  std::vector<float> voxels;  // channel-major, i fastest: voxels[c * geometry.voxels() + linear(i, j, k)]
  ComponentType stored_type = ComponentType::Float32;  // on-disk type, before NIfTI scl_slope/scl_inter or
                                                       // DICOM rescale; Float32 after a DICOM resampling
  bool rescaled = false;      // NIfTI scaling or DICOM rescale slope/intercept changed the stored values
  std::string format;         // "nifti", "nrrd", "meta", "dicom"
  std::vector<std::string> warnings;
  // DICOM only
  std::string series_uid;
  std::string series_description;
  int slices_read = 0;
};

// Upper bound on voxels (times channels) a file may declare before anything is allocated.
constexpr std::int64_t kMaxVoxels = std::int64_t{1} << 31;

enum class ReadKind {
  Scalar3D,      // a 3D scalar image; a 4D image with one volume is accepted as 3D
  MultiChannel,  // a 4D image whose 4th dimension is the channel (or a 3D image of vector pixels)
};

// Reads an image file through ITK (NIfTI, NRRD, MetaImage). A DICOM file (e.g. one Enhanced CT multi-frame
// file) is handed to read_dicom_files. Throws UnreadableInput or UnsupportedGeometry naming `path`.
RawImage read_image_file(const std::string& path, ReadKind kind);

// True when GDCM recognises the file as DICOM (reads the header only).
bool is_dicom_file(const std::string& path);

// Reads the best CT series in a folder (searched recursively): see io.hpp read_scan for the rules.
RawImage read_dicom_folder(const std::string& folder);
// Same rules on an explicit list of files; `what` names the input in messages.
RawImage read_dicom_files(const std::vector<std::string>& files, const std::string& what);

// Writes one image with ITK; the format follows the extension of `path` (.nii.gz, .nii, .nrrd, .mha).
// `data` holds geometry.voxels() * channels values of `type`, channel-major; channels > 1 writes a 4D image.
// Not atomic by itself (io.cpp writes to a temporary name and renames). Throws OutputNotWritable.
void write_image_file(const std::string& path, const RawGeometry& geometry, int channels, ComponentType type,
                      const void* data);

// "ITK 5.2.1, GDCM 3.0.21" for the CLI's start-up log.
std::string itk_version();

}  // namespace ctarr::detail
