// Fuzz target: read_scan on one file whose extension is CTARR_FUZZ_EXTENSION: ".nii" (ctarr's own NIfTI-1 header
// and voxel reader, behind ITK's header parsing), ".mha" (the MetaImage completeness check), ".dcm" (ctarr's DICOM
// header interpretation and series assembly over GDCM). Inputs are capped so declared sizes stay small.
#include "ctarr/io.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 1 << 16) return 0;
  const std::string path = ctarr::fuzz::write_input(data, size, CTARR_FUZZ_EXTENSION);
  try {
    const ctarr::Scan s = ctarr::read_scan(path);
    if (s.image.voxels.size() != static_cast<std::size_t>(s.image.grid.voxels())) __builtin_trap();
  } catch (const ctarr::Error&) {
  }
  return 0;
}
