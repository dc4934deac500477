// Issue 7: the catalogue of bad and odd inputs, through the real binary (docs/RELIABILITY.md lists every case,
// these and the ones tested elsewhere). Each case checks the exit code, that the message names the file and the
// problem, that no partial output is left (no image, no temporary file, no record unless the case writes one), and
// that the input was opened read-only: same checksum and mtime after the run.
#include "ctarr/atlas.hpp"
#include "ctarr/io.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>

#include <sys/mount.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace ctarr::test {
namespace {

namespace fs = std::filesystem;

// ---- helpers ---------------------------------------------------------------------------------------------------

std::vector<char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

template <class T>
void put(std::vector<char>& bytes, std::size_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof(T));
}

// A hand-written NIfTI-1 header (little endian, 352 bytes incl. the extension flag), float32 voxels, RAS sform.
std::vector<char> nifti_header(const std::vector<short>& dims, std::array<std::array<float, 4>, 3> srow = {{{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}}}) {
  std::vector<char> h(352, 0);
  put<int>(h, 0, 348);
  put<short>(h, 40, static_cast<short>(dims.size()));
  for (std::size_t d = 0; d < 7; ++d) put<short>(h, 42 + 2 * d, d < dims.size() ? dims[d] : short{1});
  put<short>(h, 70, 16);
  put<short>(h, 72, 32);
  for (std::size_t k = 0; k < 8; ++k) put<float>(h, 76 + 4 * k, 1.0f);
  put<float>(h, 108, 352.0f);
  h[123] = 2;
  put<short>(h, 254, 1);
  for (std::size_t r = 0; r < 3; ++r)
    for (std::size_t c = 0; c < 4; ++c) put<float>(h, 280 + 16 * r + 4 * c, srow[r][c]);
  std::memcpy(h.data() + 344, "n+1\0", 4);
  return h;
}

Image<float> volume(const Index3& size, float value, double spacing = 3.0) {
  Grid<Scanner> g;
  g.size = size;
  g.spacing = Eigen::Vector3d::Constant(spacing);
  return Image<float>(g, value);
}

// Checksum (FNV-1a) and mtime of every file under `path` (a file or a folder): the inputs must not change.
std::map<std::string, std::pair<std::uint64_t, fs::file_time_type>> snapshot(const std::string& path) {
  std::map<std::string, std::pair<std::uint64_t, fs::file_time_type>> s;
  std::vector<fs::path> files;
  if (fs::is_directory(path)) {
    for (const auto& e : fs::recursive_directory_iterator(path))
      if (e.is_regular_file()) files.push_back(e.path());
  } else if (fs::exists(path)) {
    files.push_back(path);
  }
  for (const fs::path& f : files) {
    std::uint64_t h = 1469598103934665603ull;
    for (char c : read_bytes(f.string())) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    s[f.string()] = {h, fs::last_write_time(f)};
  }
  return s;
}

// Files under `dir` (names), empty when it does not exist.
std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> names;
  if (!fs::is_directory(dir)) return names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x + " ";
  return s;
}

// A scan the fit recognises, and its label map: the shipped atlas' hard labels subsampled to 6 mm, HU 40 inside
// the organs (bone classes 700), -1000 elsewhere. `hu` maps each voxel's HU to what the case needs.
struct FitFixture {
  Image<float> ct;
  Image<std::uint8_t> labels;
};

const FitFixture& fit_fixture() {
  static const FitFixture f = [] {
    const AtlasModel atlas = load_atlas(repo_dir() + "/atlas");
    const auto& m = atlas.masks;
    Grid<Scanner> g;
    for (int a = 0; a < 3; ++a) g.size[a] = (m.grid.size[a] + 1) / 2;
    g.origin = m.grid.origin;
    g.spacing = m.grid.spacing * 2.0;
    g.direction = m.grid.direction;
    FitFixture out{Image<float>(g, -1000.0f), Image<std::uint8_t>(g, 0)};
    const std::size_t n = static_cast<std::size_t>(m.grid.voxels());
    for (std::int64_t k = 0; k < g.size[2]; ++k)
      for (std::int64_t j = 0; j < g.size[1]; ++j)
        for (std::int64_t i = 0; i < g.size[0]; ++i) {
          const std::size_t src = static_cast<std::size_t>(m.grid.linear(Index3{{2 * i, 2 * j, 2 * k}}));
          float best = 0.5f;
          int label = 0;
          for (int c = 0; c < m.channels; ++c)
            if (m.data[static_cast<std::size_t>(c) * n + src] >= best) {
              best = m.data[static_cast<std::size_t>(c) * n + src];
              label = c + 1;
            }
          const Index3 idx{{i, j, k}};
          out.labels.at(idx) = static_cast<std::uint8_t>(label);
          out.ct.at(idx) = label == 0 ? -1000.0f : (label <= 9 ? 700.0f : 40.0f);
        }
    return out;
  }();
  return f;
}

