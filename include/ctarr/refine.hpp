// ctarr — Dice-driven refinement of per-axis scale and translation (LibTorch autograd behind this header).
#pragma once

#include "ctarr/landmarks.hpp"

#include <string>

namespace ctarr {

struct RefineOptions {
  double step = 0.05;              // initial gradient step
  double min_improvement = 0.005;  // halve the step whenever the loss falls by less than this
  int max_halvings = 4;            // stop at the fourth halving
  int max_iterations = 300;        // safety net
  double working_spacing_mm = 6.0; // scan masks are pooled to this spacing for the fit (the atlas to half of it)
  std::string device = "cpu";      // resolved device string ("cpu", "cuda:0")
};

// x_atlas = diag(scale) * rotation * (x_scanner - pivot_scanner) + pivot_atlas + translation
struct RefineResult {
  Eigen::Matrix3d rotation = Eigen::Matrix3d::Identity();
  Eigen::Vector3d scale = Eigen::Vector3d::Ones();
  Eigen::Vector3d translation_mm = Eigen::Vector3d::Zero();
  Eigen::Vector3d pivot_scanner_mm = Eigen::Vector3d::Zero();
  Eigen::Vector3d pivot_atlas_mm = Eigen::Vector3d::Zero();
  double dice = 0.0;          // weighted mean Dice over the classes seen, after the fit
  double initial_dice = 0.0;  // same, before
  int iterations = 0;
  Affine<Scanner, Atlas> scanner_to_atlas() const;
};

// scan_masks and atlas_masks: kNumClasses channels. Starts at `init` (its isotropic scale on every axis).
RefineResult refine_transform(const MultiChannelImage<Scanner>& scan_masks, const MultiChannelImage<Atlas>& atlas_masks,
                              const InitialFit& init, const RefineOptions& options = {});

// Weighted mean soft Dice of the scan against the atlas under `scanner_to_atlas`, computed as refine_transform
// computes it (scan pooled to options.working_spacing_mm, atlas to half of it, Dice over the scan's field of view),
// over the classes with a weight > 0 (weights are normalised). Throws FitFailed when no weight is positive.
double soft_dice(const MultiChannelImage<Scanner>& scan_masks, const MultiChannelImage<Atlas>& atlas_masks,
                 const Affine<Scanner, Atlas>& scanner_to_atlas, const std::array<double, kNumClasses>& weights,
                 const RefineOptions& options = {});

}  // namespace ctarr
