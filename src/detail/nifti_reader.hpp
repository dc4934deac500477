// ctarr — ctarr's own NIfTI-1 reading beside ITK's: the voxels of a single-file NIfTI-1 (niftilib zero-fills a
// truncated file and turns NaN into 0), the header checks ITK's reader would abort on, and sforms that are
// orthonormal only to a few digits. Plain C++ and zlib: no ITK here.
#pragma once

#include "detail/itk_bridge.hpp"

#include <optional>
#include <string>

namespace ctarr::detail::bridge {

// The ComponentType of a NIfTI-1 datatype code (nifti1.h), or nullopt for codes ctarr does not read.
std::optional<ComponentType> from_nifti_datatype(int code);

// Reads the voxels of a single-file NIfTI-1 (.nii, .nii.gz) into out.voxels (scl_slope/scl_inter applied), checking
// the raw pixdim of the spatial axes. Returns false (nothing done) for files it does not handle: NIfTI-2,
// .hdr/.img pairs, vector or complex voxels; ITK reads those. Throws UnreadableInput / UnsupportedGeometry naming
// `path` for a truncated file, an Analyze header or an unusable pixdim.
bool read_nifti_voxels(const std::string& path, std::size_t expected_values, RawImage& out);

// Throws UnsupportedGeometry when the header's pixdim, qform or sform hold NaN or infinite values (ITK's reader
// aborts the process on them). Returns quietly for anything else, including files that are not NIfTI-1.
void check_nifti_header_finite(const std::string& path);

// A single-file NIfTI-1 whose sform is orthonormal only to within 1e-3 (ITK 5.2 refuses it), read with its direction
// orthonormalised and a warning saying so; nullopt where this does not apply.
std::optional<RawImage> read_nifti_nearly_orthonormal_sform(const std::string& path, ReadKind kind);

}  // namespace ctarr::detail::bridge
