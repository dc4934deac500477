// ctarr — reading and writing images. ITK and GDCM stay behind detail/itk_bridge.hpp; this file turns the bridge's
// plain structs into ctarr::Image, validates geometry and makes writes atomic.
#include "ctarr/io.hpp"

#include "detail/itk_bridge.hpp"
#include "parallel.hpp"
#include "temp_files.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <optional>
#include <sstream>
#include <system_error>
#include <type_traits>
#include <unistd.h>

namespace ctarr {

namespace fs = std::filesystem;
using detail::ComponentType;
using detail::RawGeometry;
using detail::RawImage;

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

const std::vector<std::string>& readable_extensions() {
  static const std::vector<std::string> exts{".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"};
  return exts;
}

// The image extension of `path` as written (".nii.gz", ...), or "" when it has none ctarr knows.
std::string image_extension(const std::string& path) {
  const std::string l = lower(path);
  for (const std::string& e : readable_extensions())
    if (ends_with(l, e)) return path.substr(path.size() - e.size());
  return "";
}

// ---- geometry conversion ---------------------------------------------------------------------------------

Grid<Scanner> to_grid(const RawGeometry& g) {
  Grid<Scanner> grid;
  for (int a = 0; a < 3; ++a) {
    const auto u = static_cast<std::size_t>(a);
    grid.size[a] = g.size[u];
    grid.origin[a] = g.origin[u];
    grid.spacing[a] = g.spacing[u];
    for (int r = 0; r < 3; ++r) grid.direction(r, a) = g.direction[static_cast<std::size_t>(3 * r + a)];
  }
  return grid;
}

RawGeometry to_raw(const Grid<Scanner>& grid) {
  RawGeometry g;
  for (int a = 0; a < 3; ++a) {
    const auto u = static_cast<std::size_t>(a);
    g.size[u] = grid.size[a];
    g.origin[u] = grid.origin[a];
    g.spacing[u] = grid.spacing[a];
    for (int r = 0; r < 3; ++r) g.direction[static_cast<std::size_t>(3 * r + a)] = grid.direction(r, a);
  }
  return g;
}

// ---- checks on input -------------------------------------------------------------------------------------

void require_exists(const std::string& path) {
  std::error_code ec;
  if (path.empty()) throw Error(ErrorCode::UnreadableInput, "empty input path");
  if (!fs::exists(path, ec)) throw Error(ErrorCode::UnreadableInput, path + ": no such file or folder");
}

void require_file(const std::string& path, const char* what) {
  require_exists(path);
  std::error_code ec;
  if (fs::is_directory(path, ec))
    throw Error(ErrorCode::UnreadableInput,
                path + ": is a folder; " + what + " must be an image file (.nii.gz, .nii, .nrrd, .mha)");
}

std::string index_string(const Grid<Scanner>& grid, std::size_t linear) {
  const auto nx = static_cast<std::size_t>(grid.size[0]), ny = static_cast<std::size_t>(grid.size[1]);
  std::ostringstream os;
  os << '(' << linear % nx << ", " << (linear / nx) % ny << ", " << linear / (nx * ny) << ')';
  return os.str();
}

std::optional<PixelType> pixel_type_of(ComponentType t) {
  switch (t) {
    case ComponentType::UInt8: return PixelType::UInt8;
    case ComponentType::Int8: return PixelType::Int8;
    case ComponentType::UInt16: return PixelType::UInt16;
    case ComponentType::Int16: return PixelType::Int16;
    case ComponentType::UInt32: return PixelType::UInt32;
    case ComponentType::Int32: return PixelType::Int32;
    case ComponentType::Float32: return PixelType::Float32;
    case ComponentType::Float64: return PixelType::Float64;
    case ComponentType::UInt64:
    case ComponentType::Int64: return std::nullopt;
  }
  return std::nullopt;
}

std::pair<double, double> range_of(PixelType t) {
  switch (t) {
    case PixelType::UInt8: return {0.0, 255.0};
    case PixelType::Int8: return {-128.0, 127.0};
    case PixelType::UInt16: return {0.0, 65535.0};
    case PixelType::Int16: return {-32768.0, 32767.0};
    case PixelType::UInt32: return {0.0, 4294967295.0};
    case PixelType::Int32: return {-2147483648.0, 2147483647.0};
    case PixelType::Float32: return {-std::numeric_limits<float>::max(), std::numeric_limits<float>::max()};
    case PixelType::Float64: return {-std::numeric_limits<double>::max(), std::numeric_limits<double>::max()};
  }
  return {0.0, 0.0};
}

// What read_scan needs to know of the voxels, from one pass over them on every worker thread (a 512 x 512 x 300 CT
// is 79 M voxels; four separate passes took about 0.4 s of its 1.4 s read).
struct VoxelStats {
  std::size_t count = 0, non_finite = 0;
  float lowest_finite = std::numeric_limits<float>::max();
  float highest_finite = std::numeric_limits<float>::lowest();
  bool integral = true;  // every finite value is a whole number
  std::size_t body = 0, air = 0;

