#include "commands.hpp"

#include "ctarr/log.hpp"
#include "ctarr/pipeline.hpp"

#include <memory>

namespace ctarr::cli {

void register_uncrop(CLI::App& app) {
  auto req = std::make_shared<UncropRequest>();
  auto labels = std::make_shared<bool>(false);
  auto image = std::make_shared<bool>(false);
  auto fill = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "uncrop", "Paste crops (images or predicted label maps) back onto the original scan's grid, from a crop record");
  cmd->add_option("record", req->record, "Crop record (.json) written by `ctarr crop`")->required()->check(CLI::ExistingFile);
  cmd->add_option("crops", req->crops,
                  "Crops to paste, one per written box in the record's order [default: the crops named in the record]")
      ->check(CLI::ExistingFile);
  cmd->add_option("-o,--out", req->output, "Output image on the input's grid (.nii.gz, .nii, .nrrd, .mha)")->required();
  auto* l = cmd->add_flag("--labels", *labels,
                          "Label maps: nearest neighbour, fill 0 (without crops given: the record's label crops)");
  auto* i = cmd->add_flag("--image", *image, "Intensity images: linear interpolation, fill the crop's pad value");
  l->excludes(i);
  cmd->add_option("--fill", *fill, "Value outside the boxes [default: 0 for labels, the pad value (scan minimum) for images]");
  cmd->callback([req, labels, image, fill] {
    if (*labels) req->labels = true;
    if (*image) req->labels = false;
    if (!fill->empty()) {
      try {
        std::size_t used = 0;
        req->fill = std::stof(*fill, &used);
        if (used != fill->size()) throw std::invalid_argument(*fill);
      } catch (const std::exception&) {
        throw CLI::ValidationError("--fill", "must be a number (got \"" + *fill + "\")");
      }
    }
    const UncropResult r = run_uncrop(*req);
    log_info("wrote " + r.output + " from " + std::to_string(r.crops.size()) + " crop(s) as " +
             (r.labels ? "labels (nearest)" : "image (linear)") + ", fill " + std::to_string(r.fill));
  });
}

}  // namespace ctarr::cli
