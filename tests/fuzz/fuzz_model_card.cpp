// Fuzz target: model cards (models/<name>.json) through read_model_card.
#include "ctarr/network.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = ctarr::fuzz::write_input(data, size, ".json");
  try {
    (void)ctarr::read_model_card(path);
  } catch (const ctarr::Error&) {
  }
  return 0;
}