  void merge(const VoxelStats& o) {
    count += o.count;
    non_finite += o.non_finite;
    lowest_finite = std::min(lowest_finite, o.lowest_finite);
    highest_finite = std::max(highest_finite, o.highest_finite);
    integral = integral && o.integral;
    body += o.body;
    air += o.air;
  }
};

VoxelStats voxel_stats(const std::vector<float>& values) {
  constexpr std::int64_t kChunk = 1 << 20;
  const auto n = static_cast<std::int64_t>(values.size());
  const std::int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<VoxelStats> parts(static_cast<std::size_t>(chunks));
  parallel_for(chunks, [&](std::int64_t c) {
    VoxelStats st;  // local: the parts share cache lines, and the float fields may alias v for the compiler
    const float* v = values.data() + c * kChunk;
    const std::int64_t m = std::min(kChunk, n - c * kChunk);
    st.count = static_cast<std::size_t>(m);
    for (std::int64_t i = 0; i < m; ++i) {
      const float x = v[i];
      if (!std::isfinite(x)) {
        ++st.non_finite;
        continue;
      }
      st.lowest_finite = std::min(st.lowest_finite, x);
      st.highest_finite = std::max(st.highest_finite, x);
      // whole number: every float from 2^23 up is one; below, the int32 round trip (cvttss2si, not a libm call:
      // std::nearbyint here made this pass 4x slower)
      const bool whole = std::fabs(x) >= 8388608.0f || static_cast<float>(static_cast<std::int32_t>(x)) == x;
      st.integral = st.integral && whole;
      st.body += x > kBodyThresholdHu;
      st.air += x < kAirThresholdHu;
    }
    parts[static_cast<std::size_t>(c)] = st;
  });
  VoxelStats all;
  for (const VoxelStats& part : parts) all.merge(part);
  return all;
}

// The on-disk type when it still holds every (scaled) value exactly; else the smallest of int16/int32 that
// does; else float32. `stats`: of the values, all finite.
PixelType choose_stored_type(ComponentType declared, const VoxelStats& stats) {
  const std::optional<PixelType> candidate = pixel_type_of(declared);
  if (candidate == PixelType::Float32 || candidate == PixelType::Float64) return *candidate;
  if (!stats.integral) return PixelType::Float32;
  const double lo = stats.count ? static_cast<double>(stats.lowest_finite) : 0.0;
  const double hi = stats.count ? static_cast<double>(stats.highest_finite) : 0.0;
  auto fits = [&](PixelType t) {
    const auto [min, max] = range_of(t);
    return lo >= min && hi <= max;
  };
  if (candidate && fits(*candidate)) return *candidate;
  for (PixelType t : {PixelType::Int16, PixelType::Int32})
    if (fits(t)) return t;
  return PixelType::Float32;
}

// Replaces NaN/Inf by the smallest finite value; returns a warning, or "" when every value was finite.
std::string replace_non_finite(std::vector<float>& values, const VoxelStats& stats, const std::string& path) {
  if (stats.non_finite == 0) return "";
  if (stats.non_finite == values.size())
    throw Error(ErrorCode::UnreadableInput, path + ": every voxel is NaN or infinite");
  const float lowest = stats.lowest_finite;
  for (float& v : values)
    if (!std::isfinite(v)) v = lowest;
  return std::to_string(stats.non_finite) + " NaN/infinite voxel(s) replaced by the minimum finite value " +
         std::to_string(lowest);
}

IntensityCheck intensity_check(const VoxelStats& stats) {
  IntensityCheck c;
  if (stats.count == 0 || stats.non_finite == stats.count) return c;
  c.min_value = stats.lowest_finite;
  c.max_value = stats.highest_finite;
  const auto n = static_cast<double>(stats.count);
  // non-finite voxels are read as the lowest finite value (read_scan replaces them so)
  const bool lowest_is_air = stats.lowest_finite < kAirThresholdHu;
  const bool lowest_is_body = stats.lowest_finite > kBodyThresholdHu;
  c.body_fraction = static_cast<double>(stats.body + (lowest_is_body ? stats.non_finite : 0)) / n;
  c.air_fraction = static_cast<double>(stats.air + (lowest_is_air ? stats.non_finite : 0)) / n;
  if (c.air_fraction < kMinAirFraction)
    c.warning = "the intensities (" + std::to_string(c.min_value) + " to " + std::to_string(c.max_value) +
                ") do not look like CT in Hounsfield units: no air below " +
                std::to_string(static_cast<int>(kAirThresholdHu)) +
                " HU. An MR or PET image, or a CT without its rescale slope/intercept? The network expects HU";
  return c;
}

// ---- atomic writes ---------------------------------------------------------------------------------------

// Writes through `write_to` into a temporary file beside `path` (same folder, same extension), then renames it
// onto `path`. On any failure the temporary file is removed and OutputNotWritable names `path`.
void write_atomically(const std::string& path, const std::string& extension,
                      const std::function<void(const std::string&)>& write_to) {
  if (path.empty()) throw Error(ErrorCode::OutputNotWritable, "empty output path");
  const fs::path target(path);
  const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  if (!fs::is_directory(folder, ec))
    throw Error(ErrorCode::OutputNotWritable,
                path + ": cannot write: the output folder " + folder.string() + " does not exist" +
                    (fs::exists(folder, ec) ? " (it is a file)" : "") + "; create it first");
  if (fs::is_directory(target, ec))
    throw Error(ErrorCode::OutputNotWritable, path + ": cannot write: a folder of that name exists");
  if (::access(folder.c_str(), W_OK | X_OK) != 0)
    throw Error(ErrorCode::OutputNotWritable,
                path + ": cannot write in the folder " + folder.string() + ": " + std::strerror(errno));

  static std::atomic<unsigned> counter{0};
  std::string name = target.filename().string();
  const std::string stem = name.substr(0, name.size() - extension.size());
  const fs::path tmp = folder / ("." + stem + ".tmp" + std::to_string(::getpid()) + "_" +
                                 std::to_string(counter.fetch_add(1)) + extension);
  auto cleanup = [&] {
    std::error_code ignored;
    fs::remove(tmp, ignored);
  };
  const TempFileGuard in_flight(tmp.c_str());  // a second SIGINT/SIGTERM removes it (batch.cpp)
  try {
    write_to(tmp.string());
    if (!fs::is_regular_file(tmp, ec))
      throw Error(ErrorCode::OutputNotWritable, path + ": cannot write: the file was not created");
    fs::rename(tmp, target, ec);
    if (ec) throw Error(ErrorCode::OutputNotWritable, path + ": cannot write: rename failed: " + ec.message());
  } catch (const Error& e) {
    cleanup();
    if (e.code() == ErrorCode::OutputNotWritable) {
      // The bridge names the temporary file; name the user's path instead.
      std::string msg = e.what();
      const std::string t = tmp.string();
      if (msg.rfind(t, 0) == 0) msg = path + msg.substr(t.size());
      for (auto pos = msg.find(t); pos != std::string::npos; pos = msg.find(t)) msg.replace(pos, t.size(), path);
      throw Error(ErrorCode::OutputNotWritable, msg);
    }
    throw;
  } catch (const std::exception& e) {
    cleanup();
    throw Error(ErrorCode::OutputNotWritable, path + ": cannot write: " + e.what());
  }
}

std::string writable_image_extension(const std::string& path) {
  const std::string ext = image_extension(path);
  const std::string l = lower(ext);
  if (l == ".nii.gz" || l == ".nii" || l == ".nrrd" || l == ".mha") return ext;
  throw Error(ErrorCode::OutputNotWritable,
              path + ": cannot write this format; use .nii.gz, .nii, .nrrd or .mha" +
                  (l == ".nhdr" || l == ".mhd" ? " (detached headers are not written)" : ""));
}

void check_grid_for_writing(const Grid<Scanner>& grid, std::size_t values, int channels, const std::string& path) {
  try {
    validate_grid(grid, path);
  } catch (const Error& e) {
    throw Error(ErrorCode::Internal, std::string("write_image: ") + e.what());
  }
  if (values != static_cast<std::size_t>(grid.voxels()) * static_cast<std::size_t>(channels))
    throw Error(ErrorCode::Internal, "write_image: " + path + ": voxel count does not match the grid");
}

template <class T>
std::vector<T> convert_for_writing(const std::vector<float>& in) {
  std::vector<T> out(in.size());
  if constexpr (std::is_floating_point_v<T>) {
    std::copy(in.begin(), in.end(), out.begin());
  } else {
    const double lo = static_cast<double>(std::numeric_limits<T>::lowest());
    const double hi = static_cast<double>(std::numeric_limits<T>::max());
    for (std::size_t n = 0; n < in.size(); ++n) {
      const double v = static_cast<double>(in[n]);
      out[n] = std::isnan(v) ? T{0} : static_cast<T>(std::clamp(std::nearbyint(v), lo, hi));
    }
  }
  return out;
}

void write_raw(const std::string& path, const RawGeometry& g, int channels, ComponentType type, const void* data) {
  const std::string ext = writable_image_extension(path);
  write_atomically(path, ext, [&](const std::string& tmp) { detail::write_image_file(tmp, g, channels, type, data); });
}

}  // namespace

