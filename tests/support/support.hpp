// ctarr tests — shared helpers: tiny images built in code, repo and shared-data paths, temporary folders.
#pragma once

#include "ctarr/image.hpp"

#include <optional>
#include <string>

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

// Runs a shell command, returns its exit status; stdout+stderr go to `output` when given.
int run_command(const std::string& command, std::string* output = nullptr);

}  // namespace ctarr::test
