// Fuzz target: the safetensors reader (model weights) and its SHA-256.
#include "detail/safetensors.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = ctarr::fuzz::write_input(data, size, ".safetensors");
  try {
    const ctarr::detail::SafetensorsFile f = ctarr::detail::read_safetensors(path);
    for (const auto& [name, t] : f.tensors)
      if (static_cast<std::size_t>(t.numel()) != t.data.size()) __builtin_trap();  // shape and data must agree
    (void)ctarr::detail::sha256_file_hex(path);
  } catch (const ctarr::Error&) {
  }
  return 0;
}