const char* to_string(PixelType t) noexcept {
  switch (t) {
    case PixelType::UInt8: return "uint8";
    case PixelType::Int8: return "int8";
    case PixelType::UInt16: return "uint16";
    case PixelType::Int16: return "int16";
    case PixelType::UInt32: return "uint32";
    case PixelType::Int32: return "int32";
    case PixelType::Float32: return "float32";
    case PixelType::Float64: return "float64";
  }
  return "unknown";
}

std::optional<PixelType> pixel_type_named(const std::string& name) noexcept {
  for (const PixelType t : {PixelType::UInt8, PixelType::Int8, PixelType::UInt16, PixelType::Int16, PixelType::UInt32,
                            PixelType::Int32, PixelType::Float32, PixelType::Float64})
    if (name == to_string(t)) return t;
  return std::nullopt;
}

// ---- reading ---------------------------------------------------------------------------------------------

Scan read_scan(const std::string& path) {
  require_exists(path);
  std::error_code ec;
  RawImage raw = fs::is_directory(path, ec) ? detail::read_dicom_folder(path)
                                            : detail::read_image_file(path, detail::ReadKind::Scalar3D);
  Scan scan;
  scan.image.grid = to_grid(raw.geometry);
  validate_grid(scan.image.grid, path);
  scan.image.voxels = std::move(raw.voxels);
  scan.info.path = path;
  scan.info.format = raw.format;
  scan.info.warnings = std::move(raw.warnings);
  const VoxelStats stats = voxel_stats(scan.image.voxels);  // one pass for the next three
  const std::string nan_warning = replace_non_finite(scan.image.voxels, stats, path);
  if (!nan_warning.empty()) scan.info.warnings.push_back(nan_warning);
  scan.info.stored_type = choose_stored_type(raw.stored_type, stats);
  scan.info.intensities = intensity_check(stats);
  if (!scan.info.intensities->warning.empty()) scan.info.warnings.push_back(scan.info.intensities->warning);
  scan.info.series_uid = raw.series_uid;
  scan.info.series_description = raw.series_description;
  scan.info.slices_read = raw.slices_read;
  return scan;
}

