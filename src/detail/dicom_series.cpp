// ctarr — DICOM series: which files form the CT volume, and their assembly onto one grid (gantry tilt and uneven
// spacing resampled, with warnings). One file's header and frames: dicom_header.cpp.
#include "detail/itk_bridge.hpp"

#include "ctarr/error.hpp"
#include "detail/dicom_guard.hpp"
#include "detail/dicom_header.hpp"
#include "detail/itk_support.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <new>
#include <optional>
#include <sstream>

namespace ctarr::detail {

namespace fs = std::filesystem;
using namespace bridge;

namespace {

bool is_localizer(const DicomFile& f) {
  std::string t = f.image_type;
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char ch) { return static_cast<char>(std::toupper(ch)); });
  return t.find("LOCALIZER") != std::string::npos;
}
bool is_secondary_capture(const DicomFile& f) { return f.sop_class.rfind("1.2.840.10008.5.1.4.1.1.7", 0) == 0; }

// Files of one series that share orientation, matrix and pixel spacing: one stack.
struct Stack {
  std::vector<const DicomFile*> files;
  int frames = 0;
};

bool same_stack(const DicomFile& a, const DicomFile& b) {
  if (a.series_uid != b.series_uid || a.rows != b.rows || a.cols != b.cols) return false;
  for (std::size_t k = 0; k < 6; ++k)
    if (std::abs(a.orientation[k] - b.orientation[k]) > 1e-3) return false;
  for (std::size_t k = 0; k < 2; ++k)
    if (std::abs(a.pixel_spacing[k] - b.pixel_spacing[k]) > 1e-4 * std::max(1.0, a.pixel_spacing[k])) return false;
  return true;
}

std::string describe(const Stack& s) {
  const DicomFile& f = *s.files.front();
  std::string d = f.series_description.empty() ? std::string("(no description)") : "'" + f.series_description + "'";
  return d + " (" + std::to_string(s.frames) + (s.frames == 1 ? " slice" : " slices") +
         (f.series_uid.empty() ? std::string("") : ", series " + f.series_uid) + ")";
}

// Bilinear sample of a slice at continuous (column, row); nullopt outside the slice.
std::optional<double> sample_slice(const Slice& s, unsigned cols, unsigned rows, double x, double y) {
  constexpr double kEps = 1e-6;
  if (x < -kEps || y < -kEps || x > cols - 1 + kEps || y > rows - 1 + kEps) return std::nullopt;
  x = std::clamp(x, 0.0, static_cast<double>(cols - 1));
  y = std::clamp(y, 0.0, static_cast<double>(rows - 1));
  double fx = x - std::floor(x), fy = y - std::floor(y);
  std::size_t x0 = static_cast<std::size_t>(std::floor(x)), y0 = static_cast<std::size_t>(std::floor(y));
  if (fx < kEps) fx = 0.0;
  if (fy < kEps) fy = 0.0;
  if (fx > 1.0 - kEps) { fx = 0.0; ++x0; }
  if (fy > 1.0 - kEps) { fy = 0.0; ++y0; }
  const std::size_t x1 = std::min<std::size_t>(x0 + 1, cols - 1), y1 = std::min<std::size_t>(y0 + 1, rows - 1);
  auto at = [&](std::size_t xx, std::size_t yy) { return static_cast<double>(s.pixels[yy * cols + xx]); };
  double v = at(x0, y0);
  if (fx == 0.0 && fy == 0.0) return v;
  return (1 - fx) * (1 - fy) * at(x0, y0) + fx * (1 - fy) * at(x1, y0) + (1 - fx) * fy * at(x0, y1) +
         fx * fy * at(x1, y1);
}

