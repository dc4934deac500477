// ctarr — one DICOM file's header as ctarr needs it (series, plane geometry, frames, rescale) and the decoding of
// its frames, through GDCM (or itk::GDCMImageIO where GDCM's headers are not installed). Includes ITK/GDCM
// through its .cpp only; the header itself is plain C++.
#pragma once

#include <array>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

namespace ctarr::detail::bridge {

using Vec3 = std::array<double, 3>;  // LPS millimetres (patient coordinates, as DICOM stores them)

inline double dot(const Vec3& a, const Vec3& b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }
inline Vec3 cross(const Vec3& a, const Vec3& b) {
  return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}
inline Vec3 sub(const Vec3& a, const Vec3& b) { return {a[0] - b[0], a[1] - b[1], a[2] - b[2]}; }
inline Vec3 add_scaled(const Vec3& a, const Vec3& b, double s) {
  return {a[0] + s * b[0], a[1] + s * b[1], a[2] + s * b[2]};
}
inline double norm(const Vec3& a) { return std::sqrt(dot(a, a)); }

inline const char* const kEnhancedUnsupported = "Enhanced (multi-frame) CT is not supported: convert with dcm2niix";

struct DicomFile {
  std::string path;
  std::string transfer_syntax;
  std::string sop_class, sop_instance, modality, image_type, series_uid, series_description;
  int series_number = 0;
  int instance_number = 0;
  unsigned rows = 0, cols = 0, samples_per_pixel = 1;
  bool enhanced = false;
  std::array<double, 6> orientation{};   // row cosine, column cosine
  std::array<double, 2> pixel_spacing{};  // DICOM order: between rows, between columns
  std::vector<Vec3> positions;            // one per frame
  std::vector<std::array<double, 2>> rescale;  // slope, intercept per frame
  std::string problem;                    // non-empty: cannot be placed in a volume (and why)
};

struct Slice {
  const DicomFile* file = nullptr;
  unsigned frame = 0;
  Vec3 position{};
  double depth = 0.0;  // position along the slice normal
  double slope = 1.0, intercept = 0.0;
  std::vector<float> pixels;  // rows * cols, row-major (column index fastest), rescaled
};

// Reads the header of one file; nullopt when it does not pass gdcm_may_read (dicom_guard.hpp), GDCM does not
// recognise it as DICOM, or it holds no image.
std::optional<DicomFile> read_dicom_header(const std::string& path);

// Decodes every frame of `file` that `slices` refer to (slices of that file, in any order), rescaled.
void decode_file(const DicomFile& file, std::vector<Slice*>& slices);

// True when the file passes gdcm_may_read and GDCM parses it as DICOM with an image or at least DICOM identifying
// attributes.
bool probe_dicom(const std::string& path);

}  // namespace ctarr::detail::bridge
