// ctarr — what the ITK/GDCM translation units of io share (image_files.cpp, dicom_header.cpp, dicom_series.cpp):
// set-up, error text, component types. Includes ITK headers: never include it from a file that includes Eigen (see
// itk_bridge.hpp).
#pragma once

#include "detail/itk_bridge.hpp"

#include <itkMacro.h>  // itk::ExceptionObject
#include <itkImageIOBase.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

// GDCM is used directly when its headers are on the include path, i.e. when the ITKGDCM module (and with it
// gdcmMSFF/gdcmDICT) is among the ITK components the build links. Otherwise DICOM goes through
// itk::GDCMImageIO only: same rules, but Enhanced CT frames are placed by GDCM's own geometry, the whole file
// is parsed to list a folder, and GDCM's warnings reach std::cerr.
#if __has_include(<gdcmImageReader.h>)
#define CTARR_DIRECT_GDCM 1
#else
#define CTARR_DIRECT_GDCM 0
#endif

namespace ctarr::detail::bridge {

// Registers ITK's IO factories, builds ITK's factory list and silences GDCM's std::cerr tracing, once per process.
// Every entry point of the bridge calls it before it touches ITK or GDCM: that is what makes reads on several threads
// safe (ITK 5.2 sets up its factories lazily and without a lock).
void ensure_setup();

std::string trim(const std::string& s);
// ITK's description without "ITK ERROR:" prefixes, class names and line breaks, at most ~300 characters.
std::string condense(const itk::ExceptionObject& e);
std::string fmt_double(double v, int precision = 3);
// "512x512x300"
std::string size_string(const std::vector<std::uint64_t>& dims);
// The number in `s`, or `fallback` where it holds none.
double parse_double(const std::string& s, double fallback);
// acc *= factor with an overflow check against kMaxVoxels; false when the product exceeds it.
bool checked_multiply(std::int64_t& acc, std::uint64_t factor);

std::optional<ComponentType> from_itk(itk::IOComponentEnum c);
// Converts `count` values of ITK component type `c` at `raw` to float.
void convert_buffer(itk::IOComponentEnum c, const char* raw, std::size_t count, float* out);
// "nifti", "nrrd", "meta", or ITK's class name.
std::string format_of(const itk::ImageIOBase& io);
std::string metadata_string(const itk::ImageIOBase& io, const std::string& key);

}  // namespace ctarr::detail::bridge
