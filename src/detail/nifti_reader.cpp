// ctarr — NIfTI-1 voxels, header checks and nearly orthonormal sforms, read with zlib (see nifti_reader.hpp).
#include "detail/nifti_reader.hpp"

#include "ctarr/error.hpp"

#include <zlib.h>  // linked through ITK (ITKZLIB)

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <future>
#include <limits>
#include <sstream>
#include <vector>

namespace ctarr::detail::bridge {

namespace fs = std::filesystem;

// NIfTI-1 datatype codes (nifti1.h) of the on-disk type, used when scl_slope/scl_inter made ITK report float.
std::optional<ComponentType> from_nifti_datatype(int code) {
  switch (code) {
    case 2: return ComponentType::UInt8;
    case 4: return ComponentType::Int16;
    case 8: return ComponentType::Int32;
    case 16: return ComponentType::Float32;
    case 64: return ComponentType::Float64;
    case 256: return ComponentType::Int8;
    case 512: return ComponentType::UInt16;
    case 768: return ComponentType::UInt32;
    case 1024: return ComponentType::Int64;
    case 1280: return ComponentType::UInt64;
    default: return std::nullopt;
  }
}

namespace {

template <class T>
T load(const char* p, bool swap) {
  char b[sizeof(T)];
  std::memcpy(b, p, sizeof(T));
  if (swap) std::reverse(b, b + sizeof(T));
  T v;
  std::memcpy(&v, b, sizeof(T));
  return v;
}

template <class T>
void nifti_convert(const char* raw, std::size_t count, bool swap, bool scale, double slope, double inter, float* out) {
  for (std::size_t n = 0; n < count; ++n) {
    const T v = load<T>(raw + n * sizeof(T), swap);
    out[n] = scale ? static_cast<float>(static_cast<double>(v) * slope + inter) : static_cast<float>(v);
  }
}

}  // namespace

// Reads the voxels of a single-file NIfTI-1 (.nii, .nii.gz) with zlib instead of niftilib, which silently
// zero-fills a truncated file, turns NaN into 0 and replaces a zero or NaN pixdim by 1. Checks the raw pixdim of
// the spatial axes. Returns false (nothing done) for files it does not handle: NIfTI-2, .hdr/.img pairs,
// vector or complex voxels; ITK reads those.
bool read_nifti_voxels(const std::string& path, std::size_t expected_values, RawImage& out) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw Error(ErrorCode::UnreadableInput, path + ": cannot open the file");
  struct Closer {
    gzFile f;
    ~Closer() { gzclose(f); }
  } closer{f};
  char h[348];
  if (gzread(f, h, sizeof h) != static_cast<int>(sizeof h))
    throw Error(ErrorCode::UnreadableInput, path + ": the NIfTI header is truncated");
  bool swap = false;
  if (load<std::int32_t>(h, false) != 348) {
    if (load<std::int32_t>(h, true) != 348) return false;  // NIfTI-2 or something else: let ITK read it
    swap = true;
  }
  if (std::memcmp(h + 344, "ni1", 4) == 0) return false;  // header/image pair: ITK reads it
  // No NIfTI magic: niftilib would read it as Analyze 7.5, whose orientation is undefined (a silent flip risk).
  if (std::memcmp(h + 344, "n+1", 4) != 0)
    throw Error(ErrorCode::UnreadableInput,
                path + ": not a NIfTI-1 file: the header's magic is not \"n+1\" (an Analyze 7.5 header, or corrupt); "
                       "Analyze images have no reliable orientation: convert to NIfTI with the orientation checked");
  const int ndim = load<std::int16_t>(h + 40, swap);
  std::size_t nvox = 1;
  for (int d = 1; d <= ndim && d <= 7; ++d) nvox *= static_cast<std::size_t>(std::max<std::int16_t>(1, load<std::int16_t>(h + 40 + 2 * d, swap)));
  if (nvox != expected_values) return false;  // vector voxels (dim[5]) and the like
  for (int d = 1; d <= std::min(ndim, 3); ++d) {
    const float pixdim = load<float>(h + 76 + 4 * d, swap);
    if (!std::isfinite(pixdim) || pixdim <= 0.0f)
      throw Error(ErrorCode::UnsupportedGeometry,
                  path + ": the header gives voxel spacing pixdim[" + std::to_string(d) + "] = " + std::to_string(pixdim) +
                      " mm; it must be a finite positive number (fix the header)");
  }
  const int datatype = load<std::int16_t>(h + 70, swap);
  const double vox_offset = load<float>(h + 108, swap);
  const double slope = load<float>(h + 112, swap), inter = load<float>(h + 116, swap);
  const bool scale = std::isfinite(slope) && slope != 0.0 && std::isfinite(inter) && (slope != 1.0 || inter != 0.0);
  std::size_t bytes_per_value = 0;
  switch (datatype) {
    case 2: case 256: bytes_per_value = 1; break;
    case 4: case 512: bytes_per_value = 2; break;
    case 8: case 768: case 16: bytes_per_value = 4; break;
    case 64: case 1024: case 1280: bytes_per_value = 8; break;
    default: return false;
  }
  // Bound vox_offset before converting it (a float far beyond z_off_t is undefined behaviour to convert).
  if (!(vox_offset >= 348.0) || !(vox_offset < 1099511627776.0) ||
      gzseek(f, static_cast<z_off_t>(vox_offset), SEEK_SET) < 0)
    throw Error(ErrorCode::UnreadableInput, path + ": the file ends before its voxel data (vox_offset " + std::to_string(vox_offset) + ")");