RawImage assemble(std::vector<Slice>& slices, const Stack& stack, const std::string& what,
                  std::vector<std::string> warnings) {
  const DicomFile& ref = *stack.files.front();
  const Vec3 r{ref.orientation[0], ref.orientation[1], ref.orientation[2]};
  const Vec3 c{ref.orientation[3], ref.orientation[4], ref.orientation[5]};
  const Vec3 n = cross(r, c);
  const double sx = ref.pixel_spacing[1];  // between columns: along the row direction r
  const double sy = ref.pixel_spacing[0];  // between rows: along the column direction c
  const unsigned cols = ref.cols, rows = ref.rows;

  for (Slice& s : slices) s.depth = dot(s.position, n);
  std::stable_sort(slices.begin(), slices.end(), [](const Slice& a, const Slice& b) { return a.depth < b.depth; });

  // Median spacing of distinct positions, to judge duplicates and gaps.
  std::vector<double> steps;
  for (std::size_t k = 1; k < slices.size(); ++k) {
    const double d = slices[k].depth - slices[k - 1].depth;
    if (d > 1e-3) steps.push_back(d);
  }
  double median = 0.0;
  if (!steps.empty()) {
    std::vector<double> sorted = steps;
    std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(sorted.size() / 2), sorted.end());
    median = sorted[sorted.size() / 2];
  }

  // Duplicated positions: identical slices are dropped; different pixels at one position keep the lowest
  // InstanceNumber.
  {
    const double tol = std::max(1e-3, 0.01 * median);
    std::vector<Slice> kept;
    std::vector<std::string> identical, differing;
    for (Slice& s : slices) {
      if (!kept.empty() && norm(sub(s.position, kept.back().position)) <= tol) {
        Slice& prev = kept.back();
        const std::string name = fs::path(s.file->path).filename().string();
        if (s.pixels == prev.pixels) {
          identical.push_back(name + " (same as " + fs::path(prev.file->path).filename().string() + ")");
        } else {
          differing.push_back(name);
          if (s.file->instance_number < prev.file->instance_number) std::swap(prev, s);
        }
        continue;
      }
      kept.push_back(std::move(s));
    }
    auto list = [](const std::vector<std::string>& names) {
      std::string out;
      for (std::size_t k = 0; k < names.size() && k < 5; ++k) out += (k ? ", " : "") + names[k];
      if (names.size() > 5) out += ", ...";
      return out;
    };
    if (!identical.empty())
      warnings.push_back("dropped " + std::to_string(identical.size()) +
                         " duplicate slice(s) repeating a position with identical pixels: " + list(identical));
    if (!differing.empty())
      warnings.push_back(std::to_string(differing.size()) +
                         " slice(s) share a position with different pixels (several acquisitions in one series?); "
                         "kept the lowest InstanceNumber at each position: " + list(differing));
    slices = std::move(kept);
  }
  if (slices.size() < 2)
    throw Error(ErrorCode::UnsupportedGeometry,
                what + ": the DICOM series " + describe(stack) + " has a single slice position (2D); ctarr needs a 3D volume (give the folder that holds the whole series)");

  steps.clear();
  for (std::size_t k = 1; k < slices.size(); ++k) steps.push_back(slices[k].depth - slices[k - 1].depth);
  {
    std::vector<double> sorted = steps;
    std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(sorted.size() / 2), sorted.end());
    median = sorted[sorted.size() / 2];
  }
  const double min_step = *std::min_element(steps.begin(), steps.end());
  const double max_step = *std::max_element(steps.begin(), steps.end());

  // Missing slices: a step of about a whole multiple (2x, 3x, ...) of the median. A run of wider steps that
  // are no such multiple (e.g. 4 mm then 7 mm) is uneven spacing, reported below.
  int missing = 0;
  std::string gaps;
  for (std::size_t k = 0; k < steps.size(); ++k) {
    const double ratio = steps[k] / median;
    const long whole = std::lround(ratio);
    if (whole >= 2 && std::abs(ratio - static_cast<double>(whole)) < 0.15) {
      missing += static_cast<int>(whole - 1);
      if (gaps.size() < 200)
        gaps += std::string(gaps.empty() ? "" : "; ") + fmt_double(steps[k], 2) + " mm after slice " +
                std::to_string(k) + " at " + fmt_double(slices[k].depth, 2) + " mm";
    }
  }
  if (missing > 0)
    warnings.push_back("about " + std::to_string(missing) + " missing slice(s): gap of " + gaps + " (median step " +
                       fmt_double(median, 3) + " mm); slice spacing is uneven");

  const bool uneven = (max_step - min_step) > 0.01 * median;
  // Gantry tilt: slice origins that drift within the slice plane as the stack advances.
  double max_shift = 0.0;
  std::vector<double> u0(slices.size()), v0(slices.size());
  for (std::size_t k = 0; k < slices.size(); ++k) {
    const Vec3 d = sub(slices[k].position, slices[0].position);
    u0[k] = dot(d, r);
    v0[k] = dot(d, c);
    max_shift = std::max(max_shift, std::hypot(u0[k], v0[k]));
  }
  const bool tilted = max_shift > 0.05 * std::min(sx, sy);
  double tilt_degrees = 0.0;
  if (tilted) {
    const Vec3 along = sub(slices.back().position, slices.front().position);
    const double cosine = std::clamp(std::abs(dot(along, n)) / norm(along), 0.0, 1.0);
    tilt_degrees = std::acos(cosine) * 180.0 / 3.14159265358979323846;
  }

  RawImage out;
  out.format = "dicom";
  out.series_uid = ref.series_uid;
  out.series_description = ref.series_description;
  out.slices_read = static_cast<int>(slices.size());
  out.stored_type = ComponentType::Int16;  // CT's usual container after rescale; io.cpp widens it from the values
  out.rescaled = true;

  // Output axes follow dcm2niix: i along the row cosine, j against the column cosine (rows are stored
  // bottom-up), k along the slice normal in increasing position. Masks made on dcm2niix conversions (e.g. by
  // TotalSegmentator) then share our voxel grid.
  double umin = 0.0, umax = (cols - 1) * sx, vmin = 0.0, vmax = (rows - 1) * sy;
  if (tilted) {
    for (std::size_t k = 0; k < slices.size(); ++k) {
      umin = std::min(umin, u0[k]);
      umax = std::max(umax, u0[k] + (cols - 1) * sx);
      vmin = std::min(vmin, v0[k]);
      vmax = std::max(vmax, v0[k] + (rows - 1) * sy);
    }
    // Keep the grid aligned with the first slice's pixels.
    umin = std::floor(umin / sx + 1e-6) * sx;
    vmin = std::floor(vmin / sy + 1e-6) * sy;
  }
  const std::int64_t ni = static_cast<std::int64_t>(std::ceil((umax - umin) / sx - 1e-6)) + 1;
  const std::int64_t nj = static_cast<std::int64_t>(std::ceil((vmax - vmin) / sy - 1e-6)) + 1;
  const double extent = slices.back().depth - slices.front().depth;
  const bool resample = tilted || uneven;
  const double step = uneven ? median : extent / static_cast<double>(slices.size() - 1);
  const std::int64_t nk =
      resample ? static_cast<std::int64_t>(std::floor(extent / step + 1e-3)) + 1 : static_cast<std::int64_t>(slices.size());
  std::int64_t total = 1;
  if (!checked_multiply(total, static_cast<std::uint64_t>(ni)) || !checked_multiply(total, static_cast<std::uint64_t>(nj)) ||
      !checked_multiply(total, static_cast<std::uint64_t>(nk)))
    throw Error(ErrorCode::UnreadableInput, what + ": the DICOM series would give more than 2^31 voxels");

  RawGeometry& g = out.geometry;
  g.size = {ni, nj, nk};
  g.spacing = {sx, sy, step};
  const Vec3 o = add_scaled(add_scaled(slices[0].position, r, umin), c, vmin + static_cast<double>(nj - 1) * sy);
  g.origin = o;
  for (int row = 0; row < 3; ++row) {
    g.direction[static_cast<std::size_t>(3 * row + 0)] = r[static_cast<std::size_t>(row)];
    g.direction[static_cast<std::size_t>(3 * row + 1)] = -c[static_cast<std::size_t>(row)];
    g.direction[static_cast<std::size_t>(3 * row + 2)] = n[static_cast<std::size_t>(row)];
  }

  out.voxels.resize(static_cast<std::size_t>(total));
  const std::size_t plane = static_cast<std::size_t>(ni) * static_cast<std::size_t>(nj);
  if (!resample) {
    for (std::size_t k = 0; k < slices.size(); ++k) {
      float* dst = out.voxels.data() + k * plane;
      for (unsigned j = 0; j < rows; ++j)
        std::memcpy(dst + static_cast<std::size_t>(j) * cols,
                    slices[k].pixels.data() + static_cast<std::size_t>(rows - 1 - j) * cols, cols * sizeof(float));
      std::vector<float>().swap(slices[k].pixels);
    }
  } else {
    float pad = std::numeric_limits<float>::max();
    for (const Slice& s : slices)
      for (float v : s.pixels) pad = std::min(pad, v);
    std::size_t lo = 0;
    for (std::int64_t k = 0; k < nk; ++k) {
      const double t = slices[0].depth + static_cast<double>(k) * step;
      while (lo + 2 < slices.size() && slices[lo + 1].depth <= t + 1e-6) ++lo;
      const Slice& a = slices[lo];
      const Slice& b = slices[lo + 1];
      double w = (t - a.depth) / (b.depth - a.depth);
      if (w < 1e-6) w = 0.0;
      if (w > 1.0 - 1e-6) w = 1.0;
      float* dst = out.voxels.data() + static_cast<std::size_t>(k) * plane;
      for (std::int64_t j = 0; j < nj; ++j) {
        const double v = vmin + static_cast<double>(nj - 1 - j) * sy;
        for (std::int64_t i = 0; i < ni; ++i) {
          const double u = umin + static_cast<double>(i) * sx;
          double sum = 0.0, weight = 0.0;
          if (w < 1.0) {
            if (auto va = sample_slice(a, cols, rows, (u - u0[lo]) / sx, (v - v0[lo]) / sy)) {
              sum += (1.0 - w) * *va;
              weight += 1.0 - w;
            }
          }
          if (w > 0.0) {
            if (auto vb = sample_slice(b, cols, rows, (u - u0[lo + 1]) / sx, (v - v0[lo + 1]) / sy)) {
              sum += w * *vb;
              weight += w;
            }
          }
          dst[static_cast<std::size_t>(j) * static_cast<std::size_t>(ni) + static_cast<std::size_t>(i)] =
              weight > 0.0 ? static_cast<float>(sum / weight) : pad;
        }
      }
    }
    out.stored_type = ComponentType::Float32;
    if (uneven)
      warnings.push_back("slice spacing is uneven (" + fmt_double(min_step, 3) + " to " + fmt_double(max_step, 3) +
                         " mm along the slice normal); resampled onto a uniform " + fmt_double(step, 3) +
                         " mm grid (linear interpolation)");
    if (tilted)
      warnings.push_back("gantry tilt " + fmt_double(tilt_degrees, 1) +
                         "\xC2\xB0 resampled onto an orthogonal grid (slices shifted in-plane by up to " +
                         fmt_double(max_shift, 1) + " mm; voxels outside every slice set to " +
                         fmt_double(static_cast<double>(pad), 0) + ")");
  }
  out.warnings = std::move(warnings);
  return out;
}

}  // namespace

