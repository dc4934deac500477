// ctarr — centre-of-mass landmarks of soft masks, and the orientation search that initialises the fit.
#pragma once

#include "ctarr/classes.hpp"
#include "ctarr/image.hpp"

#include <array>
#include <string>
#include <vector>

namespace ctarr {

template <class Frame>
struct Landmarks {
  std::array<Eigen::Vector3d, kNumClasses> centre_mm{};  // centre of mass, world mm of Frame
  std::array<double, kNumClasses> volume_ml{};           // sum of probabilities x voxel volume
};

// soft_masks: kNumClasses channels (class c in channel c), probabilities in [0, 1]. Voxels below min_probability
// add nothing to a class (0: every voxel counts, as for label fractions and the atlas's averaged masks).
template <class Frame>
Landmarks<Frame> extract_landmarks(const MultiChannelImage<Frame>& soft_masks, float min_probability = 0.0f);

// One candidate orientation tried by the search.
struct OrientationCandidate {
  std::string name;              // e.g. "rot90", "rot180+zflip"
  Eigen::Matrix3d rotation;      // applied to scanner mm before scale and translation
  double rms_error_mm = 0.0;     // weighted RMS landmark error after the best translation (and scale)
};

struct LandmarkOptions {
  double present_fraction = 0.25;  // a class counts as seen when scan volume >= this x atlas volume
  // Network segmentations: a class's landmark (volume, centre) counts only voxels where its probability reaches
  // this. A network unsure of a class spreads a few percent of it over the whole body; summed, that is a phantom
  // organ at the body's centre (measured: 52-95 % of the atlas kidney volume on an abdominal CT whose kidneys the
  // network did not find), which is then "seen" and pulls the orientation search. Label maps are not affected.
  float min_network_probability = 0.5f;
  int min_classes_for_search = 4;  // fewer seen classes: translation only, no orientation search
  double agree_mm = 60.0;          // translation only: classes whose translations disagree by more are left out
  bool search_xy_flips = false;    // also try mirrored x / y (off: a mirrored patient is rare)
  bool fit_scale = true;           // isotropic scale in the landmark fit (only when searching)
  // Translation only: the rotation assumed (a turned network pass, turns.hpp: the orientation it was shown the scan
  // as); rms_error_mm is ignored.
  OrientationCandidate translation_only_orientation{"identity", Eigen::Matrix3d::Identity(), 0.0};
};

// The landmark fit of one set of masks (frame From) to another (frame To):
// x_to = scale * rotation * (x_from - pivot_from) + pivot_to. The pipeline fits a scan to the atlas (InitialFit);
// build_atlas also fits one source's scan to another's and the atlas to itself.
template <class From, class To>
struct InitialFitOf {
  Eigen::Matrix3d rotation = Eigen::Matrix3d::Identity();
  std::string orientation = "identity";
  double scale = 1.0;
  Eigen::Vector3d pivot_from_mm = Eigen::Vector3d::Zero();  // weighted mean of the class centres used, frame From
  Eigen::Vector3d pivot_to_mm = Eigen::Vector3d::Zero();    // the same classes' mean in frame To
  std::array<double, kNumClasses> weights{};  // normalised, sum 1 over classes seen
  std::vector<int> classes_seen;              // 0-based class indices, those the fit uses
  std::vector<int> classes_left_out;          // seen, but their translation disagreed with the others' (translation
                                              // only, LandmarkOptions::agree_mm): weight 0
  bool searched = false;                      // false: too few classes, translation only
  std::vector<OrientationCandidate> candidates;
  Affine<From, To> transform() const;
};
using InitialFit = InitialFitOf<Scanner, Atlas>;  // a scan fitted to the atlas

// Fits `from` (the masks that move: a scan's) to `to` (the reference: the atlas's); a class counts as seen when its
// volume in `from` reaches options.present_fraction of its volume in `to`. Throws FitFailed when no class is seen.
// Instantiated for Scanner -> Atlas, Scanner -> Scanner and Atlas -> Atlas.
template <class From, class To>
InitialFitOf<From, To> initial_fit(const Landmarks<From>& from, const Landmarks<To>& to,
                                   const LandmarkOptions& options = {});

// The 4 in-plane rotations x optional z-flip (and x/y flips if asked), identity first.
std::vector<OrientationCandidate> orientation_candidates(bool xy_flips);

}  // namespace ctarr