// Mounts a tmpfs of `size` on `dir` (read-only when asked); nullopt when not permitted (not root, no CAP_SYS_ADMIN).
struct Mount {
  std::string dir;
  ~Mount() {
    if (!dir.empty()) ::umount2(dir.c_str(), MNT_DETACH);
  }
};
std::vector<std::unique_ptr<Mount>>& mounts() {
  static std::vector<std::unique_ptr<Mount>> m;
  return m;
}
bool mount_tmpfs(const std::string& dir, const std::string& options, unsigned long flags = 0) {
  fs::create_directories(dir);
  if (::mount("tmpfs", dir.c_str(), "tmpfs", flags, options.c_str()) != 0) {
    std::cout << "skipped: cannot mount a tmpfs on " << dir << " (" << std::strerror(errno) << ")\n";
    return false;
  }
  mounts().push_back(std::make_unique<Mount>());
  mounts().back()->dir = dir;
  return true;
}

// ---- one case --------------------------------------------------------------------------------------------------

struct CaseSetup {
  std::string input;                 // file or folder given to `ctarr crop`
  std::string args;                  // extra arguments (--seg, --region, --model, -o ...)
  std::string out_dir;               // where outputs would go
  std::vector<std::string> expected; // fragments the output must contain (message naming the problem)
  bool names_input = true;           // the message must name the input path
  std::string shell_prefix;          // e.g. "ulimit -v 3000000; "
  std::vector<std::string> allowed_outputs;  // files the case may write (the records of a missed region...)
};

