#include "commands.hpp"
#include "common.hpp"

#include "ctarr/error.hpp"

#include <sstream>

namespace ctarr::cli {

namespace {

Eigen::Vector3d parse_spacing(const std::string& text) {
  std::stringstream ss(text);
  Eigen::Vector3d v;
  char comma = 0;
  if (!(ss >> v.x() >> comma >> v.y() >> comma >> v.z()) || !ss.eof() || (v.array() <= 0.0).any())
    throw Error(ErrorCode::Usage, "--target-spacing must be SX,SY,SZ in mm, all positive (got \"" + text + "\")");
  return v;
}

}  // namespace

void register_crop(CLI::App& app, int& exit_code) {
  auto req = std::make_shared<CropRequest>();
  auto pad = std::make_shared<std::string>();
  auto spacing = std::make_shared<std::string>();
  auto margin = std::make_shared<double>(-1.0);
  CLI::App* cmd = app.add_subcommand("crop", "Crop anatomical regions out of CT scans");
  cmd->add_option("--region,-r", req->regions, "Region name (see `ctarr regions`) or a region .json; repeatable")
      ->required()
      ->allow_extra_args(false);  // one name per --region, so inputs after it stay inputs
  cmd->add_option("inputs", req->inputs, "Image files (.nii, .nii.gz, .nrrd, .mha) or DICOM folders")->required();
  cmd->add_option("-o,--out", req->out_dir, "Output folder")->capture_default_str();
  cmd->add_option("--seg", req->seg, "Label map to use instead of the network (ctarr 19 classes, TotalSegmentator "
                                     "v1/v2 multilabel, or a folder of TotalSegmentator masks)");
  cmd->add_option("--margin", *margin, "Margin in mm on every side [default: the region's, usually 10]");
  cmd->add_option("--pad", *pad, "Pad boxes that leave the scan to their full size with VALUE, or 'min'");
  cmd->add_option("--target-spacing", *spacing, "Resample crops to SX,SY,SZ mm (linear)");
  cmd->add_flag("--z-only", req->crop.z_only, "Crop along the superior-inferior axis only");
  cmd->add_flag("--preview", req->preview,
                "Also write <stem>_preview.png: coronal and sagittal projections with the atlas outline and the crop "
                "boxes");
  cmd->add_option("--format", req->extension, "Crop file type: .nii.gz, .nii, .nrrd, .mha")->capture_default_str();
  add_pipeline_options(*cmd, req->pipeline);
  cmd->callback([req, pad, spacing, margin, &exit_code] {
    if (*margin >= 0.0) req->crop.margin_mm = *margin;
    if (!pad->empty()) {
      req->crop.pad = true;
      if (*pad != "min") {
        try {
          req->crop.pad_value = std::stof(*pad);
        } catch (const std::exception&) {
          throw Error(ErrorCode::Usage, "--pad must be a number or 'min' (got \"" + *pad + "\")");
        }
      }
    }
    if (!spacing->empty()) req->crop.target_spacing_mm = parse_spacing(*spacing);
    const std::vector<CropOutcome> outcomes = run_crop(*req);
    for (const CropOutcome& o : outcomes)
      if (o.missed) exit_code = static_cast<int>(ErrorCode::NoOverlap);
  });
}

}  // namespace ctarr::cli
