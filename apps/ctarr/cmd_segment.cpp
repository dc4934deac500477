#include "commands.hpp"
#include "common.hpp"

namespace ctarr::cli {

void register_segment(CLI::App& app) {
  auto req = std::make_shared<SegmentRequest>();
  CLI::App* cmd = app.add_subcommand("segment", "Write the 19-class label map (on the scan's grid, or the 3 mm canonical grid)");
  cmd->add_option("input", req->input, "Image file or DICOM folder")->required();
  cmd->add_option("-o,--out", req->output, "Output label map (.nii.gz)")->required();
  cmd->add_flag("--all-components", req->label_map.all_components,
                 "Keep every piece of each class (default: the one-piece organs, share/classes.json, keep their "
                 "largest connected piece only)");
  cmd->add_flag_callback("--single-pass", [req] { req->label_map.mirror_pass = false; },
                         "Run the network once (default: twice, the second time on the scan mirrored left-right, and "
                         "average the two passes for every class but the heart, liver and spleen; half the network "
                         "time)");
  cmd->add_option_function<std::string>(
         "--grid",
         [req](const std::string& grid) { req->label_map.grid = grid == "3mm" ? LabelGrid::Network : LabelGrid::Scan; },
         "scan: the label map on the scan's own voxels (the 3 mm probabilities interpolated trilinearly at each voxel "
         "centre); 3mm: on the 3 mm canonical grid the network ran on [default: scan]")
      ->check(CLI::IsMember({"scan", "3mm"}));
  add_pipeline_options(*cmd, req->pipeline);
  cmd->callback([req] { run_segment(*req); });
}

}  // namespace ctarr::cli
