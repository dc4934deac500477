// ctarr — building the atlas from 19-class label maps (the paper's procedure).
//
//  1. every label map -> canonical orientation -> label fractions on its 3 mm isotropic canonical grid: soft masks
//     in its own scanner frame. Its field of view is that whole grid; the masks are kept around the labels only.
//  2. mean space: T_ij registers source i to source j (landmarks, orientation search, Dice refinement with j's
//     masks as the "atlas"); T_i = mean of the 4x4 matrices {T_ij : j reference, j != i} ∪ {identity if i is a
//     reference}. The references are the sources that label the most classes (all of them when every source is
//     complete, which is the paper's procedure): a source with a partial field of view or partial labels is
//     registered into the references' mean space but does not define it.
//  3. provisional atlas: identity-direction grid covering every source mapped by T_i; each source's masks are
//     resampled there (trilinear, zero outside) and averaged.
//  4. every source is registered to the provisional atlas again (sharpened as Pipeline::fit sharpens the atlas) and
//     the resampled masks are averaged. Class c at voxel v is averaged over the sources that label c and whose
//     field of view covers v.
//  5. the grid is cropped to the atlas' nonzero extent plus the margin; the frame is the references' mean space.
//  6. checks, recorded in the manifest: the atlas fitted to itself, every source fitted to the final atlas.
#include "ctarr/atlas.hpp"

#include "ctarr/crop.hpp"
#include "ctarr/error.hpp"
#include "ctarr/io.hpp"
#include "ctarr/log.hpp"
#include "ctarr/network.hpp"
#include "ctarr/preprocess.hpp"
#include "ctarr/refine.hpp"
#include "ctarr/version.hpp"
#include "detail/json_geometry.hpp"
#include "detail/json_text.hpp"
#include "detail/safetensors.hpp"
#include "parallel.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <sstream>

