// libFuzzer helpers: the library promises to throw ctarr::Error and nothing else, so a harness catches exactly
// that; any other exception escapes and libFuzzer reports it as a finding, as it does crashes and sanitizer errors.
#pragma once

#include "ctarr/error.hpp"

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

namespace ctarr::fuzz {

// The path-based parsers read files: write the input to a per-process file with the extension they dispatch on.
inline std::string write_input(const std::uint8_t* data, std::size_t size, const std::string& extension) {
  const char* dir = ::getenv("TMPDIR");
  const std::string path = std::string(dir ? dir : "/tmp") + "/ctarr-fuzz-" + std::to_string(::getpid()) + extension;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

}  // namespace ctarr::fuzz
