#include "support/support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sys/wait.h>

namespace ctarr::test {

void touch(const std::string& path) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << "x";
}

void expect_error(const std::function<void()>& f, ErrorCode code, const std::vector<std::string>& texts) {
  try {
    f();
    ADD_FAILURE() << "no ctarr::Error thrown (expected " << to_string(code) << ")";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const std::string& t : texts)
      EXPECT_NE(std::string(e.what()).find(t), std::string::npos) << "message: " << e.what() << "\nexpected: " << t;
  }
}

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

// ---- Synthetic body phantom ------------------------------------------------------------------------------------

const std::array<BodyPart, kNumClasses>& body_parts() {
  using V = Eigen::Vector3d;
  static const std::array<BodyPart, kNumClasses> parts{{
      {0, V(0, 0, 560), V(55, 60, 35)},       // skull (top of the head)
      {1, V(0, -35, 505), V(40, 20, 20)},     // face / mandible, anterior
      {2, V(0, 20, 470), V(12, 12, 40)},      // cervical spine
      {3, V(0, 35, 340), V(15, 15, 85)},      // thoracic spine, posterior
      {4, V(0, 30, 200), V(18, 18, 50)},      // lumbar spine
      {5, V(0, 40, 120), V(30, 15, 30)},      // sacrum
      {6, V(55, 5, 360), V(40, 45, 70)},      // left lung (+x: patient's left)
      {7, V(-55, 5, 360), V(42, 45, 65)},     // right lung
      {8, V(15, -20, 320), V(40, 35, 40)},    // heart: anterior, slightly left
      {9, V(-45, -5, 255), V(50, 45, 40)},    // liver: patient's right (-x)
      {10, V(60, 20, 260), V(20, 20, 30)},    // spleen: left, posterior
      {11, V(35, -25, 245), V(30, 20, 30)},   // stomach: left, anterior
      {12, V(50, 30, 205), V(18, 15, 35)},    // left kidney
      {13, V(-50, 30, 195), V(18, 15, 35)},   // right kidney (lower, under the liver)
      {14, V(0, -30, 90), V(35, 25, 25)},     // urinary bladder, anterior
      {15, V(70, 5, 110), V(20, 40, 40)},     // left hip bone
      {16, V(-70, 5, 110), V(20, 40, 40)},    // right hip bone
      {17, V(70, 0, 40), V(15, 15, 40)},      // left femur
      {18, V(-70, 0, 40), V(15, 15, 40)},     // right femur
  }};
  return parts;
}

Grid<Atlas> body_atlas_grid(double spacing_mm) {
  const Eigen::Vector3d lower(-106.5, -70.5, -30.0), upper(106.5, 70.5, 615.0);
  Grid<Atlas> g;
  g.spacing = Eigen::Vector3d::Constant(spacing_mm);
  g.origin = lower;
  for (int a = 0; a < 3; ++a)
    g.size[a] = static_cast<std::int64_t>(std::floor((upper[a] - lower[a]) / spacing_mm + 1e-9)) + 1;
  return g;
}