  const std::size_t total_bytes = nvox * bytes_per_value;
  // Before allocating: can the file hold what the header declares? Uncompressed, its size says so; compressed,
  // deflate expands at most 1032:1. A lying or truncated header must not cost a giant allocation first.
  {
    std::error_code ec;
    const std::uintmax_t on_disk = fs::file_size(path, ec);
    const double needed = vox_offset + static_cast<double>(total_bytes);
    const double can_hold = gzdirect(f) ? static_cast<double>(on_disk) : 1032.0 * static_cast<double>(on_disk) + 65536.0;
    if (!ec && needed > can_hold)
      throw Error(ErrorCode::UnreadableInput,
                  path + ": the file is truncated or its header is wrong: it declares " + std::to_string(total_bytes) +
                      " bytes of voxel data but the file (" + std::to_string(on_disk) + " bytes) cannot hold them");
  }
  // Read and convert in chunks: no second buffer the size of the voxel data (the 512 x 512 x 300 benchmark CT held
  // 157 MB of raw int16 beside its floats; the atlas 334 MB of raw float32). A second thread inflates the next
  // chunk while this one converts the last (two chunk buffers). The floats are reserved, not zero-filled: each
  // chunk's part is grown when it is converted, so its page faults fall on this thread while the other inflates
  // (zero-filling 314 MB up front took 0.24 s of the benchmark CT's 0.93 s read).
  out.voxels.clear();
  out.voxels.reserve(nvox);
  const std::size_t chunk_bytes = bytes_per_value * (std::size_t{1} << 22);
  gzbuffer(f, 1u << 18);
  // Reads `want` bytes into dst (the gzFile is used by one thread at a time: the next read starts after this one
  // has returned).
  auto read_chunk = [f, &path](char* dst, std::size_t want, std::size_t done, std::size_t total) {
    std::size_t got_here = 0;
    while (got_here < want) {
      const int got = gzread(f, dst + got_here, static_cast<unsigned>(want - got_here));
      if (got < 0) {
        int err = 0;
        const char* msg = gzerror(f, &err);
        throw Error(ErrorCode::UnreadableInput,
                    path + ": the voxel data is corrupt (" + std::string(msg ? msg : "zlib error") + ")");
      }
      if (got == 0) break;
      got_here += static_cast<std::size_t>(got);
    }
    if (got_here < want)
      throw Error(ErrorCode::UnreadableInput, path + ": the file is truncated: " + std::to_string(done + got_here) +
                                                  " of " + std::to_string(total) + " voxel data bytes are present");
  };
  std::array<std::vector<char>, 2> chunks;
  for (auto& c : chunks) c.resize(std::min(chunk_bytes, total_bytes));
  auto start_read = [&](std::size_t at, std::size_t buffer) {
    const std::size_t want = std::min(total_bytes - at, chunk_bytes);
    return std::async(std::launch::async, read_chunk, chunks[buffer].data(), want, at, total_bytes);
  };
  std::future<void> pending = start_read(0, 0);
  for (std::size_t done = 0, k = 0; done < total_bytes; ++k) {
    const std::size_t want = std::min(total_bytes - done, chunk_bytes);
    pending.get();  // rethrows a corrupt or truncated chunk
    if (done + want < total_bytes) pending = start_read(done + want, (k + 1) % 2);
    const std::size_t values = want / bytes_per_value, first = done / bytes_per_value;
    out.voxels.resize(first + values);  // within the reserved capacity: no reallocation
    float* const to = out.voxels.data() + first;
    const char* const raw = chunks[k % 2].data();
    switch (datatype) {
      case 2: nifti_convert<std::uint8_t>(raw, values, swap, scale, slope, inter, to); break;
      case 256: nifti_convert<std::int8_t>(raw, values, swap, scale, slope, inter, to); break;
      case 4: nifti_convert<std::int16_t>(raw, values, swap, scale, slope, inter, to); break;
      case 512: nifti_convert<std::uint16_t>(raw, values, swap, scale, slope, inter, to); break;
      case 8: nifti_convert<std::int32_t>(raw, values, swap, scale, slope, inter, to); break;
      case 768: nifti_convert<std::uint32_t>(raw, values, swap, scale, slope, inter, to); break;
      case 16:
        if (!swap && !scale) std::memcpy(to, raw, want);
        else nifti_convert<float>(raw, values, swap, scale, slope, inter, to);
        break;
      case 64: nifti_convert<double>(raw, values, swap, scale, slope, inter, to); break;
      case 1024: nifti_convert<std::int64_t>(raw, values, swap, scale, slope, inter, to); break;
      case 1280: nifti_convert<std::uint64_t>(raw, values, swap, scale, slope, inter, to); break;
      default: break;  // excluded above
    }
    done += want;
  }
  return true;
}

