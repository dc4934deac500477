// ctarr — one scan cropped in memory (see crop_scan.hpp).
#include "ctarr/crop_scan.hpp"

#include "ctarr/error.hpp"

namespace ctarr {

ScanCrops crop_scan(Pipeline& pipeline, const Scan& scan, const std::vector<Region>& regions,
                    const CropOptions& options, const std::optional<Segmentation>& segmentation,
                    const std::string& case_id, const std::function<void()>& between_steps) {
  const auto step = [&] {
    if (between_steps) between_steps();
  };
  // 1. segment (network or given labels) and fit; a refused fit throws FitFailed
  ScanCrops out;
  if (segmentation) {
    out.segmentation = *segmentation;
    out.fit = pipeline.fit(out.segmentation);
  } else {
    NetworkFit fitted = pipeline.segment_and_fit(scan, step);
    out.segmentation = std::move(fitted.segmentation);
    out.fit = std::move(fitted.fit);
  }
  step();
  // 2. plan: every region's boxes in the scan, with the options in effect
  const CropPlan plan = plan_crop(scan, out.fit.scanner_to_atlas, regions, options);
  // 3. cut, and the records
  const RecordContext context{case_id, {scan.info.path}, &scan, &out.segmentation, &out.fit,
                              segmentation ? std::string("none (--seg)") : pipeline.model_id(),
                              pipeline.atlas().id};
  for (const RegionPlan& rp : plan.regions) {
    RegionCrops rc;
    rc.region = rp.region.name;
    rc.record = start_crop_record(context, rp);
    for (const MappedBox& box : rp.boxes) {
      CropRecordBox rb;
      rb.box = box;
      if (!box.misses_scan) {
        rc.crops.push_back(crop_image(scan.image, box, rp.options, *rp.options.pad_value));
        rb.output_grid = rc.crops.back().grid;
      }
      rc.record.boxes.push_back(rb);
    }
    out.regions.push_back(std::move(rc));
  }
  return out;
}

}  // namespace ctarr
