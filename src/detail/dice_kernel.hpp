// ctarr — the fit's soft Dice terms and their gradients in one pass over the scan voxels (CPU; private to refine).
//
// LibTorch's grid_sample + autograd (the path refine.cpp keeps for CUDA) runs on one core for a single volume,
// materialises the sampled atlas and its gradient for every class, and cost ~0.25 s per evaluation on the
// 512 x 512 x 300 benchmark scan. This pass samples, sharpens and accumulates per class without temporaries, skips
// scan voxels whose eight atlas neighbours are all empty, and spreads slices over the worker threads.
#pragma once

#include <Eigen/Dense>

#include <cstdint>
#include <vector>

namespace ctarr::detail {

// Channel-last volume: channel c of voxel (i, j, k) is data[((k * size[1] + j) * size[0] + i) * channels + c].
struct ChannelLastVolume {
  std::int64_t size[3] = {0, 0, 0};  // i, j, k
  int channels = 0;
  std::vector<float> data;
  // Per voxel, the largest value over the channels (lets the pass skip empty neighbourhoods). Filled by
  // fill_channel_max(); empty means "never skip".
  std::vector<float> channel_max;
};

void fill_channel_max(ChannelLastVolume& v);

// Frames, for a scan voxel index p = (i, j, k):
//   y(p)             = scan_index_to_y p + y_offset                      (the fit's frame, mm: L (x_scanner - pivot))
//   x_atlas - O      = diag(scale) y(p) + t                              (mm from the atlas grid origin)
//   q(p)             = atlas_mm_to_index (x_atlas - O)                   (atlas voxel index, continuous)
struct DiceMap {
  Eigen::Matrix3d scan_index_to_y = Eigen::Matrix3d::Identity();
  Eigen::Vector3d y_offset = Eigen::Vector3d::Zero();
  Eigen::Matrix3d atlas_mm_to_index = Eigen::Matrix3d::Identity();  // S_atlas^-1 D_atlas^T
  Eigen::Vector3d scale = Eigen::Vector3d::Ones();
  Eigen::Vector3d t = Eigen::Vector3d::Zero();
};

// Per class c, with a_c the atlas channel sampled trilinearly at q(p) (zero outside the grid, as grid_sample with
// zeros padding and align_corners = true) after sharpening each grid value v to clamp(0.5 + k (v - 0.5), 0, 1),
// and s_c the scan channel:
//   inter[c] = sum_p s_c(p) a_c(q(p)),   mass[c] = sum_p a_c(q(p))
// and, when asked, their derivatives with respect to scale_a and t_a (a = 0, 1, 2).
struct DiceTerms {
  std::vector<double> inter, mass;
  std::vector<Eigen::Vector3d> inter_d_scale, inter_d_t, mass_d_scale, mass_d_t;
};

// scan and atlas must have the same number of channels. Deterministic: the same sums whatever the thread count.
DiceTerms dice_terms(const ChannelLastVolume& scan, const ChannelLastVolume& atlas, const DiceMap& map,
                     double sharpness, bool with_gradient);

}  // namespace ctarr::detail
