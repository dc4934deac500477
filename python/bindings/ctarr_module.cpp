// ctarr._ctarr — libctarr for Python (pybind11). Thin: arrays and geometry in, arrays, geometry and JSON records
// out; the conventions (nibabel's RAS affine, SimpleITK's LPS origin/spacing/direction, axis order) are handled in
// the pure-Python package around it (python/ctarr/__init__.py). Here every image is a C-contiguous float32 array of
// shape (nk, nj, ni) (i fastest, as libctarr stores voxels) with an LPS grid: origin (3), spacing (3), direction
// (3x3, columns = the i, j, k axes).
//
// The GIL is released while libctarr works, so Python threads overlap; between the heavy steps the call takes the
// GIL back to check for Ctrl-C (KeyboardInterrupt). libctarr errors become ctarr.Error with .code, the CLI's exit
// code.
#include "ctarr/classes.hpp"
#include "ctarr/crop_scan.hpp"
#include "ctarr/error.hpp"
#include "ctarr/io.hpp"
#include "ctarr/pipeline.hpp"
#include "ctarr/record.hpp"
#include "ctarr/regions.hpp"
#include "ctarr/version.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace py = pybind11;
using namespace ctarr;

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

Grid<Scanner> grid_from(const FloatArray& voxels, const std::vector<double>& origin, const std::vector<double>& spacing,
                        const std::vector<double>& direction) {
  if (voxels.ndim() != 3) throw Error(ErrorCode::UnsupportedGeometry, "the image array must be 3D");
  if (origin.size() != 3 || spacing.size() != 3 || direction.size() != 9)
    throw Error(ErrorCode::Usage, "origin and spacing need 3 numbers, direction 9 (row-major 3x3)");
  Grid<Scanner> g;
  g.size = Index3{{voxels.shape(2), voxels.shape(1), voxels.shape(0)}};
  g.origin = Eigen::Vector3d(origin[0], origin[1], origin[2]);
  g.spacing = Eigen::Vector3d(spacing[0], spacing[1], spacing[2]);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) g.direction(r, c) = direction[static_cast<std::size_t>(3 * r + c)];
  validate_grid(g, "the image's geometry");
  return g;
}

PixelType stored_type_named(const std::string& name) {
  if (const std::optional<PixelType> t = pixel_type_named(name)) return *t;
  throw Error(ErrorCode::Usage, "unknown voxel type \"" + name + "\"");
}

// An array and its LPS grid as a Scan, as if read from a file named `name`.
Scan scan_from(const FloatArray& voxels, const std::vector<double>& origin, const std::vector<double>& spacing,
               const std::vector<double>& direction, const std::string& stored_type, const std::string& name) {
  Scan scan;
  scan.image.grid = grid_from(voxels, origin, spacing, direction);
  scan.image.voxels.assign(voxels.data(), voxels.data() + voxels.size());
  scan.info.path = name;
  scan.info.format = "array";
  scan.info.stored_type = stored_type_named(stored_type);
  return scan;
}

// {"voxels": (nk, nj, ni) float32, "origin", "spacing", "direction" (row-major)}
py::dict image_dict(const Image<float>& image) {
  const Grid<Scanner>& g = image.grid;
  FloatArray voxels({g.size[2], g.size[1], g.size[0]});
  std::copy(image.voxels.begin(), image.voxels.end(), voxels.mutable_data());
  std::vector<double> direction(9);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) direction[static_cast<std::size_t>(3 * r + c)] = g.direction(r, c);
  py::dict d;
  d["voxels"] = voxels;
  d["origin"] = std::vector<double>{g.origin.x(), g.origin.y(), g.origin.z()};
  d["spacing"] = std::vector<double>{g.spacing.x(), g.spacing.y(), g.spacing.z()};
  d["direction"] = direction;
  return d;
}

// Runs between libctarr's heavy steps, GIL released around it: takes the GIL to let Python see Ctrl-C.
void check_python_signals() {
  py::gil_scoped_acquire gil;
  if (PyErr_CheckSignals() != 0) throw py::error_already_set();
}

class PyPipeline {
 public:
  PyPipeline(const std::string& model, const std::string& atlas, const std::string& regions_dir, const std::string& device) {
    PipelineOptions o;
    o.model_path = model;
    o.atlas_dir = atlas;
    o.regions_dir = regions_dir;
    o.device.text = device;
    options_ = with_default_paths(o);
    py::gil_scoped_release release;
    pipeline_ = std::make_unique<Pipeline>(options_);
  }

  std::string model_id() {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    return pipeline_->model_id();
  }
  std::string atlas_id() const { return pipeline_->atlas().id; }
  std::string regions_dir() const { return options_.regions_dir; }

