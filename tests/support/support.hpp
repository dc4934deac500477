// ctarr tests — shared helpers: tiny images built in code, repo and shared-data paths, temporary folders.
#pragma once

#include "ctarr/classes.hpp"
#include "ctarr/error.hpp"
#include "ctarr/image.hpp"

#include <array>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace ctarr::test {

// Root of the source tree (models/, atlas/, regions/ live there).
std::string repo_dir();
// ../shared/data beside the repo, or nullopt (tests then GTEST_SKIP with "../shared/data not found").
std::optional<std::string> shared_data_dir();
// Path of the built ctarr executable.
std::string ctarr_binary();

// A fresh empty folder under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Rotation about an oblique axis by `degrees`: a direction matrix that is orthonormal but not axis-aligned.
Eigen::Matrix3d oblique_direction(double degrees);
// Image whose value is the voxel's linear index; origin (-12.5, 30, 7.25), spacing (0.8, 1.1, 2.5).
Image<float> index_ramp(const Index3& size, const Eigen::Matrix3d& direction);

// out(i, j, k) = in(n0 - 1 - j, i, k): the voxel array turned 90° in its i-j plane; the header (origin, spacing,
// direction) is kept, so it now lies about the anatomy's orientation.
template <class T>
Image<T> turned(const Image<T>& in) {
  Grid<Scanner> g = in.grid;
  g.size = Index3{{in.grid.size[1], in.grid.size[0], in.grid.size[2]}};
  Image<T> out(g);
  for (std::int64_t k = 0; k < g.size[2]; ++k)
    for (std::int64_t j = 0; j < g.size[1]; ++j)
      for (std::int64_t i = 0; i < g.size[0]; ++i) out.at(Index3{{i, j, k}}) = in.at(Index3{{in.grid.size[0] - 1 - j, i, k}});
  return out;
}

// Runs f and expects it to throw ctarr::Error with `code` and a message holding every one of `texts`; a test failure
// (not an abort) otherwise.
void expect_error(const std::function<void()>& f, ErrorCode code, const std::vector<std::string>& texts);

// Creates the file (and its folders) holding "x": a directory entry for listing tests.
void touch(const std::string& path);

// Runs a shell command, returns its exit status; stdout+stderr go to `output` when given.
int run_command(const std::string& command, std::string* output = nullptr);

// ---- Synthetic 19-class "body" phantom (landmarks, refine) -------------------------------------------------------
// One soft ellipsoid per class, placed roughly anatomically in "body" millimetres (LPS: +x is the patient's left,
// +y posterior, +z superior; feet near z = 0, skull top near z = 595). The class order is the phantom's own (see
// support.cpp), not necessarily the paper's Table 1 order; only the count kNumClasses matters to the fit.
struct BodyPart {
  int label_index;             // channel 0..kNumClasses-1
  Eigen::Vector3d centre_mm;   // body mm
  Eigen::Vector3d radii_mm;    // semi-axes along body x, y, z
};
const std::array<BodyPart, kNumClasses>& body_parts();
// A 3 mm-ish Atlas grid covering the whole body with a margin (72 x 48 x 216 voxels at 3 mm).
Grid<Atlas> body_atlas_grid(double spacing_mm = 3.0);
// Soft masks (kNumClasses channels) of `parts` on `grid`: the voxel at world x gets the ellipsoids' value at
// world_to_body * x. Soft edge: logistic in the (approximate) signed distance, width edge_mm.
template <class Frame>
MultiChannelImage<Frame> render_parts(const Grid<Frame>& grid, const std::vector<BodyPart>& parts,
                                      const Eigen::Affine3d& world_to_body = Eigen::Affine3d::Identity(),
                                      double edge_mm = 1.5);
// render_parts with the whole body.
template <class Frame>
MultiChannelImage<Frame> render_body(const Grid<Frame>& grid,
                                     const Eigen::Affine3d& world_to_body = Eigen::Affine3d::Identity(),
                                     double edge_mm = 1.5);
// A grid with the given direction and spacing whose voxels cover the pre-image of the body box [lower, upper]
// (body mm) under body = scan_to_body * x.
Grid<Scanner> grid_covering(const Eigen::Affine3d& scan_to_body, const Eigen::Vector3d& lower_mm,
                            const Eigen::Vector3d& upper_mm, double spacing_mm,
                            const Eigen::Matrix3d& direction = Eigen::Matrix3d::Identity());

}  // namespace ctarr::test
