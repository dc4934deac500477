// ctarr — geometry as JSON and back (see json_geometry.hpp).
#include "detail/json_geometry.hpp"

#include "detail/json_text.hpp"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <limits>
#include <stdexcept>

namespace ctarr::detail {

using nlohmann::json;

json vec3_json(const Eigen::Vector3d& v) { return json::array({v.x(), v.y(), v.z()}); }

json index3_json(const Index3& i) { return json::array({i[0], i[1], i[2]}); }

json mat3_json(const Eigen::Matrix3d& m) {
  json rows = json::array();
  for (int r = 0; r < 3; ++r) rows.push_back(json::array({m(r, 0), m(r, 1), m(r, 2)}));
  return rows;
}

json mat4_json(const Eigen::Affine3d& a) {
  json rows = json::array();
  for (int r = 0; r < 4; ++r) rows.push_back(json::array({a(r, 0), a(r, 1), a(r, 2), a(r, 3)}));
  return rows;
}

namespace {

// " within +-1e5" for a power of ten, " within +-<value>" otherwise, "" for no limit.
std::string limit_text(double max_abs) {
  if (!(max_abs < std::numeric_limits<double>::max())) return "";
  const double e = std::round(std::log10(max_abs));
  if (e >= 1.0 && std::abs(std::pow(10.0, e) - max_abs) < 1e-9 * max_abs)
    return " within +-1e" + std::to_string(static_cast<int>(e));
  return " within +-" + json_text(max_abs);
}

}  // namespace

Eigen::Vector3d read_vec3(const json& j, const std::string& what, double max_abs) {
  if (!j.is_array() || j.size() != 3) throw std::invalid_argument(what + ": expected an array of 3 numbers, got " + json_text(j));
  Eigen::Vector3d v;
  for (int a = 0; a < 3; ++a) {
    const json& e = j[static_cast<std::size_t>(a)];
    if (!e.is_number()) throw std::invalid_argument(what + ": expected an array of 3 numbers, got " + json_text(j));
    v[a] = e.get<double>();
    if (!std::isfinite(v[a]) || std::abs(v[a]) > max_abs)
      throw std::invalid_argument(what + ": expected finite numbers" + limit_text(max_abs) + ", got " + json_text(j));
  }
  return v;
}

Index3 read_index3(const json& j, const std::string& what) {
  constexpr std::int64_t kLimit = std::int64_t{1} << 40;
  if (!j.is_array() || j.size() != 3)
    throw std::invalid_argument(what + ": expected an array of 3 integers, got " + json_text(j));
  Index3 i{};
  for (int a = 0; a < 3; ++a) {
    const json& e = j[static_cast<std::size_t>(a)];
    if (!e.is_number_integer() || (e.is_number_unsigned() && e.get<std::uint64_t>() > static_cast<std::uint64_t>(kLimit)) ||
        std::llabs(e.get<std::int64_t>()) > kLimit)
      throw std::invalid_argument(what + ": expected an array of 3 integers (|i| <= 2^40), got " + json_text(j));
    i[static_cast<std::size_t>(a)] = e.get<std::int64_t>();
  }
  return i;
}

Eigen::Matrix3d read_mat3(const json& j, const std::string& what) {
  if (!j.is_array() || j.size() != 3) throw std::invalid_argument(what + ": expected 3 rows of 3 numbers, got " + json_text(j));
  Eigen::Matrix3d m;
  for (int r = 0; r < 3; ++r)
    m.row(r) = read_vec3(j[static_cast<std::size_t>(r)], what + "[" + std::to_string(r) + "]").transpose();
  return m;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace ctarr::detail