namespace ctarr {

using json = nlohmann::ordered_json;  // keys in the order written

namespace {

constexpr double kNonzero = 1e-3;  // atlas values below this count as empty when cropping

struct Source {
  std::string path, note, sha256;
  Grid<Scanner> fov;                 // the whole canonical isotropic grid
  MultiChannelImage<Scanner> masks;  // label fractions on a part of fov around the labels
  std::array<bool, kNumClasses> labelled{};
  int classes = 0;
  Landmarks<Scanner> landmarks;
};

template <class From, class To>
struct Registration {
  Affine<From, To> map;
  double dice = 0.0, initial_dice = 0.0;
  std::string orientation;
  Eigen::Vector3d scale = Eigen::Vector3d::Ones();
};

std::string fmt(double v, int precision = 3) {
  std::ostringstream os;
  os.precision(precision);
  os << std::fixed << v;
  return os.str();
}

// Crops `labels` to [range) and splits every voxel into factor[a] sub-voxels along axis a (nearest neighbour, exact),
// so that label_fractions reaches every target voxel and estimates its fractions from several samples.
Image<std::uint8_t> crop_and_subdivide(const Image<std::uint8_t>& labels, const IndexBox& range, const Index3& factor) {
  Grid<Scanner> g = labels.grid;
  Eigen::Vector3d first;
  for (int a = 0; a < 3; ++a) {
    const double m = static_cast<double>(factor[a]);
    g.size[a] = (range.end[a] - range.start[a]) * factor[a];
    g.spacing[a] = labels.grid.spacing[a] / m;
    first[a] = static_cast<double>(range.start[a]) - 0.5 + 0.5 / m;
  }
  g.origin = labels.grid.to_world(ContinuousIndex{first}).mm;
  Image<std::uint8_t> out(g, 0);
  parallel_for(g.size[2], [&](std::int64_t k) {
    for (std::int64_t j = 0; j < g.size[1]; ++j)
      for (std::int64_t i = 0; i < g.size[0]; ++i)
        out.at(Index3{{i, j, k}}) = labels.at(
            Index3{{range.start[0] + i / factor[0], range.start[1] + j / factor[1], range.start[2] + k / factor[2]}});
  });
  return out;
}

Source load_source(const AtlasSource& s, double spacing_mm, double keep_margin_mm) {
  Source src;
  src.path = s.path;
  src.note = s.note;
  // 1. the label map, 0..19
  const Image<std::uint16_t> raw = read_label_map(s.path);
  Image<std::uint8_t> labels(raw.grid, 0);
  IndexBox bbox;
  bbox.start = raw.grid.size;
  bbox.end = Index3{{-1, -1, -1}};
  for (std::int64_t k = 0; k < raw.grid.size[2]; ++k)
    for (std::int64_t j = 0; j < raw.grid.size[1]; ++j)
      for (std::int64_t i = 0; i < raw.grid.size[0]; ++i) {
        const Index3 idx{{i, j, k}};
        const std::uint16_t v = raw.at(idx);
        if (v == 0) continue;
        if (v > kNumClasses)
          throw Error(ErrorCode::UnreadableInput,
                      "atlas source " + s.path + " holds label " + std::to_string(v) +
                          "; expected ctarr's 19 classes (0 background, 1..19 in classes.hpp order)");
        labels.at(idx) = static_cast<std::uint8_t>(v);
        for (int a = 0; a < 3; ++a) {
          bbox.start[a] = std::min(bbox.start[a], idx[a]);
          bbox.end[a] = std::max(bbox.end[a], idx[a] + 1);
        }
      }
  if (bbox.empty()) throw Error(ErrorCode::UnreadableInput, "atlas source " + s.path + " holds no label at all");
  try {
    src.sha256 = detail::sha256_file_hex(s.path);
  } catch (const Error&) {
    src.sha256.clear();  // the label map was read: a missing checksum is not worth failing for
  }
  // 2. canonical isotropic grid = field of view; masks on the part of it around the labels
  const Reorientation r = canonical_reorientation(raw.grid.direction);
  src.fov = isotropic_grid(reorient_grid(raw.grid, r), spacing_mm);
  Index3 factor;
  for (int a = 0; a < 3; ++a) {
    const auto grow = static_cast<std::int64_t>(std::ceil(keep_margin_mm / raw.grid.spacing[a]));
    bbox.start[a] = std::max<std::int64_t>(0, bbox.start[a] - grow);
    bbox.end[a] = std::min<std::int64_t>(raw.grid.size[a], bbox.end[a] + grow);
    factor[a] = std::max<std::int64_t>(
        1, static_cast<std::int64_t>(std::ceil(raw.grid.spacing[a] / (0.5 * spacing_mm) - 1e-9)));
  }
  const Image<std::uint8_t> fine = crop_and_subdivide(labels, bbox, factor);
  Eigen::Vector3d lo = Eigen::Vector3d::Constant(1e300), hi = Eigen::Vector3d::Constant(-1e300);
  for (int corner = 0; corner < 8; ++corner) {
    ContinuousIndex ci;
    for (int a = 0; a < 3; ++a)
      ci.v[a] = ((corner >> a) & 1) ? static_cast<double>(bbox.end[a]) - 0.5 : static_cast<double>(bbox.start[a]) - 0.5;
    const Eigen::Vector3d f = src.fov.to_continuous_index(raw.grid.to_world(ci)).v;
    lo = lo.cwiseMin(f);
    hi = hi.cwiseMax(f);
  }
  IndexBox range;
  for (int a = 0; a < 3; ++a) {
    range.start[a] =
        std::clamp<std::int64_t>(static_cast<std::int64_t>(std::floor(lo[a] + 0.5)), 0, src.fov.size[a] - 1);
    range.end[a] = std::clamp<std::int64_t>(static_cast<std::int64_t>(std::ceil(hi[a] - 0.5)) + 1, range.start[a] + 1,
                                            src.fov.size[a]);
  }
  src.masks = label_fractions(fine, subgrid(src.fov, range), kNumClasses);
  // 3. what it labels, and its landmarks
  src.landmarks = extract_landmarks(src.masks);
  for (int c = 0; c < kNumClasses; ++c) {
    src.labelled[static_cast<std::size_t>(c)] = src.landmarks.volume_ml[static_cast<std::size_t>(c)] > 0.0;
    src.classes += src.labelled[static_cast<std::size_t>(c)] ? 1 : 0;
  }
  log_info("atlas source " + s.path + ": " + std::to_string(src.classes) + " classes, masks " +
           std::to_string(src.masks.grid.size[0]) + "x" + std::to_string(src.masks.grid.size[1]) + "x" +
           std::to_string(src.masks.grid.size[2]) + " at " + fmt(spacing_mm, 1) + " mm");
  return src;
}

// `from` fitted to `to` as Pipeline::fit fits a scan to the atlas (landmarks, then the Dice descent).
template <class From, class To>
Registration<From, To> register_masks(const MultiChannelImage<From>& from, const Landmarks<From>& from_landmarks,
                                      const MultiChannelImage<To>& to, const Landmarks<To>& to_landmarks,
                                      const RefineOptions& refine) {
  const InitialFitOf<From, To> init = initial_fit(from_landmarks, to_landmarks, LandmarkOptions{});
  const RefineResultOf<From, To> r = refine_transform(from, to, init, refine);
  Registration<From, To> out;
  out.map = r.transform();
  out.dice = r.dice;
  out.initial_dice = r.initial_dice;
  out.orientation = init.orientation;
  out.scale = r.scale;
  return out;
}

// Trilinear look-up of channel c at a continuous index inside [-0.5, n - 0.5] (clamped to the edge voxels).
float sample(const MultiChannelImage<Scanner>& m, int c, const Eigen::Vector3d& ci) {
  std::int64_t i0[3], i1[3];
  double f[3];
  for (int a = 0; a < 3; ++a) {
    const double x = std::clamp(ci[a], 0.0, static_cast<double>(m.grid.size[a] - 1));
    const double fl = std::floor(x);
    i0[a] = static_cast<std::int64_t>(fl);
    i1[a] = std::min(i0[a] + 1, m.grid.size[a] - 1);
    f[a] = x - fl;
  }
  const float* ch = m.channel(c);
  const std::int64_t nx = m.grid.size[0], nxy = m.grid.size[0] * m.grid.size[1];
  auto at = [&](std::int64_t i, std::int64_t j, std::int64_t k) {
    return static_cast<double>(ch[i + nx * j + nxy * k]);
  };
  const double c00 = at(i0[0], i0[1], i0[2]) * (1 - f[0]) + at(i1[0], i0[1], i0[2]) * f[0];
  const double c10 = at(i0[0], i1[1], i0[2]) * (1 - f[0]) + at(i1[0], i1[1], i0[2]) * f[0];
  const double c01 = at(i0[0], i0[1], i1[2]) * (1 - f[0]) + at(i1[0], i0[1], i1[2]) * f[0];
  const double c11 = at(i0[0], i1[1], i1[2]) * (1 - f[0]) + at(i1[0], i1[1], i1[2]) * f[0];
  const double c0 = c00 * (1 - f[1]) + c10 * f[1];
  const double c1 = c01 * (1 - f[1]) + c11 * f[1];
  return static_cast<float>(c0 * (1 - f[2]) + c1 * f[2]);
}

bool in_voxel_box(const Eigen::Vector3d& ci, const Index3& size) {
  for (int a = 0; a < 3; ++a)
    if (!(ci[a] >= -0.5 && ci[a] <= static_cast<double>(size[a]) - 0.5)) return false;
  return true;
}

// Average of the sources' masks mapped into `grid` by `to_atlas`: per class and voxel over the sources that label
// the class and whose field of view covers the voxel.
MultiChannelImage<Atlas> average_masks(const std::vector<Source>& sources,
                                       const std::vector<Affine<Scanner, Atlas>>& to_atlas, const Grid<Atlas>& grid) {
  const auto n = static_cast<std::size_t>(grid.voxels());
  MultiChannelImage<Atlas> sum(grid, kNumClasses, 0.0f);
  std::vector<std::uint16_t> count(n * kNumClasses, 0);
  for (std::size_t s = 0; s < sources.size(); ++s) {
    const Source& src = sources[s];
    const Eigen::Affine3d to_scanner = to_atlas[s].matrix().inverse();
    // continuous index in the field of view / in the masks' grid, as affine functions of the atlas index
    auto index_map = [&](const Grid<Scanner>& g, Eigen::Matrix3d* a, Eigen::Vector3d* b) {
      const Eigen::Matrix3d p = g.spacing.cwiseInverse().asDiagonal() * g.direction.transpose();
      *a = p * to_scanner.linear() * grid.index_to_world_linear();
      *b = p * (to_scanner * grid.origin - g.origin);
    };
    Eigen::Matrix3d fa, ma;
    Eigen::Vector3d fb, mb;
    index_map(src.fov, &fa, &fb);
    index_map(src.masks.grid, &ma, &mb);
    parallel_for(grid.size[2], [&](std::int64_t k) {
      for (std::int64_t j = 0; j < grid.size[1]; ++j)
        for (std::int64_t i = 0; i < grid.size[0]; ++i) {
          const Eigen::Vector3d idx(static_cast<double>(i), static_cast<double>(j), static_cast<double>(k));
          if (!in_voxel_box(fa * idx + fb, src.fov.size)) continue;
          const Eigen::Vector3d ci = ma * idx + mb;
          const bool has_data = in_voxel_box(ci, src.masks.grid.size);
          const std::size_t v = grid.linear(Index3{{i, j, k}});
          for (int c = 0; c < kNumClasses; ++c) {
            if (!src.labelled[static_cast<std::size_t>(c)]) continue;
            ++count[static_cast<std::size_t>(c) * n + v];
            if (has_data) sum.channel(c)[v] += sample(src.masks, c, ci);
          }
        }
    });
  }
  for (std::size_t x = 0; x < n * kNumClasses; ++x)
    if (count[x] > 0) sum.data[x] /= static_cast<float>(count[x]);
  return sum;
}

// Identity-direction grid on the spacing lattice covering the boxes.
Grid<Atlas> lattice_grid(const Eigen::Vector3d& lo, const Eigen::Vector3d& hi, double spacing) {
  Grid<Atlas> g;
  g.spacing = Eigen::Vector3d::Constant(spacing);
  for (int a = 0; a < 3; ++a) {
    const double first = std::floor(lo[a] / spacing + 0.5) * spacing;  // a voxel centre on the lattice
    g.origin[a] = first;
    g.size[a] = static_cast<std::int64_t>(std::ceil((hi[a] - first) / spacing - 0.5 - 1e-9)) + 1;
    g.size[a] = std::max<std::int64_t>(g.size[a], 2);
  }
  return g;
}

// The atlas cropped (or grown) to its nonzero extent plus margin_mm.
MultiChannelImage<Atlas> crop_to_content(const MultiChannelImage<Atlas>& m, double margin_mm) {
  const Grid<Atlas>& g = m.grid;
  const auto n = static_cast<std::size_t>(g.voxels());
  Index3 lo{{g.size[0], g.size[1], g.size[2]}}, hi{{-1, -1, -1}};
  for (std::int64_t k = 0; k < g.size[2]; ++k)
    for (std::int64_t j = 0; j < g.size[1]; ++j)
      for (std::int64_t i = 0; i < g.size[0]; ++i) {
        const std::size_t v = g.linear(Index3{{i, j, k}});
        bool any = false;
        for (int c = 0; c < kNumClasses && !any; ++c) any = m.data[static_cast<std::size_t>(c) * n + v] >= kNonzero;
        if (!any) continue;
        const Index3 idx{{i, j, k}};
        for (int a = 0; a < 3; ++a) {
          lo[a] = std::min(lo[a], idx[a]);
          hi[a] = std::max(hi[a], idx[a]);
        }
      }
  if (hi[0] < 0) throw Error(ErrorCode::FitFailed, "build_atlas: the averaged atlas is empty");
  Grid<Atlas> out_grid = g;
  Index3 start;
  for (int a = 0; a < 3; ++a) {
    const auto grow = static_cast<std::int64_t>(std::ceil(margin_mm / g.spacing[a] - 1e-9));
    start[a] = lo[a] - grow;
    out_grid.size[a] = hi[a] + grow - start[a] + 1;
  }
  out_grid.origin = g.to_world(start).mm;
  MultiChannelImage<Atlas> out(out_grid, kNumClasses, 0.0f);
  const auto on = static_cast<std::size_t>(out_grid.voxels());
  for (std::int64_t k = 0; k < out_grid.size[2]; ++k)
    for (std::int64_t j = 0; j < out_grid.size[1]; ++j)
      for (std::int64_t i = 0; i < out_grid.size[0]; ++i) {
        const Index3 src{{i + start[0], j + start[1], k + start[2]}};
        if (!g.contains(src)) continue;
        const std::size_t sv = g.linear(src), dv = out_grid.linear(Index3{{i, j, k}});
        for (int c = 0; c < kNumClasses; ++c)
          out.data[static_cast<std::size_t>(c) * on + dv] = m.data[static_cast<std::size_t>(c) * n + sv];
      }
  return out;
}

using detail::mat3_json;
using detail::mat4_json;
using detail::vec3_json;

template <class From, class To>
json registration_json(const Registration<From, To>& r) {
  return {{"dice", r.dice},
          {"initial_dice", r.initial_dice},
          {"orientation", r.orientation},
          {"scale", vec3_json(r.scale)},
          {"scanner_to_atlas", mat4_json(r.map.matrix())}};
}

std::string content_hash(const MultiChannelImage<Atlas>& m) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a over the grid and the voxels rounded to 1e-4
  auto mix = [&h](std::uint64_t x) {
    for (int b = 0; b < 8; ++b) {
      h ^= (x >> (8 * b)) & 0xffu;
      h *= 1099511628211ull;
    }
  };
  for (int a = 0; a < 3; ++a) {
    mix(static_cast<std::uint64_t>(m.grid.size[a]));
    mix(static_cast<std::uint64_t>(std::llround(m.grid.origin[a] * 1000.0)));
  }
  for (float v : m.data) mix(static_cast<std::uint64_t>(std::lround(static_cast<double>(v) * 1e4)));
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return std::string(buf, 12);
}

// Largest distance (mm) between a map and the identity over the corners of a grid.
template <class Frame>
double max_displacement_mm(const Affine<Frame, Frame>& map, const Grid<Frame>& g) {
  double worst = 0.0;
  for (int corner = 0; corner < 8; ++corner) {
    ContinuousIndex ci;
    for (int a = 0; a < 3; ++a) ci.v[a] = ((corner >> a) & 1) ? static_cast<double>(g.size[a] - 1) : 0.0;
    const Eigen::Vector3d p = g.to_world(ci).mm;
    worst = std::max(worst, (map.matrix() * p - p).norm());
  }
  return worst;
}

}  // namespace