IntensityCheck check_ct_intensities(const Image<float>& image) { return intensity_check(voxel_stats(image.voxels)); }

void require_body(const Scan& scan) {
  const IntensityCheck c = scan.info.intensities ? *scan.info.intensities : check_ct_intensities(scan.image);
  if (c.body_fraction < kMinBodyFraction)
    throw Error(ErrorCode::FitFailed,
                scan.info.path + ": no body in the scan: only " + std::to_string(100.0 * c.body_fraction) +
                    " % of the voxels are above " + std::to_string(static_cast<int>(kBodyThresholdHu)) +
                    " HU (values " + std::to_string(c.min_value) + " to " + std::to_string(c.max_value) +
                    "); nothing to segment");
}

Image<std::uint16_t> read_label_map(const std::string& path) {
  require_file(path, "a label map");
  RawImage raw = detail::read_image_file(path, detail::ReadKind::Scalar3D);
  if (raw.format == "dicom")
    throw Error(ErrorCode::UnreadableInput, path + ": is DICOM; label maps are read from NIfTI, NRRD or MetaImage files");
  Image<float> image;
  image.grid = to_grid(raw.geometry);
  validate_grid(image.grid, path);
  image.voxels = std::move(raw.voxels);
  return label_map_from(image, path);
}

Image<std::uint16_t> label_map_from(const Image<float>& image, const std::string& what) {
  Image<std::uint16_t> labels;
  labels.grid = image.grid;
  labels.voxels.resize(image.voxels.size());
  for (std::size_t n = 0; n < image.voxels.size(); ++n) {
    const float v = image.voxels[n];
    if (!std::isfinite(v) || v != std::nearbyint(v))
      throw Error(ErrorCode::UnreadableInput,
                  what + ": voxel " + index_string(labels.grid, n) + " holds " + std::to_string(v) +
                      ", not an integer label; is this an intensity image rather than a label map?");
    if (v < 0.0f || v > 65535.0f)
      throw Error(ErrorCode::UnreadableInput,
                  what + ": voxel " + index_string(labels.grid, n) + " holds label " + std::to_string(v) +
                      ", outside 0..65535");
    labels.voxels[n] = static_cast<std::uint16_t>(v);
  }
  return labels;
}

