#include "parallel.hpp"

#include <cstdlib>
#include <string>

namespace ctarr {

int worker_threads() {
  static const int n = [] {
    if (const char* env = std::getenv("CTARR_THREADS")) {
      const int v = std::atoi(env);
      if (v > 0) return v;
    }
    const unsigned hc = std::thread::hardware_concurrency();
    return hc == 0 ? 1 : static_cast<int>(hc);
  }();
  return n;
}

}  // namespace ctarr