  // `seg`: None (the network), a path (a label map file or a folder of masks), or a Scan holding a label map.
  // Call with the GIL released.
  std::optional<Segmentation> segmentation_of(const std::optional<std::string>& seg_path, const Scan* seg_scan) const {
    if (seg_path) return pipeline_->segmentation_from_labels(*seg_path);
    if (seg_scan)
      return pipeline_->segmentation_from_label_map(label_map_from(seg_scan->image, seg_scan->info.path),
                                                    seg_scan->info.path);
    return std::nullopt;
  }

  // {"regions": [{"region", "crops": [image dict], "record": JSON text}], "fit_dice", "orientation"}
  py::dict crop(const Scan& scan, const std::vector<std::string>& region_names, const CropOptions& options,
                const std::optional<std::string>& seg_path, const Scan* seg_scan, const std::string& case_id) {
    ScanCrops result;
    {
      py::gil_scoped_release release;
      std::vector<Region> regions;
      for (const std::string& r : region_names) regions.push_back(resolve_region(r, options_.regions_dir));
      std::lock_guard<std::mutex> lock(mutex_);
      const std::optional<Segmentation> seg = segmentation_of(seg_path, seg_scan);
      result = crop_scan(*pipeline_, scan, regions, options, seg, case_id, check_python_signals);
    }
    py::list regions;
    for (const RegionCrops& rc : result.regions) {
      py::dict d;
      d["region"] = rc.region;
      py::list crops;
      for (const Image<float>& c : rc.crops) crops.append(image_dict(c));
      d["crops"] = crops;
      d["record"] = crop_record_json(rc.record);
      regions.append(d);
    }
    py::dict out;
    out["regions"] = regions;
    out["fit_dice"] = result.fit.refined.dice;
    out["orientation"] = result.fit.initial.orientation;
    return out;
  }

  // The fit of the scan (network) or of the label map `seg`: Dice, orientation, classes, the 4x4 scanner -> atlas.
  py::dict fit(const Scan* scan, const std::optional<std::string>& seg_path, const Scan* seg_scan) {
    if (!scan && !seg_path && !seg_scan) throw Error(ErrorCode::Usage, "fit needs a scan or a segmentation");
    Fit fit;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);
      const std::optional<Segmentation> seg = segmentation_of(seg_path, seg_scan);
      fit = seg ? pipeline_->fit(*seg) : pipeline_->segment_and_fit(*scan, check_python_signals).fit;
    }
    py::list classes;
    for (int c : fit.initial.classes_seen) classes.append(class_names()[static_cast<std::size_t>(c)]);
    const Eigen::Matrix4d m = fit.scanner_to_atlas.matrix().matrix();
    std::vector<std::vector<double>> rows(4, std::vector<double>(4));
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 4; ++c) rows[static_cast<std::size_t>(r)][static_cast<std::size_t>(c)] = m(r, c);
    py::dict d;
    d["dice"] = fit.refined.dice;
    d["initial_dice"] = fit.refined.initial_dice;
    d["orientation"] = fit.initial.orientation;
    d["orientation_searched"] = fit.initial.searched;
    d["classes_seen"] = classes;
    d["warnings"] = fit.warnings;
    d["warning_codes"] = fit.warning_codes;
    d["scanner_to_atlas"] = rows;  // LPS mm, 4x4
    return d;
  }

  // 19-class label map (uint8 values as float) on the scan's grid or ("3mm") the canonical 3 mm grid, as `ctarr
  // segment` writes it.
  py::dict segment(const Scan& scan, bool all_components, bool mirror_pass, const std::string& grid) {
    if (grid != "scan" && grid != "3mm")
      throw Error(ErrorCode::Usage, "segment: grid must be \"scan\" or \"3mm\", not \"" + grid + "\"");
    LabelMapOptions options;
    options.all_components = all_components;
    options.mirror_pass = mirror_pass;
    options.grid = grid == "3mm" ? LabelGrid::Network : LabelGrid::Scan;
    Image<std::uint8_t> labels;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);
      labels = segment_labels(*pipeline_, scan, options);
    }
    Image<float> f(labels.grid);
    std::copy(labels.voxels.begin(), labels.voxels.end(), f.voxels.begin());
    return image_dict(f);
  }

 private:
  PipelineOptions options_;
  std::unique_ptr<Pipeline> pipeline_;
  std::mutex mutex_;  // one call at a time uses the network (its weights and working memory are shared)
};

}  // namespace

