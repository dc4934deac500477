// ctarr CLI — options shared by several subcommands.
#pragma once

#include "ctarr/pipeline.hpp"

#include <CLI/CLI.hpp>

#include <string>

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

// --turned-passes-below (commands that fit the network's segmentation: crop, infer-region)
inline void add_turned_passes_option(CLI::App& cmd, PipelineOptions& o) {
  cmd.add_option("--turned-passes-below", o.turned_passes_below_dice,
                 "When the fit through the network has a Dice below this (or fails), run the network again on the "
                 "scan turned by each other orientation candidate (90/180/270 degrees in-plane, z flips) and keep the "
                 "best fit: finds lying headers the network cannot segment as stored, at up to 8x the network time. "
                 "0: never; 1.01: always")
      ->check(CLI::Range(0.0, 1.01))
      ->capture_default_str();
}

// The command line as parsed (options in their declaration order, values shell-quoted): for manifests, region
// provenance and the QA page.
inline std::string command_line(const CLI::App& cmd) {
  auto quote = [](const std::string& s) {
    if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=,+") ==
                          std::string::npos)
      return s;
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
  };
  std::string line = "ctarr " + cmd.get_name();
  for (const CLI::Option* o : cmd.get_options()) {
    if (o->count() == 0) continue;
    const std::string flag = o->get_lnames().empty() ? "" : " --" + o->get_lnames().front();
    if (o->get_expected_min() == 0) {  // a flag: no value
      line += flag;
      continue;
    }
    for (const std::string& r : o->results()) line += flag + " " + quote(r);
  }
  return line;
}

}  // namespace ctarr::cli
