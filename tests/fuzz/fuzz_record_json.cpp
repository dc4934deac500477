// Fuzz target: crop records (what uncrop reads back) through parse_crop_record.
#include "ctarr/record.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const ctarr::CropRecord p =
        ctarr::parse_crop_record("fuzz.json", std::string(reinterpret_cast<const char*>(data), size));
    (void)p.input_grid.voxels();
  } catch (const ctarr::Error&) {
  }
  return 0;
}
