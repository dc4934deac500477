// Fuzz target: region files (regions/<name>.json) through load_region.
#include "ctarr/regions.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = ctarr::fuzz::write_input(data, size, ".json");
  try {
    const ctarr::Region r = ctarr::load_region(path);
    (void)ctarr::region_to_json(r);       // what was accepted must serialise
    (void)ctarr::merge_overlapping(r.boxes);
  } catch (const ctarr::Error&) {
  }
  return 0;
}
