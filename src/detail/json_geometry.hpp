// ctarr — points, index triples, matrices, affines and grids as JSON, and back, for every file ctarr writes and
// reads (crop records, summaries, atlas manifests, region files, region provenance). One place, so that a grid is
// written the same way everywhere and a reader is as strict everywhere: exact types, finite numbers, bounded
// indices (a float where an index belongs, or one beyond 2^40, is malformed, not truncated).
#pragma once

#include "ctarr/geometry.hpp"
#include "ctarr/image.hpp"

#include <nlohmann/json.hpp>

#include <limits>
#include <string>

namespace ctarr::detail {

// ---- writers --------------------------------------------------------------------------------------------------

nlohmann::json vec3_json(const Eigen::Vector3d& v);
nlohmann::json index3_json(const Index3& i);
nlohmann::json mat3_json(const Eigen::Matrix3d& m);  // 3 rows
nlohmann::json mat4_json(const Eigen::Affine3d& a);  // 4 rows: the homogeneous matrix
// {"size", "origin_mm", "spacing_mm", "direction", "frame"}: origin_mm is the world position of voxel (0,0,0)'s
// centre; direction's columns are the index axes in world mm. `frame` names the world (e.g. "scanner (LPS mm)").
template <class Frame>
nlohmann::json grid_json(const Grid<Frame>& g, const std::string& frame) {
  return {{"size", index3_json(g.size)},
          {"origin_mm", vec3_json(g.origin)},
          {"spacing_mm", vec3_json(g.spacing)},
          {"direction", mat3_json(g.direction)},
          {"frame", frame}};
}

// ---- strict readers: throw std::invalid_argument naming `what` and the offending JSON ---------------------------

// An array of 3 finite numbers, each |x| <= max_abs.
Eigen::Vector3d read_vec3(const nlohmann::json& j, const std::string& what,
                          double max_abs = std::numeric_limits<double>::max());
// An array of 3 integers, each |i| <= 2^40.
Index3 read_index3(const nlohmann::json& j, const std::string& what);
// 3 rows of 3 finite numbers.
Eigen::Matrix3d read_mat3(const nlohmann::json& j, const std::string& what);

// The time now, UTC, ISO 8601 to the second ("2026-12-06T22:49:13Z"): the created_utc of every written artefact.
std::string utc_now();

}  // namespace ctarr::detail
