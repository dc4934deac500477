#include "commands.hpp"

namespace ctarr::cli {

void register_commands(CLI::App& app, int& exit_code) {
  register_crop(app, exit_code);
  register_uncrop(app);
  register_segment(app);
  register_regions(app);
  register_build_atlas(app);
  register_infer_region(app);
}

}  // namespace ctarr::cli
