// ctarr — centre-of-mass landmarks of soft masks and the landmark-based initial fit (orientation search).
#include "ctarr/landmarks.hpp"

#include "ctarr/error.hpp"
#include "ctarr/log.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <sstream>

namespace ctarr {

template <class Frame>
Landmarks<Frame> extract_landmarks(const MultiChannelImage<Frame>& soft_masks, float min_probability) {
  const Grid<Frame>& g = soft_masks.grid;
  validate_grid(g, "soft masks");
  if (soft_masks.channels != kNumClasses)
    throw Error(ErrorCode::Internal, "extract_landmarks: soft masks have " + std::to_string(soft_masks.channels) +
                                         " channels, expected " + std::to_string(kNumClasses) + " (one per class)");
  const auto voxels = static_cast<std::size_t>(g.voxels());
  if (soft_masks.data.size() != voxels * static_cast<std::size_t>(kNumClasses))
    throw Error(ErrorCode::Internal, "extract_landmarks: soft-mask buffer holds " +
                                         std::to_string(soft_masks.data.size()) + " values, expected " +
                                         std::to_string(voxels * static_cast<std::size_t>(kNumClasses)));

  const double voxel_ml = g.spacing.prod() / 1000.0;
  const std::int64_t ni = g.size[0], nj = g.size[1], nk = g.size[2];
  Landmarks<Frame> out;
  for (int c = 0; c < kNumClasses; ++c) {
    const float* p = soft_masks.channel(c);
    // Sums in index space (exact: the index -> world map is affine), accumulated per row for speed.
    double sum = 0.0, si = 0.0, sj = 0.0, sk = 0.0;
    std::size_t n = 0;
    for (std::int64_t k = 0; k < nk; ++k) {
      double slice_sum = 0.0, slice_si = 0.0, slice_sj = 0.0;
      for (std::int64_t j = 0; j < nj; ++j) {
        double row_sum = 0.0, row_si = 0.0;
        for (std::int64_t i = 0; i < ni; ++i, ++n) {
          const float v = p[n];
          if (v > 0.0f && v >= min_probability) {  // also skips NaN
            row_sum += static_cast<double>(v);
            row_si += static_cast<double>(v) * static_cast<double>(i);
          }
        }
        slice_sum += row_sum;
        slice_si += row_si;
        slice_sj += row_sum * static_cast<double>(j);
      }
      sum += slice_sum;
      si += slice_si;
      sj += slice_sj;
      sk += slice_sum * static_cast<double>(k);
    }
    out.volume_ml[static_cast<std::size_t>(c)] = sum * voxel_ml;
    // An empty class keeps the grid centre as a placeholder; volume 0 is what marks it absent.
    out.centre_mm[static_cast<std::size_t>(c)] =
        sum > 0.0 ? g.to_world(ContinuousIndex{Eigen::Vector3d(si, sj, sk) / sum}).mm : g.centre().mm;
  }
  return out;
}

template Landmarks<Scanner> extract_landmarks<Scanner>(const MultiChannelImage<Scanner>&, float);
template Landmarks<Atlas> extract_landmarks<Atlas>(const MultiChannelImage<Atlas>&, float);

std::vector<OrientationCandidate> orientation_candidates(bool xy_flips) {
  std::vector<OrientationCandidate> out;
  const char* rot_names[4] = {"", "rot90", "rot180", "rot270"};
  // In-plane rotation about +z (superior) by k x 90 deg: x -> y for k = 1.
  auto rot_z = [](int k) {
    Eigen::Matrix3d r = Eigen::Matrix3d::Identity();
    const double c[4] = {1, 0, -1, 0}, s[4] = {0, 1, 0, -1};
    r(0, 0) = c[k];
    r(0, 1) = -s[k];
    r(1, 0) = s[k];
    r(1, 1) = c[k];
    return r;
  };
  // Flips are applied to scanner coordinates first, then the rotation. With xflip, the four rotations also give
  // the y mirror (rot180+xflip) and the two diagonal mirrors, i.e. every in-plane reflection.
  const int n_xflip = xy_flips ? 2 : 1;
  for (int xflip = 0; xflip < n_xflip; ++xflip) {
    for (int zflip = 0; zflip < 2; ++zflip) {
      for (int k = 0; k < 4; ++k) {
        const Eigen::Matrix3d flip = Eigen::Vector3d(xflip ? -1.0 : 1.0, 1.0, zflip ? -1.0 : 1.0).asDiagonal();
        std::string name = rot_names[k];
        auto add = [&name](const char* part) { name += (name.empty() ? "" : "+") + std::string(part); };
        if (zflip) add("zflip");
        if (xflip) add("xflip");
        if (name.empty()) name = "identity";
        OrientationCandidate cand;
        cand.name = name;
        cand.rotation = rot_z(k) * flip;
        out.push_back(cand);
      }
    }
  }
  return out;
}

template <class From, class To>
Affine<From, To> InitialFitOf<From, To>::transform() const {
  Eigen::Affine3d m = Eigen::Affine3d::Identity();
  m.linear() = scale * rotation;
  m.translation() = pivot_to_mm - scale * rotation * pivot_from_mm;
  return Affine<From, To>(m);
}

namespace {

// Weighted least-squares similarity a ~ s R (p - p_mean) + a_mean for a fixed R; returns the weighted RMS error.
double fit_scale_and_error(const std::vector<Eigen::Vector3d>& p, const std::vector<Eigen::Vector3d>& a,
                           const std::vector<double>& w, const Eigen::Vector3d& p_mean, const Eigen::Vector3d& a_mean,
                           const Eigen::Matrix3d& r, bool fit_scale, double* scale_out) {
  double num = 0.0, den = 0.0;
  for (std::size_t n = 0; n < p.size(); ++n) {
    const Eigen::Vector3d rp = r * (p[n] - p_mean);
    num += w[n] * rp.dot(a[n] - a_mean);
    den += w[n] * rp.squaredNorm();
  }
  double s = 1.0;
  if (fit_scale && den > 1e-12) s = std::clamp(num / den, 0.6, 1.6);
  double err = 0.0;
  for (std::size_t n = 0; n < p.size(); ++n)
    err += w[n] * (s * (r * (p[n] - p_mean)) + a_mean - a[n]).squaredNorm();
  *scale_out = s;
  return std::sqrt(std::max(err, 0.0));  // weights sum to 1
}

// Translation only (too few classes for the search): each seen class proposes the translation that maps its scan
// centre onto its atlas centre under the assumed rotation R, atlas centre - R scan centre. (Without R, a scan turned
// 180 deg in-plane has every in-plane offset between two classes reversed: left and right lung then propose
// translations that differ by twice their separation, and one of them is left out of a correct fit.) One
// mis-segmented class (a head CT's brain partly called urinary bladder by the network) would drag their
// mean by tens of centimetres, so keep the classes whose proposals lie within agree_mm of the proposal that most
// classes agree with (then: the most weight; a class over-segmented to three times its atlas volume weighs as much
// as a complete one, so weight alone would let it outvote two that agree); the others go to classes_left_out with
// weight 0. Returns the weight kept.
template <class From, class To>
double keep_agreeing_classes(const Landmarks<From>& scan, const Landmarks<To>& atlas, double agree_mm,
                             const Eigen::Matrix3d& rotation, InitialFitOf<From, To>& fit) {
  auto proposal = [&](int c) {
    const auto cc = static_cast<std::size_t>(c);
    return Eigen::Vector3d(atlas.centre_mm[cc] - rotation * scan.centre_mm[cc]);
  };
  int best = fit.classes_seen.front(), best_count = -1;
  double best_support = -1.0;
  for (int c : fit.classes_seen) {
    int count = 0;
    double support = 0.0;
    for (int d : fit.classes_seen)
      if ((proposal(d) - proposal(c)).norm() <= agree_mm) {
        ++count;
        support += fit.weights[static_cast<std::size_t>(d)];
      }
    if (count > best_count || (count == best_count && support > best_support)) {  // ties keep the earlier class
      best_count = count;
      best_support = support;
      best = c;
    }
  }
  std::vector<int> kept;
  for (int c : fit.classes_seen) {
    const double off = (proposal(c) - proposal(best)).norm();
    if (off <= agree_mm) {
      kept.push_back(c);
      continue;
    }
    fit.classes_left_out.push_back(c);
    fit.weights[static_cast<std::size_t>(c)] = 0.0;
    std::ostringstream msg;
    msg << "initial fit: " << class_names()[static_cast<std::size_t>(c)] << " is " << std::lround(off)
        << " mm away from where the other classes place the scan: left out of the fit (mis-segmented?)";
    log_warn(msg.str());
  }
  fit.classes_seen = kept;
  return best_support;
}

}  // namespace

// Inside: `scan` moves (From), `atlas` is the reference (To), whatever the frames.
template <class From, class To>
InitialFitOf<From, To> initial_fit(const Landmarks<From>& scan, const Landmarks<To>& atlas,
                                   const LandmarkOptions& options) {
  InitialFitOf<From, To> fit;
  double total = 0.0;
  for (std::size_t c = 0; c < static_cast<std::size_t>(kNumClasses); ++c) {
    const double av = atlas.volume_ml[c], sv = scan.volume_ml[c];
    double w = 0.0;
    if (av > 0.0 && sv > 0.0 && std::isfinite(av) && std::isfinite(sv)) w = std::min(sv / av, 1.0);
    if (w > 0.0 && w >= options.present_fraction && scan.centre_mm[c].allFinite() && atlas.centre_mm[c].allFinite()) {
      fit.weights[c] = w;
      fit.classes_seen.push_back(static_cast<int>(c));
      total += w;
    }
  }
  if (fit.classes_seen.empty()) {
    std::ostringstream msg;
    msg << "no anatomy recognised in the scan: none of the " << kNumClasses << " classes reaches "
        << options.present_fraction * 100.0
        << "% of its atlas volume; check that the input is a CT scan (Hounsfield units) of the head or trunk";
    throw Error(ErrorCode::FitFailed, msg.str());
  }
  if (static_cast<int>(fit.classes_seen.size()) < options.min_classes_for_search)
    total = keep_agreeing_classes(scan, atlas, options.agree_mm, options.translation_only_orientation.rotation, fit);
  for (double& w : fit.weights) w /= total;

  std::vector<Eigen::Vector3d> p, a;
  std::vector<double> w;
  Eigen::Vector3d p_mean = Eigen::Vector3d::Zero(), a_mean = Eigen::Vector3d::Zero();
  for (int c : fit.classes_seen) {
    const auto cc = static_cast<std::size_t>(c);
    p.push_back(scan.centre_mm[cc]);
    a.push_back(atlas.centre_mm[cc]);
    w.push_back(fit.weights[cc]);
    p_mean += fit.weights[cc] * scan.centre_mm[cc];
    a_mean += fit.weights[cc] * atlas.centre_mm[cc];
  }
  fit.pivot_from_mm = p_mean;
  fit.pivot_to_mm = a_mean;

  const int n_seen = static_cast<int>(fit.classes_seen.size());
  if (n_seen >= options.min_classes_for_search) {
    fit.searched = true;
    double best = std::numeric_limits<double>::infinity();
    for (OrientationCandidate cand : orientation_candidates(options.search_xy_flips)) {
      double s = 1.0;
      cand.rms_error_mm = fit_scale_and_error(p, a, w, p_mean, a_mean, cand.rotation, options.fit_scale, &s);
      if (cand.rms_error_mm < best) {  // strict: ties keep the earlier (identity first)
        best = cand.rms_error_mm;
        fit.rotation = cand.rotation;
        fit.orientation = cand.name;
        fit.scale = s;
      }
      fit.candidates.push_back(cand);
    }
  } else {
    // Too few landmarks to fix a rotation: translation only, with the assumed rotation (identity unless a turned
    // network pass says otherwise) as the single candidate.
    fit.searched = false;
    OrientationCandidate cand = options.translation_only_orientation;
    double s = 1.0;
    cand.rms_error_mm = fit_scale_and_error(p, a, w, p_mean, a_mean, cand.rotation, false, &s);
    fit.rotation = cand.rotation;
    fit.orientation = cand.name;
    fit.candidates.push_back(cand);
  }
  std::ostringstream msg;
  msg << "initial fit: " << n_seen << " classes seen, orientation " << fit.orientation << ", scale " << fit.scale
      << (fit.searched ? "" : " (translation only: too few classes for an orientation search)");
  log_info(msg.str());
  return fit;
}

#define CTARR_INSTANTIATE_INITIAL_FIT(From, To)                                                                   \
  template struct InitialFitOf<From, To>;                                                                        \
  template InitialFitOf<From, To> initial_fit<From, To>(const Landmarks<From>&, const Landmarks<To>&,            \
                                                        const LandmarkOptions&);
CTARR_INSTANTIATE_INITIAL_FIT(Scanner, Atlas)
CTARR_INSTANTIATE_INITIAL_FIT(Scanner, Scanner)
CTARR_INSTANTIATE_INITIAL_FIT(Atlas, Atlas)
#undef CTARR_INSTANTIATE_INITIAL_FIT

}  // namespace ctarr
