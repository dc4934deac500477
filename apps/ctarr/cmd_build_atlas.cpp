#include "commands.hpp"
#include "common.hpp"

#include "ctarr/atlas.hpp"

#include <memory>
#include <string>
#include <vector>

namespace ctarr::cli {

void register_build_atlas(CLI::App& app) {
  struct Args {
    std::vector<std::string> sources, notes;
    std::string out;
    BuildAtlasOptions options;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("build-atlas", "Build the atlas of mean anatomy masks from 19-class label maps");
  cmd->add_option("sources", args->sources, "19-class label maps (0 background, 1..19 in ctarr's class order)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--note", args->notes, "Provenance of each source, in the order of the sources (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("-o,--out", args->out, "Output folder (atlas.nii.gz + atlas.json)")->required();
  cmd->add_option("--spacing", args->options.spacing_mm, "Atlas voxel size, mm")->capture_default_str();
  cmd->add_option("--margin", args->options.margin_mm, "Margin around the mean anatomy, mm")->capture_default_str();
  cmd->add_option("--licence", args->options.licence, "Licence terms recorded in the manifest");
  cmd->add_option("--device", args->options.device, "Device for the registrations: auto | cpu | cuda | cuda:N")
      ->capture_default_str();
  cmd->callback([args, cmd] {
    if (args->notes.size() > args->sources.size())
      throw CLI::ValidationError("--note", "more notes (" + std::to_string(args->notes.size()) + ") than sources (" +
                                               std::to_string(args->sources.size()) + ")");
    std::vector<AtlasSource> sources;
    for (std::size_t n = 0; n < args->sources.size(); ++n)
      sources.push_back(AtlasSource{args->sources[n], n < args->notes.size() ? args->notes[n] : std::string()});
    args->options.command = command_line(*cmd);
    save_atlas(build_atlas(sources, args->options), args->out);
  });
}

}  // namespace ctarr::cli
