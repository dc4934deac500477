// ctarr — Dice-driven refinement of per-axis scale and translation (LibTorch autograd behind this header).
#pragma once

#include "ctarr/landmarks.hpp"

#include <array>
#include <string>
#include <vector>

namespace ctarr {

// How crisp masks are fitted to a mean atlas (Pipeline::fit, build_atlas), as RefineOptions::target_sharpness:
// first slope 1.5 (0 below a mean of 0.25, 1 above 0.75), then slope 3. Against the plain soft mean a crisp scan
// mask swells over the mean's fringe (its Dice gains wherever the target exceeds Dice / 2, ~0.35): measured 2-3 %
// too large a scale on the synthetic scans. A hard 0.5 threshold removes that bias but leaves the descent too few
// gradients (landmark errors up to 5 mm). The steeper second stage, started where the first ended, moves the level
// a crisp mask settles on from ~0.42 towards 0.5 of the mean: with it the head-only and pelvis-only synthetic scans
// came from 2.2 % / 2.1 % to 1.9 % / 1.2 % worst scale error (tests/e2e/known_transform_test.cpp).
inline constexpr std::array<double, 2> kFitSharpness = {1.5, 3.0};

struct RefineOptions {
  double step = 0.05;              // initial gradient step
  double min_improvement = 0.005;  // halve the step whenever the loss falls by less than this
  int max_halvings = 4;            // stop at the fourth halving
  int max_iterations = 300;        // safety net
  int polish_iterations = 20;      // then downhill-only steps from the best point (0: the paper's rule alone)
  double working_spacing_mm = 6.0; // scan masks are pooled to this spacing for the fit (the atlas to half of it)
  std::string device = "cpu";      // resolved device string ("cpu", "cuda:0")
  // The atlas as the descent sees it, one stage per entry: t = clamp(0.5 + s (a - 0.5), 0, 1) for each atlas mean
  // mask a. s = 1 is the plain mean; a larger s is steeper about the 0.5 level. Each stage starts where the last
  // ended, with the full step. Crisp scan masks need s > 1: see kFitSharpness.
  std::vector<double> target_sharpness = {1.0};
  // On the CPU the Dice and its gradient come from one fused pass over the scan voxels (all cores); true uses
  // LibTorch's grid_sample and autograd instead, as on CUDA (tests compare the two; ~6x slower on the CPU).
  bool reference_autograd = false;
};

// The refined fit of one set of masks (frame From) to another (frame To):
// x_to = diag(scale) * rotation * (x_from - pivot_from) + pivot_to + translation.
template <class From, class To>
struct RefineResultOf {
  Eigen::Matrix3d rotation = Eigen::Matrix3d::Identity();
  Eigen::Vector3d scale = Eigen::Vector3d::Ones();
  Eigen::Vector3d translation_mm = Eigen::Vector3d::Zero();
  Eigen::Vector3d pivot_from_mm = Eigen::Vector3d::Zero();
  Eigen::Vector3d pivot_to_mm = Eigen::Vector3d::Zero();
  double dice = 0.0;          // weighted mean soft Dice over the classes seen against the plain mean of `to`, after
  double initial_dice = 0.0;  // same, before
  int iterations = 0;
  Affine<From, To> transform() const;
};
using RefineResult = RefineResultOf<Scanner, Atlas>;  // a scan fitted to the atlas

// Fits the masks `from` (a scan's) to the masks `to` (the atlas's mean masks): kNumClasses channels each. Starts at
// `init` (its isotropic scale on every axis). Instantiated for Scanner -> Atlas, Scanner -> Scanner, Atlas -> Atlas.
template <class From, class To>
RefineResultOf<From, To> refine_transform(const MultiChannelImage<From>& from, const MultiChannelImage<To>& to,
                                          const InitialFitOf<From, To>& init, const RefineOptions& options = {});

// Weighted mean soft Dice of `from` against `to` under `transform`, computed as refine_transform computes it (`from`
// pooled to options.working_spacing_mm, `to` to half of it, Dice over the field of view of `from`), against `to`
// sharpened as the last of options.target_sharpness (default: the plain mean, which is what RefineResultOf::dice
// reports), over the classes with a weight > 0 (weights are normalised). Throws FitFailed when no weight is positive.
template <class From, class To>
double soft_dice(const MultiChannelImage<From>& from, const MultiChannelImage<To>& to,
                 const Affine<From, To>& transform, const std::array<double, kNumClasses>& weights,
                 const RefineOptions& options = {});

}  // namespace ctarr
