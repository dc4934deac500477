#include "support/support.hpp"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <sys/wait.h>

namespace ctarr::test {

namespace fs = std::filesystem;

std::string repo_dir() { return CTARR_REPO_DIR; }

std::optional<std::string> shared_data_dir() {
  if (const char* env = std::getenv("CTARR_SHARED_DATA")) {
    if (fs::is_directory(env)) return std::string(env);
  }
  const fs::path p = fs::path(CTARR_REPO_DIR).parent_path() / "shared" / "data";
  if (fs::is_directory(p)) return p.string();
  return std::nullopt;
}

std::string ctarr_binary() { return CTARR_BINARY; }

TempDir::TempDir() {
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    const fs::path p = fs::temp_directory_path() / ("ctarr-test-" + std::to_string(rd()));
    std::error_code ec;
    if (fs::create_directory(p, ec)) {
      path_ = p.string();
      return;
    }
  }
  throw std::runtime_error("cannot create a temporary folder");
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

Eigen::Matrix3d oblique_direction(double degrees) {
  const double rad = degrees * 3.14159265358979323846 / 180.0;
  return Eigen::AngleAxisd(rad, Eigen::Vector3d(1.0, 2.0, 3.0).normalized()).toRotationMatrix();
}

Image<float> index_ramp(const Index3& size, const Eigen::Matrix3d& direction) {
  Grid<Scanner> g;
  g.size = size;
  g.origin = Eigen::Vector3d(-12.5, 30.0, 7.25);
  g.spacing = Eigen::Vector3d(0.8, 1.1, 2.5);
  g.direction = direction;
  Image<float> img(g);
  for (std::size_t n = 0; n < img.voxels.size(); ++n) img.voxels[n] = static_cast<float>(n);
  return img;
}

int run_command(const std::string& command, std::string* output) {
  const std::string full = command + " 2>&1";
  FILE* pipe = popen(full.c_str(), "r");
  if (!pipe) return -1;
  std::array<char, 4096> buf{};
  std::string out;
  while (std::fgets(buf.data(), static_cast<int>(buf.size()), pipe)) out += buf.data();
  const int status = pclose(pipe);
  if (output) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace ctarr::test