MultiChannelImage<Scanner> read_multichannel(const std::string& path) {
  require_file(path, "a multi-channel image");
  RawImage raw = detail::read_image_file(path, detail::ReadKind::MultiChannel);
  MultiChannelImage<Scanner> image;
  image.grid = to_grid(raw.geometry);
  validate_grid(image.grid, path);
  image.channels = raw.channels;
  for (std::size_t n = 0; n < raw.voxels.size(); ++n)
    if (!std::isfinite(raw.voxels[n]))
      throw Error(ErrorCode::UnreadableInput,
                  path + ": channel " + std::to_string(n / static_cast<std::size_t>(image.grid.voxels())) +
                      " holds NaN or infinite values");
  image.data = std::move(raw.voxels);
  return image;
}

// ---- writing ---------------------------------------------------------------------------------------------

void write_image(const Image<float>& image, const std::string& path, PixelType type) {
  check_grid_for_writing(image.grid, image.voxels.size(), 1, path);
  const RawGeometry g = to_raw(image.grid);
  switch (type) {
    case PixelType::Float32: return write_raw(path, g, 1, ComponentType::Float32, image.voxels.data());
    case PixelType::Float64: {
      const auto v = convert_for_writing<double>(image.voxels);
      return write_raw(path, g, 1, ComponentType::Float64, v.data());
    }
    case PixelType::UInt8: {
      const auto v = convert_for_writing<std::uint8_t>(image.voxels);
      return write_raw(path, g, 1, ComponentType::UInt8, v.data());
    }
    case PixelType::Int8: {
      const auto v = convert_for_writing<std::int8_t>(image.voxels);
      return write_raw(path, g, 1, ComponentType::Int8, v.data());
    }
    case PixelType::UInt16: {
      const auto v = convert_for_writing<std::uint16_t>(image.voxels);
      return write_raw(path, g, 1, ComponentType::UInt16, v.data());
    }
    case PixelType::Int16: {
      const auto v = convert_for_writing<std::int16_t>(image.voxels);
      return write_raw(path, g, 1, ComponentType::Int16, v.data());
    }
    case PixelType::UInt32: {
      const auto v = convert_for_writing<std::uint32_t>(image.voxels);
      return write_raw(path, g, 1, ComponentType::UInt32, v.data());
    }
    case PixelType::Int32: {
      const auto v = convert_for_writing<std::int32_t>(image.voxels);
      return write_raw(path, g, 1, ComponentType::Int32, v.data());
    }
  }
  throw Error(ErrorCode::Internal, "write_image: unknown pixel type");
}

