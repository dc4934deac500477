// ctarr — the crop planned: boxes mapped, options in effect, warnings (see crop_plan.hpp).
#include "ctarr/crop_plan.hpp"

#include <algorithm>

namespace ctarr {

std::size_t RegionPlan::boxes_written() const {
  return static_cast<std::size_t>(
      std::count_if(boxes.begin(), boxes.end(), [](const MappedBox& b) { return !b.misses_scan; }));
}

const IndexBox& RegionPlan::written_range(std::size_t b) const {
  return options.pad ? boxes.at(b).requested : boxes.at(b).clipped;
}

CropOptions effective_crop_options(const CropOptions& requested, const Region& region) {
  CropOptions options = requested;
  if (!options.margin_mm) options.margin_mm = region.margin_mm;
  return options;
}

void add_warning(std::vector<std::string>& warnings, std::vector<std::string>& codes, const std::string& code,
                 const std::string& message) {
  warnings.push_back(message);
  if (std::find(codes.begin(), codes.end(), code) == codes.end()) codes.push_back(code);
}

CropPlan plan_crop(const Grid<Scanner>& scan_grid, const Affine<Scanner, Atlas>& scanner_to_atlas,
                   const std::vector<Region>& regions, const CropOptions& requested, float scan_minimum) {
  CropPlan plan;
  plan.scan_grid = scan_grid;
  plan.atlas_to_scanner = scanner_to_atlas.inverse();
  for (const Region& region : regions) {
    RegionPlan rp;
    rp.region = region;
    rp.options = effective_crop_options(requested, region);
    rp.options.pad_value = requested.pad_value.value_or(scan_minimum);
    for (std::size_t b = 0; b < region.boxes.size(); ++b) {
      const MappedBox m = map_box(region.boxes[b], plan.atlas_to_scanner, scan_grid, rp.options);
      const std::string name = "box " + std::to_string(b + 1) + " of region " + region.name;
      if (m.misses_scan) {
        rp.warnings.push_back({warning_code::kRegionMissed, name + " lies outside the scan"});
      } else {
        const int percent_inside = static_cast<int>(100.0 * m.fraction_inside + 0.5);
        if (m.was_clipped)
          rp.warnings.push_back({warning_code::kBoxClipped, name + " was clipped at the scan border (" +
                                                                std::to_string(percent_inside) + "% inside)"});
        if (m.fraction_inside < 0.5)
          rp.warnings.push_back({warning_code::kBoxMostlyOutside,
                                 name + " is mostly outside the scan: the region may be cut off "
                                        "(does the scan cover it?)"});
      }
      rp.boxes.push_back(m);
    }
    if (rp.boxes_written() == 0)
      rp.warnings.push_back(
          {warning_code::kRegionMissed, "region " + region.name + " misses the scan: no crop written"});
    plan.regions.push_back(std::move(rp));
  }
  return plan;
}

CropPlan plan_crop(const Image<float>& scan, const Affine<Scanner, Atlas>& scanner_to_atlas,
                   const std::vector<Region>& regions, const CropOptions& requested) {
  const float minimum = scan.voxels.empty() ? 0.0f : *std::min_element(scan.voxels.begin(), scan.voxels.end());
  return plan_crop(scan.grid, scanner_to_atlas, regions, requested, minimum);
}

CropPlan plan_crop(const Scan& scan, const Affine<Scanner, Atlas>& scanner_to_atlas,
                   const std::vector<Region>& regions, const CropOptions& requested) {
  if (!scan.info.intensities) return plan_crop(scan.image, scanner_to_atlas, regions, requested);
  return plan_crop(scan.image.grid, scanner_to_atlas, regions, requested, scan.info.intensities->min_value);
}

Box<Scanner> voxel_range_extent(const Grid<Scanner>& grid, const IndexBox& range) {
  Eigen::Vector3d lo = Eigen::Vector3d::Constant(1e300), hi = Eigen::Vector3d::Constant(-1e300);
  for (int c = 0; c < 8; ++c) {
    ContinuousIndex ci;
    for (int a = 0; a < 3; ++a) ci.v[a] = static_cast<double>(((c >> a) & 1) ? range.end[a] : range.start[a]) - 0.5;
    const Eigen::Vector3d p = grid.to_world(ci).mm;
    lo = lo.cwiseMin(p);
    hi = hi.cwiseMax(p);
  }
  return Box<Scanner>{Point<Scanner>{lo}, Point<Scanner>{hi}};
}

CropRecord start_crop_record(const RecordContext& context, const RegionPlan& plan) {
  const Scan& scan = *context.scan;
  const Fit& fit = *context.fit;
  CropRecord record;
  record.case_id = context.case_id;
  record.input = context.inputs.front();
  if (context.inputs.size() > 1) record.channel_inputs = context.inputs;
  record.scan_info = scan.info;
  record.input_grid = scan.image.grid;
  record.reorientation = context.segmentation->reorientation;
  record.region = plan.region.name;
  record.region_provenance_json = plan.region.provenance_json;
  record.options = plan.options;
  record.initial = fit.initial;
  record.refined = fit.refined;
  record.network_passes = fit.network_passes;
  record.segmentation_source = context.segmentation->source;
  record.model_id = context.model_id;
  record.atlas_id = context.atlas_id;
  for (const std::string& w : scan.info.warnings)
    add_warning(record.warnings, record.warning_codes, warning_code::kInput, w);
  record.warnings.insert(record.warnings.end(), fit.warnings.begin(), fit.warnings.end());
  for (const std::string& code : fit.warning_codes)
    if (std::find(record.warning_codes.begin(), record.warning_codes.end(), code) == record.warning_codes.end())
      record.warning_codes.push_back(code);
  for (const PlanWarning& w : plan.warnings) add_warning(record.warnings, record.warning_codes, w.code, w.message);
  return record;
}

}  // namespace ctarr
