// ctarr CLI — subcommand registration (one cmd_<name>.cpp per subcommand).
#pragma once

#include <CLI/CLI.hpp>

namespace ctarr::cli {

// Registers every subcommand; a subcommand sets exit_code when it finishes with a non-error status (e.g. a
// region missed the scan).
void register_commands(CLI::App& app, int& exit_code);

void register_crop(CLI::App& app, int& exit_code);
void register_uncrop(CLI::App& app);
void register_segment(CLI::App& app);
void register_regions(CLI::App& app);
void register_build_atlas(CLI::App& app);
void register_infer_region(CLI::App& app);

}  // namespace ctarr::cli