void write_image(const Image<std::uint8_t>& image, const std::string& path) {
  check_grid_for_writing(image.grid, image.voxels.size(), 1, path);
  write_raw(path, to_raw(image.grid), 1, ComponentType::UInt8, image.voxels.data());
}

void write_image(const Image<std::uint16_t>& image, const std::string& path) {
  check_grid_for_writing(image.grid, image.voxels.size(), 1, path);
  write_raw(path, to_raw(image.grid), 1, ComponentType::UInt16, image.voxels.data());
}

void write_multichannel(const MultiChannelImage<Scanner>& image, const std::string& path) {
  if (image.channels < 1) throw Error(ErrorCode::Internal, "write_multichannel: " + path + ": no channels");
  check_grid_for_writing(image.grid, image.data.size(), image.channels, path);
  write_raw(path, to_raw(image.grid), image.channels, ComponentType::Float32, image.data.data());
}

void write_text_file(const std::string& path, const std::string& text) {
  const std::string ext = fs::path(path).extension().string();
  write_atomically(path, ext, [&](const std::string& tmp) {
    errno = 0;
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(ErrorCode::OutputNotWritable, path + ": cannot write: " + std::strerror(errno));
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.flush();
    if (!out) throw Error(ErrorCode::OutputNotWritable, path + ": cannot write (disk full?): " + std::strerror(errno));
    out.close();
    if (out.fail()) throw Error(ErrorCode::OutputNotWritable, path + ": cannot write (disk full?): " + std::strerror(errno));
  });
}

std::string read_text_file(const std::string& path) {
  require_exists(path);
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw Error(ErrorCode::UnreadableInput, path + ": is a folder, not a text file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::UnreadableInput, path + ": cannot open: " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(ErrorCode::UnreadableInput, path + ": cannot read: " + std::strerror(errno));
  return ss.str();
}

// ---- names -----------------------------------------------------------------------------------------------

bool has_image_extension(const std::string& path) { return !image_extension(path).empty(); }

std::string image_io_versions() { return detail::itk_version(); }

std::string image_stem(const std::string& path) {
  fs::path p(path);
  std::string name = p.filename().string();
  if (name.empty() || name == "." || name == "..") name = p.parent_path().filename().string();  // "a/series/"
  const std::string ext = image_extension(name);
  return name.substr(0, name.size() - ext.size());
}

}  // namespace ctarr
