// examples/consumer — uses an installed ctarr through find_package(ctarr): loads the shipped atlas and regions,
// writes a synthetic CT and its 19-class label map (a slab of the atlas, identity header), reads the CT back and
// maps the liver region's boxes into it.
//
//   ctarr_consumer OUT_DIR [DATA_DIR]     DATA_DIR: <prefix>/share/ctarr (default: the installed one)
//
// Writes OUT_DIR/ct.nii.gz and OUT_DIR/seg.nii.gz (input for `ctarr crop --seg`), prints the liver's voxel ranges;
// exit 0 when every box meets the scan.
#include <ctarr/atlas.hpp>
#include <ctarr/crop.hpp>
#include <ctarr/error.hpp>
#include <ctarr/io.hpp>
#include <ctarr/regions.hpp>
#include <ctarr/version.hpp>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: ctarr_consumer OUT_DIR [DATA_DIR]\n";
    return 2;
  }
  const std::string out = argv[1];
  const std::string data = argc > 2 ? argv[2] : CTARR_CONSUMER_DATA_DIR;
  try {
    std::cout << "ctarr " << ctarr::kVersion << ", data " << data << "\n";
    // 1. the atlas: hard labels where a mean mask reaches 0.5, in a slab from 80 mm below to 80 mm above the liver
    const ctarr::AtlasModel atlas = ctarr::load_atlas(data + "/atlas");
    const ctarr::Region liver = ctarr::find_region(data + "/regions", "liver");
    const auto& m = atlas.masks;  // identity direction (atlas.hpp)
    const auto slice = [&](double z_mm) {
      const double k = (z_mm - m.grid.origin.z()) / m.grid.spacing.z();
      return std::clamp<std::int64_t>(static_cast<std::int64_t>(std::lround(k)), 0, m.grid.size[2] - 1);
    };
    double z_lo = 1e300, z_hi = -1e300;
    for (const ctarr::Box<ctarr::Atlas>& b : liver.boxes) {
      z_lo = std::min(z_lo, b.lower.mm.z() - 80.0);
      z_hi = std::max(z_hi, b.upper.mm.z() + 80.0);
    }
    const std::int64_t k0 = slice(z_lo), k1 = slice(z_hi);
    ctarr::Grid<ctarr::Scanner> grid;
    grid.size = m.grid.size;
    grid.size[2] = k1 - k0 + 1;
    grid.spacing = m.grid.spacing;
    grid.origin = m.grid.origin + Eigen::Vector3d(0.0, 0.0, m.grid.spacing.z() * static_cast<double>(k0));
    ctarr::Image<std::uint8_t> labels(grid, 0);
    ctarr::Image<float> ct(grid, -1000.0f);
    const auto n = static_cast<std::size_t>(m.grid.voxels());
    for (std::int64_t k = 0; k < grid.size[2]; ++k)
      for (std::int64_t j = 0; j < grid.size[1]; ++j)
        for (std::int64_t i = 0; i < grid.size[0]; ++i) {
          const ctarr::Index3 idx{{i, j, k}};
          const std::size_t v = m.grid.linear(ctarr::Index3{{i, j, k + k0}});
          float best = 0.5f;
          for (int c = 0; c < m.channels; ++c)
            if (m.data[static_cast<std::size_t>(c) * n + v] >= best) {
              best = m.data[static_cast<std::size_t>(c) * n + v];
              labels.at(idx) = static_cast<std::uint8_t>(c + 1);
              ct.at(idx) = c < 10 ? 700.0f : (c == 11 || c == 12) ? -850.0f : 40.0f;  // bones, lungs, soft tissue
            }
        }
    ctarr::write_image(labels, out + "/seg.nii.gz");
    ctarr::write_image(ct, out + "/ct.nii.gz", ctarr::PixelType::Int16);

    // 2. read it back and map the liver's boxes (atlas mm) into it: the atlas is the scan here (identity fit)
    const ctarr::Scan scan = ctarr::read_scan(out + "/ct.nii.gz");
    std::cout << "scan " << scan.image.grid.size << " voxels, " << scan.info.format << "\n";
    bool all_inside = true;
    ctarr::CropOptions options;
    options.margin_mm = liver.margin_mm;
    for (const ctarr::Box<ctarr::Atlas>& box : liver.boxes) {
      const ctarr::MappedBox mb =
          ctarr::map_box(box, ctarr::Affine<ctarr::Atlas, ctarr::Scanner>::identity(), scan.image.grid, options);
      std::cout << "liver box: voxels " << mb.clipped.start << " to " << mb.clipped.end << ", "
                << static_cast<int>(100.0 * mb.fraction_inside + 0.5) << "% inside the scan\n";
      all_inside = all_inside && !mb.misses_scan;
    }
    std::cout << ctarr::load_regions(data + "/regions").size() << " regions installed\n";
    return all_inside ? 0 : 1;
  } catch (const ctarr::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return static_cast<int>(e.code());
  }
}