// ITK's NIfTI reader aborts the process (a vnl assertion in its SVD) on a NaN or infinite qform/sform or pixdim
// (found by fuzz_read_nifti). Check those header fields before ITK sees them.
void check_nifti_header_finite(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) return;  // ITK reports what is wrong with it
  struct Closer {
    gzFile f;
    ~Closer() { gzclose(f); }
  } closer{f};
  char h[348];
  if (gzread(f, h, sizeof h) != static_cast<int>(sizeof h)) return;
  if (load<std::int32_t>(h, false) == 540 || load<std::int32_t>(h, true) == 540) return;  // NIfTI-2: other layout
  // Byte order as niftilib decides it: from dim[0] (1..7), not sizeof_hdr, which it does not insist on.
  const auto dim0 = load<std::int16_t>(h + 40, false), dim0_swapped = load<std::int16_t>(h + 40, true);
  bool swap = false;
  if (dim0 < 1 || dim0 > 7) {
    if (dim0_swapped < 1 || dim0_swapped > 7) return;  // ITK refuses it
    swap = true;
  }
  auto finite_floats = [&](int offset, int count) {
    for (int n = 0; n < count; ++n)
      if (!std::isfinite(load<float>(h + offset + 4 * n, swap))) return false;
    return true;
  };
  // pixdim[0..3] (76), quatern_b..qoffset_z (256), srow_x/y/z (280)
  if (!finite_floats(76, 4) || !finite_floats(256, 6) || !finite_floats(280, 12))
    throw Error(ErrorCode::UnsupportedGeometry,
                path + ": the header's voxel spacing or orientation (pixdim, qform or sform) holds NaN or infinite "
                       "values; fix the header");
}

// A single-file NIfTI-1 whose sform (sform_code > 0, no qform) is orthonormal only to a few digits: ITK 5.2 refuses
// it ("No orthonormal definition found"), though such files are common (the TotalSegmentator dataset's slightly
// oblique subjects write the sform rounded to 4 decimals: column dot products of 2e-4). Within kMaxDeviation the
// sform's direction columns are orthonormalised (Gram-Schmidt in axis order; each column moves by about the
// deviation, i.e. well under a voxel over a scan) and the image is read with ctarr's own voxel reader. Returns
// nullopt where this does not apply (other files, larger deviations: a real shear, which stays refused).
namespace {
constexpr double kMaxSformDeviation = 1e-3;

}  // namespace

