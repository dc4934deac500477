// ctarr CLI — options shared by several subcommands.
#pragma once

#include "ctarr/pipeline.hpp"

#include <CLI/CLI.hpp>

namespace ctarr::cli {

// --model, --atlas, --regions-dir, --device, --reference-inference
inline void add_pipeline_options(CLI::App& cmd, PipelineOptions& o) {
  cmd.add_option("--model", o.model_path, "Model weights (.safetensors; card beside it) [default: shipped model]");
  cmd.add_option("--atlas", o.atlas_dir, "Atlas folder [default: shipped atlas]");
  cmd.add_option("--regions-dir", o.regions_dir, "Folder of region JSON files [default: shipped regions]");
  cmd.add_option("--device", o.device.text, "auto | cpu | cuda | cuda:N (CUDA never falls back silently)")
      ->capture_default_str();
  cmd.add_flag("--reference-inference", o.reference_inference,
               "Run the network as the reference sliding window (every tile, float32: about 2x slower on a CPU) "
               "instead of the fast path (air tiles skipped, bfloat16 where the hardware has it); see "
               "docs/PERFORMANCE.md");
}

}  // namespace ctarr::cli
