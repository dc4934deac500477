#include "commands.hpp"
#include "common.hpp"

#include "ctarr/error.hpp"
#include "ctarr/record.hpp"

#include <cmath>
#include <cstdio>
#include <iostream>
#include <sstream>

#include <unistd.h>

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
  auto shard = std::make_shared<std::string>();
  auto margin = std::make_shared<double>(-1.0);
  auto json = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand("crop", "Crop anatomical regions out of CT scans (one scan, many, or a dataset)");
  cmd->add_option("--region,-r", req->regions, "Region name (see `ctarr regions`) or a region .json; repeatable")
      ->required()
      ->allow_extra_args(false);  // one name per --region, so inputs after it stay inputs
  auto* inputs = cmd->add_option("inputs", req->inputs, "Image files (.nii, .nii.gz, .nrrd, .mha) or DICOM folders");
  auto* dataset = cmd->add_option("--dataset", req->dataset_dir,
                                  "MSD / nnU-Net dataset folder (imagesTr/, labelsTr/, imagesTs/, dataset.json): "
                                  "images and labels cropped with the same boxes into the same layout under -o")
                      ->check(CLI::ExistingDirectory);
  dataset->excludes(inputs);
  cmd->add_option("-o,--out", req->out_dir, "Output folder")->capture_default_str();
  auto* seg = cmd->add_option("--seg", req->seg, "Label map to use instead of the network (ctarr 19 classes, "
                                                 "TotalSegmentator v1/v2 multilabel, or a folder of TotalSegmentator "
                                                 "masks); one input only");
  auto* seg_dir = cmd->add_option("--seg-dir", req->seg_dir,
                                  "Segmentations to fit with instead of the network, one per case: <case>.nii.gz, "
                                  "<image name>.nii.gz or a mask folder <case>/")
                      ->check(CLI::ExistingDirectory);
  seg->excludes(seg_dir);
  cmd->add_option("--margin", *margin, "Margin in mm on every side, 0 to 1000 [default: the region's, usually 10]")
      ->check(CLI::Range(0.0, 1000.0));
  cmd->add_option("--pad", *pad, "Pad boxes that leave the scan to their full size with VALUE, or 'min'");
  cmd->add_option("--target-spacing", *spacing, "Resample crops to SX,SY,SZ mm (linear; labels nearest)");
  cmd->add_flag("--z-only", req->crop.z_only, "Crop along the superior-inferior axis only");
  cmd->add_flag("--preview", req->preview,
                "Also write <stem>_preview.png: projections and axial slices with the segmentation, the fitted atlas "
                "and the crop boxes (also for a refused fit)");
  cmd->add_option("--format", req->extension, "Crop file type: .nii.gz, .nii, .nrrd, .mha")->capture_default_str();
  cmd->add_option("--shard", *shard, "Process part I of N of the sorted cases (0-based: 0/4 .. 3/4), for job arrays");
  cmd->add_flag("--overwrite", req->overwrite,
                "Redo cases whose record and crops exist (default: skip them, so a rerun resumes)");
  cmd->add_flag("--json", *json, "Print the records (a JSON array, one object per case and region) to stdout");
  add_pipeline_options(*cmd, req->pipeline);
  add_turned_passes_option(*cmd, req->pipeline);
  cmd->callback([cmd, req, pad, spacing, shard, margin, json, &exit_code] {
    req->command = command_line(*cmd);
    if (*margin != -1.0) req->crop.margin_mm = *margin;  // -1: not given (NaN reaches run_crop, which refuses it)
    if (!pad->empty()) {
      req->crop.pad = true;
      if (*pad != "min") {
        // the whole value must be a finite number ("12abc" is not 12; NaN would reach every padded voxel)
        std::size_t used = 0;
        float value = 0.0f;
        try {
          value = std::stof(*pad, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used == 0 || used != pad->size() || !std::isfinite(value))
          throw Error(ErrorCode::Usage, "--pad must be a number or 'min' (got \"" + *pad + "\")");
        req->crop.pad_value = value;
      }
    }
    if (!spacing->empty()) req->crop.target_spacing_mm = parse_spacing(*spacing);
    if (!shard->empty()) req->shard = parse_shard(*shard);
    req->stop_on_signals = true;
    const bool bar = ::isatty(STDERR_FILENO) != 0;
    if (bar)
      req->progress = [](const BatchProgress& p) {
        std::fprintf(stderr, "\r\033[K%s", progress_line(p).c_str());
        if (p.done == p.total && p.current.empty()) std::fputc('\n', stderr);
        std::fflush(stderr);
      };
    const CropRun run = run_crop(*req);
    if (*json) std::cout << records_json_array(run.rows) << std::flush;
    exit_code = run.exit_code;
  });
}

}  // namespace ctarr::cli