bool is_dicom_file(const std::string& path) {
  ensure_setup();
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  try {
    return probe_dicom(path);
  } catch (const std::exception&) {
    return false;
  }
}

RawImage read_dicom_files(const std::vector<std::string>& paths, const std::string& what) {
  ensure_setup();
  std::vector<DicomFile> files;
  files.reserve(paths.size());
  std::size_t broken = 0;
  std::string first_broken;
  for (const std::string& p : paths) {
    if (const std::string problem = dicom_structure_problem(p); !problem.empty()) {
      if (broken++ == 0) first_broken = p + ": " + problem;  // set aside before GDCM, which aborts on such files
      continue;
    }
    std::optional<DicomFile> f;
    try {
      f = read_dicom_header(p);
    } catch (const std::exception&) {
      f.reset();  // GDCM may throw on garbage: such a file is simply not DICOM
    }
    if (f) files.push_back(std::move(*f));
  }
  if (files.empty())
    throw Error(ErrorCode::UnreadableInput,
                what + ": no DICOM image found (" + std::to_string(paths.size()) + " file(s) looked at" +
                    (broken ? ", " + std::to_string(broken) + " broken, first " + first_broken : std::string()) + ")");

  // Classify: localizers, secondary captures, non-CT modalities and unplaceable files are set aside.
  int localizers = 0, captures = 0, unplaceable = 0, enhanced_problems = 0;
  std::map<std::string, int> other_modalities;
  std::string first_problem;
  std::vector<const DicomFile*> candidates;
  for (const DicomFile& f : files) {
    if (is_localizer(f)) {
      ++localizers;
    } else if (is_secondary_capture(f)) {
      ++captures;
    } else if (!f.modality.empty() && f.modality != "CT") {
      ++other_modalities[f.modality];
    } else if (!f.problem.empty()) {
      ++unplaceable;
      if (f.enhanced) ++enhanced_problems;
      if (first_problem.empty()) first_problem = fs::path(f.path).filename().string() + " " + f.problem;
    } else if (f.samples_per_pixel != 1) {
      ++unplaceable;
      if (first_problem.empty())
        first_problem = fs::path(f.path).filename().string() + " is a colour image";
    } else {
      candidates.push_back(&f);
    }
  }
  if (candidates.empty()) {
    if (enhanced_problems > 0) throw Error(ErrorCode::UnreadableInput, what + ": " + kEnhancedUnsupported + " (" + first_problem + ")");
    std::string found;
    if (localizers) found += std::to_string(localizers) + " localizer image(s); ";
    if (captures) found += std::to_string(captures) + " secondary capture(s); ";
    for (const auto& [modality, count] : other_modalities) found += std::to_string(count) + " " + modality + " image(s); ";
    if (unplaceable) found += std::to_string(unplaceable) + " image(s) that cannot be placed in a volume (" + first_problem + "); ";
    throw Error(ErrorCode::UnreadableInput, what + ": no CT series found among the DICOM files (" + found +
                                                "give the folder of an axial CT series)");
  }

  // Group into stacks.
  std::vector<Stack> stacks;
  for (const DicomFile* f : candidates) {
    auto it = std::find_if(stacks.begin(), stacks.end(), [&](const Stack& s) { return same_stack(*s.files.front(), *f); });
    if (it == stacks.end()) {
      stacks.push_back(Stack{});
      it = stacks.end() - 1;
    }
    it->files.push_back(f);
    it->frames += static_cast<int>(f->positions.size());
  }
  // Most slices wins; single-slice stacks only when nothing else exists; ties: lowest series number, then UID.
  std::sort(stacks.begin(), stacks.end(), [](const Stack& a, const Stack& b) {
    if (a.frames != b.frames) return a.frames > b.frames;
    const DicomFile& fa = *a.files.front();
    const DicomFile& fb = *b.files.front();
    if (fa.series_number != fb.series_number) return fa.series_number < fb.series_number;
    return fa.series_uid < fb.series_uid;
  });
  const Stack& chosen = stacks.front();
  std::vector<std::string> warnings;
  if (stacks.size() > 1) {
    std::string others;
    for (std::size_t k = 1; k < stacks.size() && k < 4; ++k) others += (k > 1 ? "; " : "") + describe(stacks[k]);
    if (stacks.size() > 4) others += "; ...";
    warnings.push_back("the DICOM input holds " + std::to_string(stacks.size()) +
                       " image stacks; read the one with the most slices: " + describe(chosen) + "; ignored: " + others);
  }
  if (broken > 0)
    warnings.push_back("ignored " + std::to_string(broken) + " broken DICOM file(s) (first: " + first_broken + ")");
  if (localizers > 0) warnings.push_back("ignored " + std::to_string(localizers) + " localizer image(s)");
  if (captures > 0) warnings.push_back("ignored " + std::to_string(captures) + " secondary capture image(s)");

  // Decode the chosen stack.
  std::vector<Slice> slices;
  for (const DicomFile* f : chosen.files)
    for (std::size_t fr = 0; fr < f->positions.size(); ++fr) {
      Slice s;
      s.file = f;
      s.frame = static_cast<unsigned>(fr);
      s.position = f->positions[fr];
      s.slope = f->rescale[fr][0];
      s.intercept = f->rescale[fr][1];
      slices.push_back(std::move(s));
    }
  std::map<const DicomFile*, std::vector<Slice*>> by_file;
  for (Slice& s : slices) by_file[s.file].push_back(&s);
  for (auto& [file, list] : by_file) {
    try {
      decode_file(*file, list);
    } catch (const Error&) {
      throw;
    } catch (const std::bad_alloc&) {
      throw Error(ErrorCode::UnreadableInput, file->path + ": not enough memory to decode the pixel data");
    } catch (const std::exception& e) {
      throw Error(ErrorCode::UnreadableInput, file->path + ": cannot decode the pixel data: " + e.what() +
                                                  " (transfer syntax " + file->transfer_syntax + ")");
    }
  }
  return assemble(slices, chosen, what, std::move(warnings));
}

RawImage read_dicom_folder(const std::string& folder) {
  ensure_setup();
  std::vector<std::string> paths;
  std::error_code ec;
  fs::recursive_directory_iterator it(folder, fs::directory_options::skip_permission_denied, ec), end;
  if (ec) throw Error(ErrorCode::UnreadableInput, folder + ": cannot list the folder: " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) break;
    std::error_code fec;
    if (it->is_regular_file(fec)) paths.push_back(it->path().string());
  }
  std::sort(paths.begin(), paths.end());
  if (paths.empty()) throw Error(ErrorCode::UnreadableInput, folder + ": the folder is empty (expected a DICOM series)");
  return read_dicom_files(paths, folder);
}

}  // namespace ctarr::detail