AtlasModel build_atlas(const std::vector<AtlasSource>& sources, const BuildAtlasOptions& options) {
  if (sources.empty()) throw Error(ErrorCode::Usage, "build_atlas: no source label map given");
  if (!(options.spacing_mm > 0.0) || !std::isfinite(options.spacing_mm))
    throw Error(ErrorCode::Usage, "build_atlas: spacing must be a positive number of mm");
  if (!(options.margin_mm >= 0.0) || !std::isfinite(options.margin_mm))
    throw Error(ErrorCode::Usage, "build_atlas: margin must be >= 0 mm");
  RefineOptions refine;
  refine.device = resolve_device(DeviceSpec{options.device});
  refine.working_spacing_mm = std::max(refine.working_spacing_mm, options.spacing_mm);

  // 1. soft masks of every source in its own scanner frame
  std::vector<Source> src;
  for (const AtlasSource& s : sources)
    src.push_back(load_source(s, options.spacing_mm, std::max(30.0, options.margin_mm)));
  const std::size_t n = src.size();
  int most = 0;
  for (const Source& s : src) most = std::max(most, s.classes);
  std::vector<bool> reference(n);
  for (std::size_t i = 0; i < n; ++i) reference[i] = src[i].classes == most;

  // 2. mean space: T_i = mean of {T_ij : j reference, j != i} ∪ {identity if i is a reference}
  std::vector<Affine<Scanner, Atlas>> to_mean(n);
  json pairwise = json::array();
  for (std::size_t i = 0; i < n; ++i) {
    Eigen::Matrix4d total = Eigen::Matrix4d::Zero();
    if (reference[i]) total.setIdentity();
    int count = reference[i] ? 1 : 0;
    for (std::size_t j = 0; j < n; ++j) {
      if (j == i || !reference[j]) continue;
      const Registration<Scanner, Scanner> r =  // source i's scanner frame to source j's
          register_masks(src[i].masks, src[i].landmarks, src[j].masks, src[j].landmarks, refine);
      log_info("atlas: source " + std::to_string(i + 1) + " -> source " + std::to_string(j + 1) + ": Dice " +
               fmt(r.dice));
      json e = registration_json(r);
      e["from"] = i;
      e["to"] = j;
      pairwise.push_back(e);
      total += r.map.matrix().matrix();
      ++count;
    }
    Eigen::Affine3d mean = Eigen::Affine3d::Identity();
    if (count > 0) mean.matrix() = total / static_cast<double>(count);
    mean.matrix().row(3) << 0, 0, 0, 1;
    if (std::abs(mean.linear().determinant()) < 1e-6)
      throw Error(ErrorCode::FitFailed, "build_atlas: the mean transform of " + src[i].path +
                                            " is singular "
                                            "(the pairwise registrations disagree in orientation)");
    to_mean[i] = Affine<Scanner, Atlas>(mean);
  }

  // 3. provisional atlas on a grid covering every source's masks in the mean space
  Eigen::Vector3d lo = Eigen::Vector3d::Constant(1e300), hi = Eigen::Vector3d::Constant(-1e300);
  for (std::size_t i = 0; i < n; ++i) {
    const Grid<Scanner>& g = src[i].masks.grid;
    for (int corner = 0; corner < 8; ++corner) {
      ContinuousIndex ci;
      for (int a = 0; a < 3; ++a) ci.v[a] = ((corner >> a) & 1) ? static_cast<double>(g.size[a]) - 0.5 : -0.5;
      const Eigen::Vector3d p = to_mean[i](g.to_world(ci)).mm;
      lo = lo.cwiseMin(p);
      hi = hi.cwiseMax(p);
    }
  }
  const Grid<Atlas> grid = lattice_grid(lo, hi, options.spacing_mm);
  const MultiChannelImage<Atlas> provisional = average_masks(src, to_mean, grid);
  const Landmarks<Atlas> provisional_lm = extract_landmarks(provisional);
  // Against a mean, registrations see it as Pipeline::fit does (kFitSharpness): against the plain soft mean a crisp
  // source mask swells over the mean's fringe (2-3 % in scale), which would make the averaged atlas that much larger
  // than the mean of its sources.
  RefineOptions refine_to_mean = refine;
  refine_to_mean.target_sharpness = {kFitSharpness.begin(), kFitSharpness.end()};
  log_info("atlas: provisional atlas " + std::to_string(grid.size[0]) + "x" + std::to_string(grid.size[1]) + "x" +
           std::to_string(grid.size[2]));

  // 4. every source registered to the provisional atlas, masks averaged
  std::vector<Affine<Scanner, Atlas>> to_provisional(n);
  std::vector<Registration<Scanner, Atlas>> second(n);
  for (std::size_t i = 0; i < n; ++i) {
    second[i] = register_masks(src[i].masks, src[i].landmarks, provisional, provisional_lm, refine_to_mean);
    to_provisional[i] = second[i].map;
    log_info("atlas: source " + std::to_string(i + 1) + " -> provisional atlas: Dice " + fmt(second[i].dice));
  }
  AtlasModel atlas;
  // 5. cropped to the content plus the margin
  atlas.masks = crop_to_content(average_masks(src, to_provisional, grid), options.margin_mm);
  atlas.landmarks = extract_landmarks(atlas.masks);

  // 6. checks, fitted as Pipeline::fit does: the atlas fits itself, every source fits the atlas
  const Registration<Atlas, Atlas> self =
      register_masks(atlas.masks, atlas.landmarks, atlas.masks, atlas.landmarks, refine_to_mean);
  const double self_shift = max_displacement_mm(self.map, atlas.masks.grid);
  log_info("atlas: self fit Dice " + fmt(self.dice) + ", largest displacement " + fmt(self_shift, 2) + " mm");
  std::vector<Registration<Scanner, Atlas>> check(n);
  for (std::size_t i = 0; i < n; ++i) {
    check[i] = register_masks(src[i].masks, src[i].landmarks, atlas.masks, atlas.landmarks, refine_to_mean);
    log_info("atlas: source " + std::to_string(i + 1) + " (" + src[i].path + ") fits the atlas with Dice " +
             fmt(check[i].dice));
  }

  // 7. manifest
  atlas.id = "ctarr-atlas-" + content_hash(atlas.masks);
  const Grid<Atlas>& g = atlas.masks.grid;
  json j;
  j["id"] = atlas.id;
  j["frame"] = "atlas";
  j["units"] = "mm";
  j["world"] = "LPS";
  j["shape"] = json::array({g.size[0], g.size[1], g.size[2]});
  j["channels"] = kNumClasses;
  j["spacing_mm"] = vec3_json(g.spacing);
  j["origin_mm"] = vec3_json(g.origin);
  j["direction"] = mat3_json(g.direction);
  j["frame_note"] =
      "atlas millimetres are the mean space of the reference sources: the average of their scanner frames (LPS mm "
      "as their headers state them) under the mean pairwise transform; origin_mm is the world position of voxel "
      "(0,0,0)'s centre and is kept as it falls (no recentring)";
  j["classes"] = json::array();
  for (const std::string& c : class_names()) j["classes"].push_back(c);
  j["values"] = "mean soft mask per class in [0, 1], channel c = label c + 1";
  j["sources"] = json::array();
  for (std::size_t i = 0; i < n; ++i) {
    json s = {{"path", src[i].path},
              {"note", src[i].note},
              {"reference", static_cast<bool>(reference[i])},
              {"classes_labelled", src[i].classes},
              {"to_mean_space", mat4_json(to_mean[i].matrix())},
              {"fit_to_provisional", registration_json(second[i])},
              {"fit_to_atlas", registration_json(check[i])}};
    if (!src[i].sha256.empty()) s["sha256"] = src[i].sha256;
    json missing = json::array();
    for (int c = 0; c < kNumClasses; ++c)
      if (!src[i].labelled[static_cast<std::size_t>(c)]) missing.push_back(class_names()[static_cast<std::size_t>(c)]);
    s["classes_not_labelled"] = missing;
    j["sources"].push_back(s);
  }
  j["command"] = options.command;
  j["licence"] = options.licence;
  j["created_utc"] = detail::utc_now();
  j["ctarr_version"] = kVersion;
  j["options"] = {{"spacing_mm", options.spacing_mm}, {"margin_mm", options.margin_mm}, {"device", refine.device}};
  j["procedure"] =
      "Buddenkotte et al. (CTARR, MELBA 2024): each 19-class label map -> canonical orientation -> label fractions on "
      "its isotropic canonical grid (soft masks). T_ij registers source i to source j (centre-of-mass landmarks, "
      "orientation search, Dice refinement of per-axis scale and translation); T_i = mean of the 4x4 matrices {T_ij: "
      "j a reference source, j != i} plus the identity when i is a reference (references: the sources labelling the "
      "most classes). Masks resampled by T_i (trilinear, zero outside) and averaged = provisional atlas; each source "
      "registered to it again (its masks sharpened as the fit sees them: clamp(1.5 m - 0.25, 0, 1)) and the resampled "
      "masks averaged per class over the sources that label the class and "
      "whose field of view covers the voxel; grid cropped to the nonzero extent (>= 0.001) plus margin_mm.";
  j["pairwise"] = pairwise;
  j["checks"] = {{"self_fit",
                  {{"dice", self.dice},
                   {"max_displacement_mm", self_shift},
                   {"orientation", self.orientation},
                   {"scale", vec3_json(self.scale)}}},
                 {"source_fit_dice", json::array()}};
  for (std::size_t i = 0; i < n; ++i) j["checks"]["source_fit_dice"].push_back(check[i].dice);
  j["landmarks"] = json::object();
  for (int c = 0; c < kNumClasses; ++c) {
    const auto cc = static_cast<std::size_t>(c);
    j["landmarks"][class_names()[cc]] = {{"centre_mm", vec3_json(atlas.landmarks.centre_mm[cc])},
                                         {"volume_ml", atlas.landmarks.volume_ml[cc]}};
  }
  atlas.manifest_json = detail::json_text(j, 2) + "\n";
  return atlas;
}

}  // namespace ctarr