std::optional<RawImage> read_nifti_nearly_orthonormal_sform(const std::string& path, ReadKind kind) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) return std::nullopt;
  char h[348];
  const bool got = gzread(f, h, sizeof h) == static_cast<int>(sizeof h);
  gzclose(f);
  if (!got || std::memcmp(h + 344, "n+1", 4) != 0) return std::nullopt;
  bool swap = false;
  if (load<std::int32_t>(h, false) != 348) {
    if (load<std::int32_t>(h, true) != 348) return std::nullopt;
    swap = true;
  }
  const int ndim = load<std::int16_t>(h + 40, swap);
  const int sform_code = load<std::int16_t>(h + 254, swap);
  if (ndim < 3 || ndim > 4 || sform_code <= 0) return std::nullopt;
  if (ndim == 4 && load<std::int16_t>(h + 48, swap) > 1) return std::nullopt;
  std::array<std::int64_t, 3> size{};
  for (int a = 0; a < 3; ++a) {
    size[static_cast<std::size_t>(a)] = load<std::int16_t>(h + 42 + 2 * a, swap);
    if (size[static_cast<std::size_t>(a)] < 1) return std::nullopt;
  }
  // srow_x, srow_y, srow_z (RAS) -> LPS: negate the first two rows.
  double m[3][4];
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) {
      m[r][c] = static_cast<double>(load<float>(h + 280 + 16 * r + 4 * c, swap)) * (r < 2 ? -1.0 : 1.0);
      if (!std::isfinite(m[r][c])) return std::nullopt;
    }
  double col[3][3], spacing[3];
  for (int a = 0; a < 3; ++a) {
    spacing[a] = std::sqrt(m[0][a] * m[0][a] + m[1][a] * m[1][a] + m[2][a] * m[2][a]);
    if (!(spacing[a] > 0.0)) return std::nullopt;
    for (int r = 0; r < 3; ++r) col[a][r] = m[r][a] / spacing[a];
  }
  const auto dot = [&](int a, int b) { return col[a][0] * col[b][0] + col[a][1] * col[b][1] + col[a][2] * col[b][2]; };
  const double deviation = std::max({std::abs(dot(0, 1)), std::abs(dot(0, 2)), std::abs(dot(1, 2))});
  if (deviation > kMaxSformDeviation) return std::nullopt;
  for (int a = 1; a < 3; ++a) {  // Gram-Schmidt
    for (int b = 0; b < a; ++b) {
      const double d = dot(a, b);
      for (int r = 0; r < 3; ++r) col[a][r] -= d * col[b][r];
    }
    const double n = std::sqrt(dot(a, a));
    for (int r = 0; r < 3; ++r) col[a][r] /= n;
  }
  RawImage out;
  out.format = "nifti";
  for (int a = 0; a < 3; ++a) {
    out.geometry.size[static_cast<std::size_t>(a)] = size[static_cast<std::size_t>(a)];
    out.geometry.origin[static_cast<std::size_t>(a)] = m[a][3];
    out.geometry.spacing[static_cast<std::size_t>(a)] = spacing[a];
    for (int r = 0; r < 3; ++r) out.geometry.direction[static_cast<std::size_t>(3 * r + a)] = col[a][r];
  }
  const auto type = from_nifti_datatype(load<std::int16_t>(h + 70, swap));
  if (!type) return std::nullopt;
  out.stored_type = *type;
  const double slope = load<float>(h + 112, swap), inter = load<float>(h + 116, swap);
  out.rescaled = std::isfinite(slope) && slope != 0.0 && std::isfinite(inter) && (slope != 1.0 || inter != 0.0);
  (void)kind;  // one 3D volume either way: a multi-channel read of this file has one channel
  if (!read_nifti_voxels(path, static_cast<std::size_t>(out.geometry.voxels()), out)) return std::nullopt;
  std::ostringstream w;
  w << path << ": the header's sform direction cosines are orthonormal only to " << deviation
    << " (rounded in the file); ctarr orthonormalised them (each axis moves by about that fraction of its length)";
  out.warnings.push_back(w.str());
  return out;
}

}  // namespace ctarr::detail::bridge
