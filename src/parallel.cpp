#include "parallel.hpp"

#include "ctarr/error.hpp"

#include <cstdlib>
#include <string>

namespace ctarr {

int configured_threads() {
  if (const char* env = std::getenv("CTARR_THREADS"); env && *env) {
    char* end = nullptr;
    const long v = std::strtol(env, &end, 10);
    if (env[0] < '0' || env[0] > '9' || *end != '\0' || v < 1 || v > 4096)
      throw Error(ErrorCode::Usage, std::string("CTARR_THREADS='") + env + "' is not a whole number in 1..4096");
    return static_cast<int>(v);
  }
  const unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : static_cast<int>(hc);
}

int worker_threads() {
  static const int n = configured_threads();
  return n;
}

}  // namespace ctarr