struct Case {
  std::string name;
  int exit_code;
  std::function<std::optional<CaseSetup>(const TempDir&)> make;  // nullopt: skipped (reason printed by make)
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class BadInputCatalogue : public ::testing::TestWithParam<Case> {};

TEST_P(BadInputCatalogue, DocumentedExitCodeClearMessageNoPartialOutputInputUntouched) {
  TempDir dir;
  const std::optional<CaseSetup> setup = GetParam().make(dir);
  if (!setup) GTEST_SKIP() << "skipped: see the message above (shared data absent or mounting not permitted)";
  const std::string out_dir = setup->out_dir.empty() ? dir.file("out") : setup->out_dir;
  const auto before = snapshot(setup->input);
  std::string out;
  const std::string command = setup->shell_prefix + ctarr_binary() + " crop --device cpu " +
                              (setup->args.find("--region") == std::string::npos ? "--region liver " : "") +
                              setup->args + " -o " + out_dir + " " + setup->input;
  const int code = run_command(command, &out);
  EXPECT_EQ(code, GetParam().exit_code) << command << "\n" << out;
  if (GetParam().exit_code != 0) {
    EXPECT_NE(out.find("error"), std::string::npos) << out;
    if (setup->names_input) {
      EXPECT_NE(out.find(setup->input), std::string::npos) << "must name the input:\n" << out;
    }
  }
  for (const std::string& e : setup->expected) EXPECT_NE(out.find(e), std::string::npos) << "missing \"" << e << "\":\n" << out;
  // No partial output: nothing but what the case allows (a successful crop writes its image and record).
  for (const std::string& f : files_in(out_dir)) {
    const bool allowed = std::find(setup->allowed_outputs.begin(), setup->allowed_outputs.end(), f) != setup->allowed_outputs.end();
    EXPECT_TRUE(allowed) << "unexpected output " << f << " in " << joined(files_in(out_dir));
  }
  for (const std::string& f : setup->allowed_outputs)
    if (GetParam().exit_code == 0) {
      EXPECT_TRUE(fs::exists(out_dir + "/" + f)) << f << " not written:\n" << out;
    }
  // Inputs opened read-only: same bytes, same mtime.
  EXPECT_EQ(snapshot(setup->input), before) << "the input was modified";
  mounts().clear();  // unmount before the temporary folder goes
}

// ---- the cases ---------------------------------------------------------------------------------------------------

std::optional<std::string> data_or_skip(const std::string& sub) {
  const auto data = shared_data_dir();
  if (!data) {
    std::cout << "skipped: ../shared/data not found\n";
    return std::nullopt;
  }
  return *data + "/" + sub;
}

CaseSetup crop_of(const std::string& input, const std::string& args, std::vector<std::string> expected) {
  CaseSetup s;
  s.input = input;
  s.args = args;
  s.expected = std::move(expected);
  return s;
}

const std::vector<Case>& cases() {
  static const std::vector<Case> c{
      // ---- NIfTI ----
      {"nifti_wrong_magic", 3,
       [](const TempDir& d) -> std::optional<CaseSetup> {
         std::vector<char> b = nifti_header({8, 8, 8});
         std::memcpy(b.data() + 344, "xyz\0", 4);
         b.resize(b.size() + 8 * 8 * 8 * 4, 0);
         write_bytes(d.file("magic.nii"), b);
         return crop_of(d.file("magic.nii"), "", {});
       }},
      {"nifti_header_truncated", 3,
       [](const TempDir& d) -> std::optional<CaseSetup> {
         std::vector<char> b = nifti_header({8, 8, 8});
         b.resize(200);
         write_bytes(d.file("short.nii"), b);
         return crop_of(d.file("short.nii"), "", {});
       }},
      {"nifti_dims_exceed_data", 3,
       [](const TempDir& d) -> std::optional<CaseSetup> {
         // The header declares 64^3 voxels, the file holds 8^3: truncated, refused (niftilib would zero-fill).
         write_image(volume({{8, 8, 8}}, 0.0f), d.file("small.nii"));
         std::vector<char> b = read_bytes(d.file("small.nii"));
         for (std::size_t a = 0; a < 3; ++a) put<short>(b, 42 + 2 * a, 64);
         write_bytes(d.file("lying.nii"), b);
         return crop_of(d.file("lying.nii"), "", {"truncated"});
       }},
      {"nifti_gz_dims_exceed_data", 3,
       [](const TempDir& d) -> std::optional<CaseSetup> {
         write_image(volume({{8, 8, 8}}, 0.0f), d.file("small.nii"));
         std::vector<char> b = read_bytes(d.file("small.nii"));
         for (std::size_t a = 0; a < 3; ++a) put<short>(b, 42 + 2 * a, 64);
         write_bytes(d.file("lying.nii"), b);
         run_command("gzip -c " + d.file("lying.nii") + " > " + d.file("lying.nii.gz"));
         return crop_of(d.file("lying.nii.gz"), "", {"truncated"});
       }},
      {"nifti_sheared_direction", 4,
       [](const TempDir& d) -> std::optional<CaseSetup> {
         std::vector<char> b = nifti_header({8, 8, 8}, {{{1, 0.4f, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}}});
         b.resize(b.size() + 8 * 8 * 8 * 4, 0);
         write_bytes(d.file("shear.nii"), b);
         return crop_of(d.file("shear.nii"), "", {"orthonormal"});
       }},
      {"nifti_absurd_dims_no_giant_allocation", 3,
       [](const TempDir& d) -> std::optional<CaseSetup> {
         // 1500 x 1500 x 800 float32 = 7.2 GB declared (under 2^31 voxels), 1 KB present. Under a 3 GB address
         // space limit, allocating before checking the file would fail with "not enough memory" instead.
         std::vector<char> b = nifti_header({1500, 1500, 800});
         b.resize(b.size() + 1024, 0);
         write_bytes(d.file("huge.nii"), b);
         run_command("gzip -c " + d.file("huge.nii") + " > " + d.file("huge.nii.gz"));
         CaseSetup s = crop_of(d.file("huge.nii.gz"), "", {"truncated"});
         s.shell_prefix = "ulimit -v 3000000; ";
         return s;
       }},
      {"nifti_absurd_dims_uncompressed", 3,
       [](const TempDir& d) -> std::optional<CaseSetup> {
         std::vector<char> b = nifti_header({1500, 1500, 800});
         b.resize(b.size() + 1024, 0);
         write_bytes(d.file("huge.nii"), b);
         CaseSetup s = crop_of(d.file("huge.nii"), "", {"truncated"});
         s.shell_prefix = "ulimit -v 3000000; ";
         return s;
       }},
      {"nrrd_dimension_product_overflows", 3,
       [](const TempDir& d) -> std::optional<CaseSetup> {
         // 3037000500^3 overflows 64 bits.
         std::ofstream(d.file("overflow.nrrd"))
             << "NRRD0004\ntype: float\ndimension: 3\nsizes: 3037000500 3037000500 3037000500\nspacings: 1 1 1\n"
                "encoding: raw\nendian: little\n\n"
             << std::string(64, '\0');
         return crop_of(d.file("overflow.nrrd"), "", {});
       }},
      {"nrrd_raw_data_shorter_than_declared", 3,
       [](const TempDir& d) -> std::optional<CaseSetup> {
         // 1500 x 1500 x 800 floats (7.2 GB) declared, 1 KiB present: refused before ITK allocates the buffer
         // (the address-space limit makes an early allocation fail the test).
         std::ofstream(d.file("short.nrrd"))
             << "NRRD0004\ntype: float\ndimension: 3\nsizes: 1500 1500 800\nspacings: 1 1 1\n"
                "encoding: raw\nendian: little\n\n"
             << std::string(1024, '\0');
         CaseSetup s = crop_of(d.file("short.nrrd"), "", {"truncated"});
         s.shell_prefix = "ulimit -v 3000000; ";
         return s;
       }},
      {"nrrd_detached_data_file_short", 3,
       [](const TempDir& d) -> std::optional<CaseSetup> {
         std::ofstream(d.file("detached.nhdr"))
             << "NRRD0004\ntype: float\ndimension: 3\nsizes: 1500 1500 800\nspacings: 1 1 1\n"
                "encoding: raw\nendian: little\ndata file: detached.raw\n";
         std::ofstream(d.file("detached.raw")) << std::string(4096, '\0');
         CaseSetup s = crop_of(d.file("detached.nhdr"), "", {"truncated"});
         s.shell_prefix = "ulimit -v 3000000; ";
         return s;
       }},
      {"one_voxel_thick_volume", 6,
       [](const TempDir& d) -> std::optional<CaseSetup> {
         // One axial slice of the fitting scan, with its labels: read, then refused by the fit with a clear
         // message (no anatomy is a quarter present in one slice), never a crash or a blind crop.
         const FitFixture& f = fit_fixture();
         Grid<Scanner> g = f.ct.grid;
         g.size[2] = 1;
         g.origin = f.ct.grid.to_world(Index3{{0, 0, f.ct.grid.size[2] / 2}}).mm;
         Image<float> ct(g, 0.0f);
         Image<std::uint8_t> labels(g, 0);
         for (std::int64_t j = 0; j < g.size[1]; ++j)
           for (std::int64_t i = 0; i < g.size[0]; ++i) {
             ct.at(Index3{{i, j, 0}}) = f.ct.at(Index3{{i, j, f.ct.grid.size[2] / 2}});
             labels.at(Index3{{i, j, 0}}) = f.labels.at(Index3{{i, j, f.ct.grid.size[2] / 2}});
           }
         write_image(ct, d.file("slice.nii.gz"));
         write_image(labels, d.file("slice_seg.nii.gz"));
         CaseSetup s = crop_of(d.file("slice.nii.gz"), "--seg " + d.file("slice_seg.nii.gz"), {d.file("slice_seg.nii.gz")});
         s.names_input = false;  // the message names the label map the anatomy was looked for in
         return s;
       }},
      // ---- intensities and anatomy (full pipeline) ----
      {"nan_and_inf_voxels_are_replaced_with_a_warning", 0,
       [](const TempDir& d) -> std::optional<CaseSetup> {
         FitFixture f = fit_fixture();
         f.ct.voxels[0] = std::numeric_limits<float>::quiet_NaN();
         f.ct.voxels[1] = std::numeric_limits<float>::infinity();
         write_image(f.ct, d.file("nan.nii.gz"));
         write_image(f.labels, d.file("nan_seg.nii.gz"));
         CaseSetup s = crop_of(d.file("nan.nii.gz"), "--seg " + d.file("nan_seg.nii.gz"), {"NaN/infinite voxel(s) replaced"});
         s.allowed_outputs = {"nan_liver.json", "nan_liver.nii.gz"};
         return s;
       }},
      {"mr_like_intensities_warn_but_crop_with_seg", 0,
       [](const TempDir& d) -> std::optional<CaseSetup> {
         FitFixture f = fit_fixture();
         for (float& v : f.ct.voxels) v = v + 1000.0f;  // 0 .. 1700: no air, like an MR or an unrescaled CT
         write_image(f.ct, d.file("mr.nii.gz"));
         write_image(f.labels, d.file("mr_seg.nii.gz"));
         CaseSetup s = crop_of(d.file("mr.nii.gz"), "--seg " + d.file("mr_seg.nii.gz"), {"Hounsfield"});
         s.allowed_outputs = {"mr_liver.json", "mr_liver.nii.gz"};
         return s;
       }},
      {"all_air_volume_network_path", 6,
       [](const TempDir& d) -> std::optional<CaseSetup> {
         write_image(volume({{40, 40, 40}}, -1000.0f), d.file("air.nii.gz"));
         return crop_of(d.file("air.nii.gz"), "", {"no body in the scan"});
       }},
      {"all_air_volume_empty_seg", 6,
       [](const TempDir& d) -> std::optional<CaseSetup> {
         write_image(volume({{40, 40, 40}}, -1000.0f), d.file("air.nii.gz"));
         Image<std::uint8_t> empty(volume({{40, 40, 40}}, 0.0f).grid, 0);
         write_image(empty, d.file("air_seg.nii.gz"));
         CaseSetup s = crop_of(d.file("air.nii.gz"), "--seg " + d.file("air_seg.nii.gz"), {});
         s.names_input = false;  // the message names the label map, the source of "no anatomy"
         s.expected = {d.file("air_seg.nii.gz")};
         return s;
       }},
      {"no_recognisable_anatomy", 6,
       [](const TempDir& d) -> std::optional<CaseSetup> {
         // A water phantom (a body, no organs) with an empty segmentation.
         Image<float> v = volume({{40, 40, 40}}, -1000.0f);
         for (std::int64_t k = 5; k < 35; ++k)
           for (std::int64_t j = 5; j < 35; ++j)
             for (std::int64_t i = 5; i < 35; ++i) v.at(Index3{{i, j, k}}) = 0.0f;
         write_image(v, d.file("water.nii.gz"));
         write_image(Image<std::uint8_t>(v.grid, 0), d.file("water_seg.nii.gz"));
         CaseSetup s = crop_of(d.file("water.nii.gz"), "--seg " + d.file("water_seg.nii.gz"), {"no anatomy recognised", d.file("water_seg.nii.gz")});
         s.names_input = false;
         return s;
       }},
      // ---- DICOM ----
      {"dicom_empty_folder", 3,
       [](const TempDir& d) -> std::optional<CaseSetup> {
         fs::create_directories(d.file("empty_series"));
         return crop_of(d.file("empty_series"), "", {"empty"});
       }},
      {"dicom_only_a_localizer", 3,
       [](const TempDir& d) -> std::optional<CaseSetup> {
         const auto src = data_or_skip("dicom/variants/multi_series_one_folder/surview_localizer.dcm");
         if (!src) return std::nullopt;
         fs::create_directories(d.file("localizer_only"));
         fs::copy_file(*src, d.file("localizer_only/surview_localizer.dcm"));
         return crop_of(d.file("localizer_only"), "", {"no CT series"});
       }},
      // ---- regions ----
      {"region_json_malformed", 3,
       [](const TempDir& d) -> std::optional<CaseSetup> {
         write_image(volume({{8, 8, 8}}, 0.0f), d.file("in.nii.gz"));
         std::ofstream(d.file("bad_region.json")) << "{\"name\": \"x\", \"boxes\": [";
         CaseSetup s = crop_of(d.file("in.nii.gz"), "--region " + d.file("bad_region.json"), {d.file("bad_region.json"), "malformed"});
         s.names_input = false;
         return s;
       }},
      {"region_box_lower_above_upper", 3,
       [](const TempDir& d) -> std::optional<CaseSetup> {
         write_image(volume({{8, 8, 8}}, 0.0f), d.file("in.nii.gz"));
         std::ofstream(d.file("inverted.json"))
             << R"({"name":"inverted","boxes":[{"lower":[0,0,10],"upper":[10,10,0]}]})";
         CaseSetup s = crop_of(d.file("in.nii.gz"), "--region " + d.file("inverted.json"), {d.file("inverted.json"), "lower > upper"});
         s.names_input = false;
         return s;
       }},
      {"region_name_with_a_path_is_refused", 3,
       [](const TempDir& d) -> std::optional<CaseSetup> {
         // The name goes into output file names: "../escape" would write outside the output folder.
         write_image(volume({{8, 8, 8}}, 0.0f), d.file("in.nii.gz"));
         std::ofstream(d.file("escape.json")) << R"({"name":"../escape","boxes":[{"lower":[0,0,0],"upper":[10,10,10]}]})";
         CaseSetup s = crop_of(d.file("in.nii.gz"), "--region " + d.file("escape.json"), {d.file("escape.json"), "name"});
         s.names_input = false;
         return s;
       }},
      {"region_made_on_another_atlas_is_refused", 5,
       [](const TempDir& d) -> std::optional<CaseSetup> {
         // Boxes are millimetres of the atlas they were inferred on: used with another atlas they would land
         // elsewhere in the body without any error.
         write_image(volume({{8, 8, 8}}, 0.0f), d.file("in.nii.gz"));
         std::ofstream(d.file("stale.json"))
             << R"({"name":"stale","boxes":[{"lower":[0,0,0],"upper":[10,10,10]}],)"
             << R"("provenance":{"atlas_id":"ctarr-atlas-000000000000"}})";
         CaseSetup s = crop_of(d.file("in.nii.gz"), "--region " + d.file("stale.json"),
                               {d.file("stale.json"), "ctarr-atlas-000000000000", "infer-region"});
         s.names_input = false;
         return s;
       }},
      // ---- model ----
      {"model_file_truncated", 5,
       [](const TempDir& d) -> std::optional<CaseSetup> {
         fs::create_directories(d.file("model"));
         std::vector<char> w = read_bytes(repo_dir() + "/models/ctarr-unet.safetensors");
         w.resize(w.size() / 3);
         write_bytes(d.file("model/m.safetensors"), w);
         fs::copy_file(repo_dir() + "/models/ctarr-unet.json", d.file("model/m.json"));
         FitFixture f = fit_fixture();
         write_image(f.ct, d.file("ct.nii.gz"));
         CaseSetup s = crop_of(d.file("ct.nii.gz"), "--model " + d.file("model/m.safetensors"), {d.file("model/m.safetensors")});
         s.names_input = false;
         return s;
       }},
      // ---- output ----
      {"output_folder_read_only", 7,
       [](const TempDir& d) -> std::optional<CaseSetup> {
         // Root ignores permission bits; a read-only mount stops it.
         if (!mount_tmpfs(d.file("ro"), "size=1m", MS_RDONLY)) return std::nullopt;
         FitFixture f = fit_fixture();
         write_image(f.ct, d.file("ct.nii.gz"));
         write_image(f.labels, d.file("ct_seg.nii.gz"));
         CaseSetup s = crop_of(d.file("ct.nii.gz"), "--seg " + d.file("ct_seg.nii.gz"), {"not writable"});
         s.out_dir = d.file("ro");
         s.names_input = false;
         return s;
       }},
      {"output_disk_full", 7,
       [](const TempDir& d) -> std::optional<CaseSetup> {
         // A 64 KiB tmpfs: the record fits, the crop does not. The error names the file; no temporary is left.
         if (!mount_tmpfs(d.file("full"), "size=64k")) return std::nullopt;
         FitFixture f = fit_fixture();
         for (std::size_t n = 0; n < f.ct.voxels.size(); ++n) f.ct.voxels[n] += static_cast<float>(n % 97);  // incompressible-ish
         write_image(f.ct, d.file("ct.nii"));
         write_image(f.labels, d.file("ct_seg.nii.gz"));
         CaseSetup s = crop_of(d.file("ct.nii"), "--format .nii --seg " + d.file("ct_seg.nii.gz"), {"ct_liver"});
         s.out_dir = d.file("full");
         s.names_input = false;
         return s;
       }},
      {"successful_crop_leaves_the_input_untouched", 0,
       [](const TempDir& d) -> std::optional<CaseSetup> {
         const FitFixture& f = fit_fixture();
         write_image(f.ct, d.file("ok.nii.gz"));
         write_image(f.labels, d.file("ok_seg.nii.gz"));
         CaseSetup s = crop_of(d.file("ok.nii.gz"), "--seg " + d.file("ok_seg.nii.gz"), {});
         s.allowed_outputs = {"ok_liver.json", "ok_liver.nii.gz"};
         return s;
       }},
  };
  return c;
}

INSTANTIATE_TEST_SUITE_P(Cases, BadInputCatalogue, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

}  // namespace
}  // namespace ctarr::test