PYBIND11_MODULE(_ctarr, m) {
  m.doc() = "libctarr for Python: use the ctarr package around it (import ctarr).";
  m.attr("__version__") = kVersion;

  static py::exception<Error> error_type(m, "Error");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      const py::object cls = error_type;  // the Python class; calling it makes an instance
      py::object instance = cls(e.what());
      instance.attr("code") = static_cast<int>(e.code());
      PyErr_SetObject(error_type.ptr(), instance.ptr());
    }
  });

  py::class_<CropOptions>(m, "CropOptions")
      .def(py::init<>())
      .def_readwrite("margin_mm", &CropOptions::margin_mm)
      .def_readwrite("pad", &CropOptions::pad)
      .def_readwrite("pad_value", &CropOptions::pad_value)
      .def_property(
          "target_spacing_mm",
          [](const CropOptions& o) -> std::optional<std::vector<double>> {
            if (!o.target_spacing_mm) return std::nullopt;
            return std::vector<double>{o.target_spacing_mm->x(), o.target_spacing_mm->y(), o.target_spacing_mm->z()};
          },
          [](CropOptions& o, const std::optional<std::vector<double>>& v) {
            if (!v) {
              o.target_spacing_mm.reset();
              return;
            }
            if (v->size() != 3 || !((*v)[0] > 0 && (*v)[1] > 0 && (*v)[2] > 0))
              throw Error(ErrorCode::Usage, "target_spacing needs 3 positive numbers (mm)");
            o.target_spacing_mm = Eigen::Vector3d((*v)[0], (*v)[1], (*v)[2]);
          })
      .def_readwrite("z_only", &CropOptions::z_only);

  py::class_<Scan>(m, "Scan")
      .def_property_readonly("path", [](const Scan& s) { return s.info.path; })
      .def_property_readonly("stored_type", [](const Scan& s) { return std::string(to_string(s.info.stored_type)); })
      .def_property_readonly("warnings", [](const Scan& s) { return s.info.warnings; })
      .def("image", [](const Scan& s) { return image_dict(s.image); });

  m.def("read_scan", [](const std::string& path) {
    py::gil_scoped_release release;
    return read_scan(path);
  }, py::arg("path"), "Reads a scan as the CLI does (NIfTI, NRRD, MetaImage, a DICOM file or folder).");
  m.def("scan_from_array", &scan_from, py::arg("voxels"), py::arg("origin"), py::arg("spacing"), py::arg("direction"),
        py::arg("stored_type") = "float32", py::arg("name") = "<array>",
        "A scan from a (nk, nj, ni) float32 array and its LPS grid.");

  py::class_<PyPipeline>(m, "Pipeline")
      .def(py::init<const std::string&, const std::string&, const std::string&, const std::string&>(),
           py::arg("model") = "", py::arg("atlas") = "", py::arg("regions_dir") = "", py::arg("device") = "auto")
      .def_property_readonly("model_id", &PyPipeline::model_id)
      .def_property_readonly("atlas_id", &PyPipeline::atlas_id)
      .def_property_readonly("regions_dir", &PyPipeline::regions_dir)
      .def("crop", &PyPipeline::crop, py::arg("scan"), py::arg("regions"), py::arg("options"),
           py::arg("seg_path") = py::none(), py::arg("seg_scan").none(true) = py::none(), py::arg("case_id") = "")
      .def("segment", &PyPipeline::segment, py::arg("scan"), py::arg("all_components") = false,
           py::arg("mirror_pass") = true, py::arg("grid") = "scan")
      .def("fit", &PyPipeline::fit, py::arg("scan").none(true), py::arg("seg_path") = py::none(),
           py::arg("seg_scan").none(true) = py::none());

  m.def("uncrop", [](const std::string& record_json, const std::vector<FloatArray>& crops, bool labels, float fill) {
    const CropRecord record = parse_crop_record("<record>", record_json);
    std::vector<std::size_t> written;
    for (std::size_t b = 0; b < record.boxes.size(); ++b)
      if (!record.boxes[b].box.misses_scan) written.push_back(b);
    if (crops.size() != written.size())
      throw Error(ErrorCode::Usage, "the record has " + std::to_string(written.size()) +
                                        " written box(es); give one crop per box in the record's order (" +
                                        std::to_string(crops.size()) + " given)");
    std::vector<Image<float>> images;
    for (std::size_t n = 0; n < crops.size(); ++n) {
      const FloatArray& a = crops[n];
      if (a.ndim() != 3) throw Error(ErrorCode::UnsupportedGeometry, "crop " + std::to_string(n) + " is not 3D");
      const IndexBox& range = record.written_range(written[n]);
      Image<float> img(subgrid(record.input_grid, range));
      if (a.shape(0) != img.grid.size[2] || a.shape(1) != img.grid.size[1] || a.shape(2) != img.grid.size[0])
        throw Error(ErrorCode::UnsupportedGeometry, "crop " + std::to_string(n) + " does not have its box's size");
      std::copy(a.data(), a.data() + a.size(), img.voxels.begin());
      images.push_back(std::move(img));
    }
    Image<float> canvas(record.input_grid, fill);
    {
      py::gil_scoped_release release;
      for (std::size_t n = 0; n < images.size(); ++n)
        uncrop_into(images[n], record.written_range(written[n]),
                    labels ? UncropInterpolation::Nearest : UncropInterpolation::Linear, canvas);
    }
    return image_dict(canvas);
  }, py::arg("record_json"), py::arg("crops"), py::arg("labels") = false, py::arg("fill") = 0.0f);
}