template <class Frame>
MultiChannelImage<Frame> render_parts(const Grid<Frame>& grid, const std::vector<BodyPart>& parts,
                                      const Eigen::Affine3d& world_to_body, double edge_mm) {
  MultiChannelImage<Frame> out(grid, kNumClasses, 0.0f);
  // body(idx) = lin * idx + off
  const Eigen::Matrix3d lin = world_to_body.linear() * grid.index_to_world_linear();
  const Eigen::Vector3d off = world_to_body * grid.origin;
  const Eigen::Matrix3d lin_inv = lin.inverse();
  for (const BodyPart& part : parts) {
    const Eigen::Vector3d reach = part.radii_mm + Eigen::Vector3d::Constant(8.0 * edge_mm);
    Eigen::Vector3d lo = Eigen::Vector3d::Constant(1e300), hi = Eigen::Vector3d::Constant(-1e300);
    for (int c = 0; c < 8; ++c) {
      Eigen::Vector3d corner;
      for (int a = 0; a < 3; ++a) corner[a] = part.centre_mm[a] + (((c >> a) & 1) ? reach[a] : -reach[a]);
      const Eigen::Vector3d ci = lin_inv * (corner - off);
      lo = lo.cwiseMin(ci);
      hi = hi.cwiseMax(ci);
    }
    std::int64_t start[3], end[3];
    for (int a = 0; a < 3; ++a) {
      start[a] = std::max<std::int64_t>(0, static_cast<std::int64_t>(std::floor(lo[a])));
      end[a] = std::min<std::int64_t>(grid.size[a], static_cast<std::int64_t>(std::ceil(hi[a])) + 1);
    }
    float* ch = out.channel(part.label_index);
    const Eigen::Vector3d inv_r = part.radii_mm.cwiseInverse();
    for (std::int64_t k = start[2]; k < end[2]; ++k)
      for (std::int64_t j = start[1]; j < end[1]; ++j)
        for (std::int64_t i = start[0]; i < end[0]; ++i) {
          const Eigen::Vector3d v = lin * Eigen::Vector3d(static_cast<double>(i), static_cast<double>(j),
                                                          static_cast<double>(k)) + off - part.centre_mm;
          const double q = v.cwiseProduct(inv_r).norm();
          double p = 1.0;
          if (q > 1e-9) {
            const double d = v.norm() * (1.0 - 1.0 / q);  // ~ signed distance to the surface along the ray
            p = 1.0 / (1.0 + std::exp(d / edge_mm));
          }
          float& dst = ch[grid.linear(Index3{{i, j, k}})];
          dst = std::max(dst, static_cast<float>(p));
        }
  }
  return out;
}

template <class Frame>
MultiChannelImage<Frame> render_body(const Grid<Frame>& grid, const Eigen::Affine3d& world_to_body, double edge_mm) {
  const auto& parts = body_parts();
  return render_parts(grid, std::vector<BodyPart>(parts.begin(), parts.end()), world_to_body, edge_mm);
}

template MultiChannelImage<Scanner> render_parts(const Grid<Scanner>&, const std::vector<BodyPart>&,
                                                 const Eigen::Affine3d&, double);
template MultiChannelImage<Atlas> render_parts(const Grid<Atlas>&, const std::vector<BodyPart>&,
                                               const Eigen::Affine3d&, double);
template MultiChannelImage<Scanner> render_body(const Grid<Scanner>&, const Eigen::Affine3d&, double);
template MultiChannelImage<Atlas> render_body(const Grid<Atlas>&, const Eigen::Affine3d&, double);

Grid<Scanner> grid_covering(const Eigen::Affine3d& scan_to_body, const Eigen::Vector3d& lower_mm,
                            const Eigen::Vector3d& upper_mm, double spacing_mm, const Eigen::Matrix3d& direction) {
  const Eigen::Affine3d body_to_scan = scan_to_body.inverse();
  Eigen::Vector3d lo = Eigen::Vector3d::Constant(1e300), hi = Eigen::Vector3d::Constant(-1e300);
  for (int c = 0; c < 8; ++c) {
    Eigen::Vector3d corner;
    for (int a = 0; a < 3; ++a) corner[a] = ((c >> a) & 1) ? upper_mm[a] : lower_mm[a];
    const Eigen::Vector3d y = direction.transpose() * (body_to_scan * corner);  // grid-aligned coordinates
    lo = lo.cwiseMin(y);
    hi = hi.cwiseMax(y);
  }
  Grid<Scanner> g;
  g.direction = direction;
  g.spacing = Eigen::Vector3d::Constant(spacing_mm);
  g.origin = direction * lo;
  for (int a = 0; a < 3; ++a)
    g.size[a] = static_cast<std::int64_t>(std::floor((hi[a] - lo[a]) / spacing_mm + 1e-9)) + 1;
  return g;
}

}  // namespace ctarr::test
