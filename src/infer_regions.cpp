// ctarr — regions inferred from labelled cases: fit, carry the labels into the atlas grid, average, threshold,
// connected components, boxes.
#include "ctarr/infer_regions.hpp"

#include "detail/json_geometry.hpp"
#include "detail/json_text.hpp"
#include "detail/percent.hpp"

#include "ctarr/components.hpp"
#include "ctarr/dataset.hpp"
#include "ctarr/error.hpp"
#include "ctarr/io.hpp"
#include "ctarr/log.hpp"
#include "ctarr/preview.hpp"
#include "ctarr/version.hpp"
#include "parallel.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <iomanip>
#include <filesystem>
#include <map>
#include <optional>
#include <sstream>

namespace ctarr {

namespace fs = std::filesystem;
using detail::fmt_pct;
using json = nlohmann::ordered_json;  // keys in the order written

namespace {

// Continuous index in a case's grid as an affine function of the atlas voxel index: ci = a * idx + b.
struct IndexMap {
  Eigen::Matrix3d a;
  Eigen::Vector3d b;
  Eigen::Vector3d operator()(const Eigen::Vector3d& idx) const { return a * idx + b; }
};

IndexMap atlas_index_to_case_index(const Grid<Atlas>& atlas, const Grid<Scanner>& grid,
                                   const Affine<Scanner, Atlas>& scanner_to_atlas) {
  const Eigen::Affine3d to_scanner = scanner_to_atlas.matrix().inverse();
  const Eigen::Matrix3d p = grid.spacing.cwiseInverse().asDiagonal() * grid.direction.transpose();
  IndexMap m;
  m.a = p * to_scanner.linear() * atlas.index_to_world_linear();
  m.b = p * (to_scanner * atlas.origin - grid.origin);
  return m;
}

bool inside_voxel_box(const Eigen::Vector3d& ci, const Index3& size) {
  for (int a = 0; a < 3; ++a)
    if (!(ci[a] >= -0.5 && ci[a] <= static_cast<double>(size[a]) - 0.5)) return false;
  return true;
}

Index3 index_of(std::int64_t n, const Index3& size) {
  Index3 idx;
  idx[0] = n % size[0];
  idx[1] = (n / size[0]) % size[1];
  idx[2] = n / (size[0] * size[1]);
  return idx;
}

// Atlas voxel range [start, end) holding the case's mask (voxel boxes mapped by the fit), grown by one voxel.
std::optional<IndexBox> mask_extent_in_atlas(const RegionCase& c, const Grid<Atlas>& atlas) {
  Index3 lo{{c.mask.grid.size[0], c.mask.grid.size[1], c.mask.grid.size[2]}}, hi{{-1, -1, -1}};
  const Index3& size = c.mask.grid.size;
  for (std::int64_t k = 0; k < size[2]; ++k)
    for (std::int64_t j = 0; j < size[1]; ++j)
      for (std::int64_t i = 0; i < size[0]; ++i) {
        if (!c.mask.voxels[c.mask.grid.linear(Index3{{i, j, k}})]) continue;
        const Index3 idx{{i, j, k}};
        for (int a = 0; a < 3; ++a) {
          lo[a] = std::min(lo[a], idx[a]);
          hi[a] = std::max(hi[a], idx[a]);
        }
      }
  if (hi[0] < 0) return std::nullopt;
  Eigen::Vector3d amin = Eigen::Vector3d::Constant(1e300), amax = Eigen::Vector3d::Constant(-1e300);
  for (int corner = 0; corner < 8; ++corner) {
    ContinuousIndex ci;
    for (int a = 0; a < 3; ++a)
      ci.v[a] = ((corner >> a) & 1) ? static_cast<double>(hi[a]) + 0.5 : static_cast<double>(lo[a]) - 0.5;
    const Point<Atlas> p = c.scanner_to_atlas(c.mask.grid.to_world(ci));
    const Eigen::Vector3d ai = atlas.to_continuous_index(p).v;
    amin = amin.cwiseMin(ai);
    amax = amax.cwiseMax(ai);
  }
  IndexBox box;
  for (int a = 0; a < 3; ++a) {
    box.start[a] = std::clamp<std::int64_t>(static_cast<std::int64_t>(std::floor(amin[a])) - 1, 0, atlas.size[a]);
    box.end[a] = std::clamp<std::int64_t>(static_cast<std::int64_t>(std::ceil(amax[a])) + 2, 0, atlas.size[a]);
  }
  if (box.empty()) return std::nullopt;
  return box;
}

// Adds one case to the heatmap sums: coverage everywhere, label fractions (supersampled nearest look-ups) where
// the mask can reach.
void accumulate_case(const RegionCase& c, const Grid<Atlas>& atlas, int s, std::vector<float>& sum,
                     std::vector<std::uint16_t>& cover) {
  const IndexMap map = atlas_index_to_case_index(atlas, c.mask.grid, c.scanner_to_atlas);
  const Index3 size = c.mask.grid.size;
  // 1. field of view: atlas voxel centres inside the case's voxel box
  parallel_for(atlas.size[2], [&](std::int64_t k) {
    for (std::int64_t j = 0; j < atlas.size[1]; ++j)
      for (std::int64_t i = 0; i < atlas.size[0]; ++i) {
        const Eigen::Vector3d ci =
            map(Eigen::Vector3d(static_cast<double>(i), static_cast<double>(j), static_cast<double>(k)));
        if (inside_voxel_box(ci, size)) ++cover[atlas.linear(Index3{{i, j, k}})];
      }
  });
  // 2. label fraction of every atlas voxel near the mask: s^3 nearest-neighbour look-ups
  const std::optional<IndexBox> extent = mask_extent_in_atlas(c, atlas);
  if (!extent) return;
  std::vector<Eigen::Vector3d> offsets;
  for (int z = 0; z < s; ++z)
    for (int y = 0; y < s; ++y)
      for (int x = 0; x < s; ++x)
        offsets.push_back(map.a * (Eigen::Vector3d(x + 0.5, y + 0.5, z + 0.5) / s - Eigen::Vector3d::Constant(0.5)));
  const double weight = 1.0 / static_cast<double>(offsets.size());
  const IndexBox e = *extent;
  parallel_for(e.end[2] - e.start[2], [&](std::int64_t dk) {
    const std::int64_t k = e.start[2] + dk;
    for (std::int64_t j = e.start[1]; j < e.end[1]; ++j)
      for (std::int64_t i = e.start[0]; i < e.end[0]; ++i) {
        const Eigen::Vector3d centre =
            map(Eigen::Vector3d(static_cast<double>(i), static_cast<double>(j), static_cast<double>(k)));
        if (!inside_voxel_box(centre, size)) continue;  // not covered: this case does not count here
        int hits = 0;
        for (const Eigen::Vector3d& off : offsets) {
          const Eigen::Vector3d ci = centre + off;
          Index3 n;
          bool in = true;
          for (int a = 0; a < 3 && in; ++a) {
            n[a] = static_cast<std::int64_t>(std::llround(ci[a]));
            in = n[a] >= 0 && n[a] < size[a];
          }
          if (in && c.mask.voxels[c.mask.grid.linear(n)]) ++hits;
        }
        if (hits) sum[atlas.linear(Index3{{i, j, k}})] += static_cast<float>(hits * weight);
      }
  });
}

// Atlas-mm box of whole voxels [lo, hi] (inclusive indices).
Box<Atlas> voxel_box(const Grid<Atlas>& g, const Index3& lo, const Index3& hi) {
  Eigen::Vector3d bmin = Eigen::Vector3d::Constant(1e300), bmax = Eigen::Vector3d::Constant(-1e300);
  for (int corner = 0; corner < 8; ++corner) {
    ContinuousIndex ci;
    for (int a = 0; a < 3; ++a)
      ci.v[a] = ((corner >> a) & 1) ? static_cast<double>(hi[a]) + 0.5 : static_cast<double>(lo[a]) - 0.5;
    const Eigen::Vector3d p = g.to_world(ci).mm;
    bmin = bmin.cwiseMin(p);
    bmax = bmax.cwiseMax(p);
  }
  return Box<Atlas>{Point<Atlas>{bmin}, Point<Atlas>{bmax}};
}

bool inside(const Box<Atlas>& b, const Eigen::Vector3d& p, double grow) {
  return (p.array() >= b.lower.mm.array() - grow).all() && (p.array() <= b.upper.mm.array() + grow).all();
}

// A case's label voxels (centres) in atlas mm, through its fit.
struct LabelPoints {
  std::vector<Eigen::Vector3d> atlas_mm;
  double voxel_ml = 0.0;
};

LabelPoints label_points(const RegionCase& c) {
  LabelPoints lp;
  lp.voxel_ml = c.mask.grid.spacing.prod() / 1000.0;
  const Index3& size = c.mask.grid.size;
  for (std::int64_t k = 0; k < size[2]; ++k)
    for (std::int64_t j = 0; j < size[1]; ++j)
      for (std::int64_t i = 0; i < size[0]; ++i) {
        const Index3 idx{{i, j, k}};
        if (c.mask.at(idx)) lp.atlas_mm.push_back(c.scanner_to_atlas(c.mask.grid.to_world(idx)).mm);
      }
  return lp;
}

RegionCaseOutcome case_outcome(const std::string& name, const LabelPoints& lp, const std::vector<Box<Atlas>>& boxes,
                               double margin_mm) {
  RegionCaseOutcome o;
  o.name = name;
  o.label_voxels = static_cast<std::int64_t>(lp.atlas_mm.size());
  o.label_ml = static_cast<double>(o.label_voxels) * lp.voxel_ml;
  std::int64_t kept = 0, kept_margin = 0;
  for (const Eigen::Vector3d& p : lp.atlas_mm) {
    bool in = false, in_margin = false;
    for (const Box<Atlas>& b : boxes) {
      in = in || inside(b, p, 1e-9);
      in_margin = in_margin || inside(b, p, margin_mm + 1e-9);
    }
    kept += in ? 1 : 0;
    kept_margin += in_margin ? 1 : 0;
  }
  if (o.label_voxels > 0) {
    o.fraction_kept = static_cast<double>(kept) / static_cast<double>(o.label_voxels);
    o.fraction_kept_with_margin = static_cast<double>(kept_margin) / static_cast<double>(o.label_voxels);
  }
  return o;
}

// Boxes of the heatmap at one threshold; empty when no voxel reaches it.
struct Thresholded {
  std::vector<Box<Atlas>> boxes;
  int components = 0, dropped = 0;
  std::vector<std::int64_t> component_voxels;
};

Thresholded boxes_at(const Image<float, Atlas>& heatmap, double threshold, std::int64_t min_component_voxels,
                     const std::string& region_name) {
  const Grid<Atlas>& g = heatmap.grid;
  const auto n = static_cast<std::size_t>(g.voxels());
  std::vector<std::uint8_t> on(n, 0);
  const auto thr = static_cast<float>(threshold);
  for (std::size_t v = 0; v < n; ++v) on[v] = heatmap.voxels[v] > 0.0f && heatmap.voxels[v] >= thr - 1e-6f;
  std::vector<std::vector<std::int64_t>> comps = connected_components(on, g.size);
  Thresholded t;
  t.components = static_cast<int>(comps.size());
  std::sort(comps.begin(), comps.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  // one box per component; small components are dropped unless none is large enough
  for (std::size_t c = 0; c < comps.size(); ++c) {
    if (static_cast<std::int64_t>(comps[c].size()) < min_component_voxels && c > 0) {
      ++t.dropped;
      continue;
    }
    if (static_cast<std::int64_t>(comps[c].size()) < min_component_voxels)
      log_warn("region " + region_name + ": the largest component has only " + std::to_string(comps[c].size()) +
               " voxels; kept");
    Index3 lo{{g.size[0], g.size[1], g.size[2]}}, hi{{-1, -1, -1}};
    for (std::int64_t v : comps[c]) {
      const Index3 idx = index_of(v, g.size);
      for (int a = 0; a < 3; ++a) {
        lo[a] = std::min(lo[a], idx[a]);
        hi[a] = std::max(hi[a], idx[a]);
      }
    }
    t.boxes.push_back(voxel_box(g, lo, hi));
    t.component_voxels.push_back(static_cast<std::int64_t>(comps[c].size()));
  }
  t.boxes = merge_overlapping(t.boxes);
  return t;
}


}  // namespace

Image<std::uint8_t> region_mask(const Image<std::uint16_t>& labels, const std::vector<int>& values) {
  std::vector<std::uint8_t> lut(65536, 0);
  for (int v : values)
    if (v >= 0 && v < 65536) lut[static_cast<std::size_t>(v)] = 1;
  Image<std::uint8_t> out(labels.grid, 0);
  for (std::size_t n = 0; n < labels.voxels.size(); ++n) out.voxels[n] = lut[labels.voxels[n]];
  return out;
}

namespace {

void check_inputs(const std::string& region_name, const std::vector<RegionCase>& cases, const Grid<Atlas>& atlas_grid,
                  const InferRegionsOptions& options) {
  if (region_name.empty()) throw Error(ErrorCode::Usage, "infer_regions: the region needs a name");
  if (cases.empty()) throw Error(ErrorCode::Usage, "infer_regions: no cases to infer region " + region_name + " from");
  if (!(options.threshold > 0.0 && options.threshold <= 1.0))
    throw Error(ErrorCode::Usage,
                "infer_regions: threshold must be in (0, 1]; got " + std::to_string(options.threshold));
  if (!(options.margin_mm >= 0.0) || !std::isfinite(options.margin_mm))
    throw Error(ErrorCode::Usage, "infer_regions: margin must be >= 0 mm");
  if (options.supersampling < 1 || options.supersampling > 8)
    throw Error(ErrorCode::Usage, "infer_regions: supersampling must be 1..8");
  if (options.min_component_voxels < 1)
    throw Error(ErrorCode::Usage, "infer_regions: min_component_voxels must be >= 1");
  if (!(options.min_fraction_kept >= 0.0 && options.min_fraction_kept <= 1.0))
    throw Error(ErrorCode::Usage, "infer_regions: min_fraction_kept must be in [0, 1]");
  if (options.min_fraction_kept > 0.0 && !(options.min_threshold > 0.0 && options.min_threshold <= options.threshold))
    throw Error(ErrorCode::Usage, "infer_regions: min_threshold must be in (0, threshold]");
  validate_grid(atlas_grid, "atlas grid");
  for (const RegionCase& c : cases) {
    validate_grid(c.mask.grid, "case " + c.name);
    if (c.mask.voxels.size() != static_cast<std::size_t>(c.mask.grid.voxels()))
      throw Error(ErrorCode::Internal, "infer_regions: mask of case " + c.name + " does not match its grid");
  }
}

// The heatmap of `cases` (all but `left_out`, when set): sums of label fractions and coverage counts.
struct HeatSums {
  std::vector<float> sum;
  std::vector<std::uint16_t> cover;
};

HeatSums heat_sums(const std::vector<RegionCase>& cases, const Grid<Atlas>& atlas_grid, int supersampling) {
  const auto n = static_cast<std::size_t>(atlas_grid.voxels());
  HeatSums h{std::vector<float>(n, 0.0f), std::vector<std::uint16_t>(n, 0)};
  for (const RegionCase& c : cases) accumulate_case(c, atlas_grid, supersampling, h.sum, h.cover);
  return h;
}

// Threshold (lowered along the ladder while a case in `points` keeps too little), components, boxes.
struct Selection {
  Thresholded chosen;
  double threshold = 0.0;
  std::vector<double> tried;
  std::vector<RegionCaseOutcome> outcomes;  // of the cases in `points`
  bool met = true;
};

Selection select_boxes(const Image<float, Atlas>& heatmap, const std::vector<const LabelPoints*>& points,
                       const std::vector<std::string>& names, const InferRegionsOptions& options,
                       const std::string& region_name) {
  std::vector<double> ladder{options.threshold};
  if (options.min_fraction_kept > 0.0)
    while (ladder.back() * 0.8 > options.min_threshold * (1.0 + 1e-9)) ladder.push_back(ladder.back() * 0.8);
  if (options.min_fraction_kept > 0.0 && options.min_threshold < options.threshold)
    ladder.push_back(options.min_threshold);
  Selection sel;
  for (double t : ladder) {
    Thresholded th = boxes_at(heatmap, t, options.min_component_voxels, region_name);
    sel.tried.push_back(t);
    if (th.boxes.empty()) continue;  // nothing reaches this threshold: try a lower one, if any
    std::vector<RegionCaseOutcome> outcomes;
    bool met = true;
    for (std::size_t k = 0; k < points.size(); ++k) {
      outcomes.push_back(case_outcome(names[k], *points[k], th.boxes, options.margin_mm));
      met = met && outcomes.back().fraction_kept_with_margin >= options.min_fraction_kept;
    }
    sel.chosen = std::move(th);
    sel.threshold = t;
    sel.outcomes = std::move(outcomes);
    sel.met = met;
    if (met) break;
  }
  return sel;
}

}  // namespace

InferRegionsResult infer_regions(const std::string& region_name, const std::vector<RegionCase>& cases,
                                 const Grid<Atlas>& atlas_grid, const InferRegionsOptions& options) {
  check_inputs(region_name, cases, atlas_grid, options);

  // 1. heatmap: mean label fraction over the cases that cover each voxel
  const auto n = static_cast<std::size_t>(atlas_grid.voxels());
  HeatSums h = heat_sums(cases, atlas_grid, options.supersampling);
  InferRegionsResult r;
  r.coverage = Image<std::uint16_t, Atlas>(atlas_grid, 0);
  r.coverage.voxels = std::move(h.cover);
  r.heatmap = Image<float, Atlas>(atlas_grid, 0.0f);
  for (std::size_t v = 0; v < n; ++v)
    if (r.coverage.voxels[v] > 0) r.heatmap.voxels[v] = h.sum[v] / static_cast<float>(r.coverage.voxels[v]);

  // 2. threshold, connected components, one box per component, merged; lowered while a case loses too much
  std::vector<LabelPoints> points;
  for (const RegionCase& c : cases) points.push_back(label_points(c));
  std::vector<const LabelPoints*> all;
  std::vector<std::string> names;
  for (std::size_t k = 0; k < cases.size(); ++k) {
    all.push_back(&points[k]);
    names.push_back(cases[k].name);
  }
  Selection sel = select_boxes(r.heatmap, all, names, options, region_name);
  Thresholded& chosen = sel.chosen;
  r.thresholds_tried = sel.tried;
  r.threshold = sel.threshold;
  r.cases = std::move(sel.outcomes);
  r.kept_target_met = sel.met;
  if (chosen.boxes.empty())
    throw Error(ErrorCode::FitFailed, "region " + region_name + ": no atlas voxel reaches the threshold " +
                                          std::to_string(r.thresholds_tried.back()) +
                                          " (are the label values right? do the cases hold them?)");
  if (!r.kept_target_met)
    log_warn("region " + region_name + ": even at threshold " + std::to_string(r.threshold) +
             " some case keeps less than " + fmt_pct(options.min_fraction_kept) + " of its label");
  r.components = chosen.components;
  r.dropped_components = chosen.dropped;
  r.component_voxels = chosen.component_voxels;
  r.region.name = region_name;
  r.region.margin_mm = options.margin_mm;
  r.region.boxes = chosen.boxes;

  // 3. leave-in measure: how much of every case's label the boxes keep
  for (const RegionCaseOutcome& o : r.cases)
    log_info("region " + region_name + ", case " + o.name + ": " + fmt_pct(o.fraction_kept) +
             " of the label inside the boxes, " + fmt_pct(o.fraction_kept_with_margin) + " with the margin");
  return r;
}

std::vector<LeaveOneOutCase> leave_one_out(const std::string& region_name, const std::vector<RegionCase>& cases,
                                           const Grid<Atlas>& atlas_grid, const InferRegionsOptions& options) {
  check_inputs(region_name, cases, atlas_grid, options);
  if (cases.size() < 2)
    throw Error(ErrorCode::Usage, "region " + region_name + ": leave-one-out needs at least two cases");
  const auto n = static_cast<std::size_t>(atlas_grid.voxels());
  const HeatSums total = heat_sums(cases, atlas_grid, options.supersampling);
  std::vector<LabelPoints> points;
  for (const RegionCase& c : cases) points.push_back(label_points(c));

  std::vector<LeaveOneOutCase> out;
  Image<float, Atlas> heat(atlas_grid, 0.0f);
  for (std::size_t k = 0; k < cases.size(); ++k) {
    // 1. the heatmap without case k: the sums less its own contribution
    HeatSums own{std::vector<float>(n, 0.0f), std::vector<std::uint16_t>(n, 0)};
    accumulate_case(cases[k], atlas_grid, options.supersampling, own.sum, own.cover);
    for (std::size_t v = 0; v < n; ++v) {
      const int cover = total.cover[v] - own.cover[v];
      heat.voxels[v] = cover > 0 ? std::max(0.0f, total.sum[v] - own.sum[v]) / static_cast<float>(cover) : 0.0f;
    }
    // 2. boxes from the others (their threshold rule), measured on case k
    std::vector<const LabelPoints*> others;
    std::vector<std::string> names;
    for (std::size_t m = 0; m < cases.size(); ++m)
      if (m != k) {
        others.push_back(&points[m]);
        names.push_back(cases[m].name);
      }
    const Selection sel = select_boxes(heat, others, names, options, region_name);
    LeaveOneOutCase c;
    c.name = cases[k].name;
    c.label_voxels = static_cast<std::int64_t>(points[k].atlas_mm.size());
    c.inferred = !sel.chosen.boxes.empty();
    c.threshold = sel.threshold;
    c.boxes = sel.chosen.boxes;
    if (c.inferred) {
      const RegionCaseOutcome o = case_outcome(cases[k].name, points[k], sel.chosen.boxes, options.margin_mm);
      c.fraction_kept = o.fraction_kept;
      c.fraction_kept_with_margin = o.fraction_kept_with_margin;
    }
    log_info("region " + region_name + ", case " + c.name + " left out: " + fmt_pct(c.fraction_kept) +
             " of its label inside the others' boxes, " + fmt_pct(c.fraction_kept_with_margin) + " with the margin");
    out.push_back(c);
  }
  return out;
}

}  // namespace ctarr
