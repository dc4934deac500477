// ctarr — a fraction as text for logs and reports: 0.1234 -> "12.34%".
#pragma once

#include <sstream>
#include <string>

namespace ctarr::detail {

inline std::string fmt_pct(double fraction) {
  std::ostringstream os;
  os.precision(2);
  os << std::fixed << 100.0 * fraction << "%";
  return os.str();
}

}  // namespace ctarr::detail
