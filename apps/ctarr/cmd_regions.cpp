#include "commands.hpp"

#include "ctarr/pipeline.hpp"
#include "ctarr/regions.hpp"

#include <filesystem>
#include <iostream>

namespace ctarr::cli {

void register_regions(CLI::App& app) {
  auto dir = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("regions", "List the regions that can be cropped");
  cmd->add_option("--regions-dir", *dir, "Folder of region JSON files [default: shipped regions]");
  cmd->callback([dir] {
    const std::string d = dir->empty() ? (std::filesystem::path(default_data_dir()) / "regions").string() : *dir;
    for (const Region& r : load_regions(d))
      std::cout << r.name << "\t" << r.boxes.size() << (r.boxes.size() == 1 ? " box" : " boxes") << ", margin "
                << r.margin_mm << " mm\n";
  });
}

}  // namespace ctarr::cli
