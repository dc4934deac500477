#include "commands.hpp"
#include "common.hpp"

namespace ctarr::cli {

void register_segment(CLI::App& app) {
  auto req = std::make_shared<SegmentRequest>();
  CLI::App* cmd = app.add_subcommand("segment", "Write the 19-class label map (3 mm canonical grid)");
  cmd->add_option("input", req->input, "Image file or DICOM folder")->required();
  cmd->add_option("-o,--out", req->output, "Output label map (.nii.gz)")->required();
  cmd->add_flag("--all-components", req->all_components,
                 "Keep every piece of each class (default: the one-piece organs, share/classes.json, keep their "
                 "largest connected piece only)");
  add_pipeline_options(*cmd, req->pipeline);
  cmd->callback([req] { run_segment(*req); });
}

}  // namespace ctarr::cli
