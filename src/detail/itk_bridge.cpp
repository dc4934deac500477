// ctarr — ITK/GDCM adapter. The only translation unit that includes ITK or GDCM headers; it must not include
// any ctarr header that pulls in Eigen (see itk_bridge.hpp).
#include "detail/itk_bridge.hpp"

#include "ctarr/error.hpp"
#include "temp_files.hpp"

#include <itkGDCMImageIOFactory.h>
#include <itkImage.h>
#include <itkImageFileWriter.h>
#include <itkImageIOBase.h>
#include <itkImageIOFactory.h>
#include <itkMetaDataObject.h>
#include <itkMetaImageIOFactory.h>
#include <itkNiftiImageIOFactory.h>
#include <itkNrrdImageIOFactory.h>
#include <itkVersion.h>

#include <zlib.h>  // linked through ITK (ITKZLIB): NIfTI voxel data is read here, see read_nifti_voxels

// GDCM is used directly when its headers are on the include path, i.e. when the ITKGDCM module (and with it
// gdcmMSFF/gdcmDICT) is among the ITK components the build links. Otherwise DICOM goes through
// itk::GDCMImageIO only: same rules, but Enhanced CT frames are placed by GDCM's own geometry, the whole file
// is parsed to list a folder, and GDCM's warnings reach std::cerr.
#if __has_include(<gdcmImageReader.h>)
#define CTARR_DIRECT_GDCM 1
#include <gdcmImage.h>
#include <gdcmImageReader.h>
#include <gdcmReader.h>
#include <gdcmSequenceOfItems.h>
#include <gdcmStringFilter.h>
#include <gdcmTrace.h>
#include <gdcmTransferSyntax.h>
#include <gdcmVersion.h>
#else
#define CTARR_DIRECT_GDCM 0
#include <itkGDCMImageIO.h>

#include <dlfcn.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <new>
#include <optional>
#include <sstream>

#include <fcntl.h>
#include <unistd.h>

namespace ctarr::detail {

namespace fs = std::filesystem;

namespace {

// ---- set-up and error translation ------------------------------------------------------------------------

// The library is static: ITK's automatic IO factory registration (a static object in each TU that includes
// itkImageFileReader.h with ITK_IO_FACTORY_REGISTER_MANAGER) is not reliable here, so register explicitly.
void ensure_setup() {
  static std::once_flag once;
  std::call_once(once, [] {
    itk::NiftiImageIOFactory::RegisterOneFactory();
    itk::NrrdImageIOFactory::RegisterOneFactory();
    itk::MetaImageIOFactory::RegisterOneFactory();
    itk::GDCMImageIOFactory::RegisterOneFactory();
#if CTARR_DIRECT_GDCM
    gdcm::Trace::SetDebug(false);  // GDCM prints warnings to std::cerr by default; the library never prints
    gdcm::Trace::SetWarning(false);
    gdcm::Trace::SetError(false);
#else
    // GDCM is loaded (through ITKIOGDCM) but not linked directly: switch its std::cerr tracing off by symbol.
    for (const char* symbol : {"_ZN4gdcm5Trace8SetDebugEb", "_ZN4gdcm5Trace10SetWarningEb", "_ZN4gdcm5Trace8SetErrorEb"})
      if (void* fn = ::dlsym(RTLD_DEFAULT, symbol)) reinterpret_cast<void (*)(bool)>(fn)(false);
#endif
  });
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

// ITK's description without "ITK ERROR:" prefixes, class names and line breaks, at most ~300 characters.
std::string condense(const itk::ExceptionObject& e) {
  std::string s = e.GetDescription();
  for (const std::string prefix : {"ITK ERROR: ", "ITK ERROR:"}) {
    for (auto pos = s.find(prefix); pos != std::string::npos; pos = s.find(prefix)) s.erase(pos, prefix.size());
  }
  // "NiftiImageIO(0x55d...): message" -> "message"
  const auto paren = s.find("): ");
  if (paren != std::string::npos && paren < 60 && s.find('(') < paren) s = s.substr(paren + 3);
  std::string out;
  for (char c : s) out += (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
  out = trim(out);
  if (out.size() > 300) out = out.substr(0, 297) + "...";
  return out.empty() ? std::string("unknown ITK error") : out;
}

std::string fmt_double(double v, int precision = 3) {
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(precision);
  os << v;
  return os.str();
}

std::string size_string(const std::vector<std::uint64_t>& dims) {
  std::string s;
  for (std::size_t d = 0; d < dims.size(); ++d) s += (d ? "x" : "") + std::to_string(dims[d]);
  return s;
}

// ---- component types -------------------------------------------------------------------------------------

std::optional<ComponentType> from_itk(itk::IOComponentEnum c) {
  using E = itk::IOComponentEnum;
  switch (c) {
    case E::UCHAR: return ComponentType::UInt8;
    case E::CHAR: return ComponentType::Int8;
    case E::USHORT: return ComponentType::UInt16;
    case E::SHORT: return ComponentType::Int16;
    case E::UINT: return ComponentType::UInt32;
    case E::INT: return ComponentType::Int32;
    case E::ULONG: return sizeof(unsigned long) == 8 ? ComponentType::UInt64 : ComponentType::UInt32;
    case E::LONG: return sizeof(long) == 8 ? ComponentType::Int64 : ComponentType::Int32;
    case E::ULONGLONG: return ComponentType::UInt64;
    case E::LONGLONG: return ComponentType::Int64;
    case E::FLOAT: return ComponentType::Float32;
    case E::DOUBLE: return ComponentType::Float64;
    default: return std::nullopt;
  }
}

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

template <class T>
void convert_to_float(const char* raw, std::size_t count, float* out) {
  T v;
  for (std::size_t n = 0; n < count; ++n) {
    std::memcpy(&v, raw + n * sizeof(T), sizeof(T));
    out[n] = static_cast<float>(v);
  }
}

void convert_buffer(itk::IOComponentEnum c, const char* raw, std::size_t count, float* out) {
  using E = itk::IOComponentEnum;
  switch (c) {
    case E::UCHAR: return convert_to_float<unsigned char>(raw, count, out);
    case E::CHAR: return convert_to_float<signed char>(raw, count, out);
    case E::USHORT: return convert_to_float<unsigned short>(raw, count, out);
    case E::SHORT: return convert_to_float<short>(raw, count, out);
    case E::UINT: return convert_to_float<unsigned int>(raw, count, out);
    case E::INT: return convert_to_float<int>(raw, count, out);
    case E::ULONG: return convert_to_float<unsigned long>(raw, count, out);
    case E::LONG: return convert_to_float<long>(raw, count, out);
    case E::ULONGLONG: return convert_to_float<unsigned long long>(raw, count, out);
    case E::LONGLONG: return convert_to_float<long long>(raw, count, out);
    case E::FLOAT: return convert_to_float<float>(raw, count, out);
    case E::DOUBLE: return convert_to_float<double>(raw, count, out);
    default: throw Error(ErrorCode::Internal, "convert_buffer: unexpected component type");
  }
}

std::string format_of(const itk::ImageIOBase& io) {
  const std::string name = io.GetNameOfClass();
  if (name == "NiftiImageIO") return "nifti";
  if (name == "NrrdImageIO") return "nrrd";
  if (name == "MetaImageIO") return "meta";
  return name;
}

std::string metadata_string(const itk::ImageIOBase& io, const std::string& key) {
  std::string value;
  itk::ExposeMetaData<std::string>(io.GetMetaDataDictionary(), key, value);
  return value;
}

double parse_double(const std::string& s, double fallback) {
  try {
    std::size_t used = 0;
    const double v = std::stod(s, &used);
    return used > 0 ? v : fallback;
  } catch (const std::exception&) {
    return fallback;
  }
}

// Multiplies with an overflow check against kMaxVoxels.
bool checked_multiply(std::int64_t& acc, std::uint64_t factor) {
  if (factor == 0) {
    acc = 0;
    return true;
  }
  if (static_cast<std::uint64_t>(acc) > static_cast<std::uint64_t>(kMaxVoxels) / factor) return false;
  acc *= static_cast<std::int64_t>(factor);
  return acc <= kMaxVoxels;
}

}  // namespace

const char* to_string(ComponentType t) noexcept {
  switch (t) {
    case ComponentType::UInt8: return "uint8";
    case ComponentType::Int8: return "int8";
    case ComponentType::UInt16: return "uint16";
    case ComponentType::Int16: return "int16";
    case ComponentType::UInt32: return "uint32";
    case ComponentType::Int32: return "int32";
    case ComponentType::UInt64: return "uint64";
    case ComponentType::Int64: return "int64";
    case ComponentType::Float32: return "float32";
    case ComponentType::Float64: return "float64";
  }
  return "unknown";
}

std::string itk_version() {
#if CTARR_DIRECT_GDCM
  return std::string("ITK ") + itk::Version::GetITKVersion() + ", GDCM " + gdcm::Version::GetVersion();
#else
  return std::string("ITK ") + itk::Version::GetITKVersion() + " (DICOM through itk::GDCMImageIO)";
#endif
}

// ---- NIfTI voxel data ------------------------------------------------------------------------------------

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
  // 157 MB of raw int16 beside its floats; the atlas 334 MB of raw float32). Float32 data needing no swap or
  // scaling is read straight into place.
  out.voxels.resize(nvox);
  char* const direct = (datatype == 16 && !swap && !scale) ? reinterpret_cast<char*>(out.voxels.data()) : nullptr;
  const std::size_t chunk_bytes = bytes_per_value * (std::size_t{1} << 22);
  std::vector<char> chunk(direct ? 0 : std::min(chunk_bytes, total_bytes));
  gzbuffer(f, 1u << 18);
  std::size_t done = 0;
  while (done < total_bytes) {
    char* const dst = direct ? direct + done : chunk.data();
    const std::size_t want = std::min(total_bytes - done, chunk_bytes);
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
                                                  " of " + std::to_string(total_bytes) +
                                                  " voxel data bytes are present");
    if (!direct) {
      const std::size_t values = want / bytes_per_value;
      float* const to = out.voxels.data() + done / bytes_per_value;
      const char* const raw = chunk.data();
      switch (datatype) {
        case 2: nifti_convert<std::uint8_t>(raw, values, swap, scale, slope, inter, to); break;
        case 256: nifti_convert<std::int8_t>(raw, values, swap, scale, slope, inter, to); break;
        case 4: nifti_convert<std::int16_t>(raw, values, swap, scale, slope, inter, to); break;
        case 512: nifti_convert<std::uint16_t>(raw, values, swap, scale, slope, inter, to); break;
        case 8: nifti_convert<std::int32_t>(raw, values, swap, scale, slope, inter, to); break;
        case 768: nifti_convert<std::uint32_t>(raw, values, swap, scale, slope, inter, to); break;
        case 16: nifti_convert<float>(raw, values, swap, scale, slope, inter, to); break;
        case 64: nifti_convert<double>(raw, values, swap, scale, slope, inter, to); break;
        case 1024: nifti_convert<std::int64_t>(raw, values, swap, scale, slope, inter, to); break;
        case 1280: nifti_convert<std::uint64_t>(raw, values, swap, scale, slope, inter, to); break;
        default: break;  // excluded above
      }
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
constexpr double kMaxSformDeviation = 1e-3;

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

// MetaIO reports a short read on std::cerr and carries on; check the data length against the header first.
void check_meta_image_complete(const std::string& path, std::uint64_t expected_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return;
  std::string line, data_file;
  bool compressed = false;
  std::uint64_t compressed_size = 0;
  while (std::getline(in, line) && in.tellg() < 1 << 20) {
    const auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    const std::string key = trim(line.substr(0, eq)), value = trim(line.substr(eq + 1));
    if (key == "CompressedData") compressed = value == "True" || value == "true";
    if (key == "CompressedDataSize") compressed_size = static_cast<std::uint64_t>(parse_double(value, 0.0));
    if (key == "ElementDataFile") {
      data_file = value;
      break;
    }
  }
  if (data_file.empty() || !in) return;
  std::uint64_t available = 0;
  std::error_code ec;
  if (data_file == "LOCAL") {
    const auto header_end = static_cast<std::uint64_t>(in.tellg());
    const std::uint64_t size = fs::file_size(path, ec);
    if (ec) return;
    available = size > header_end ? size - header_end : 0;
  } else if (data_file.find(' ') == std::string::npos && data_file != "LIST") {
    const fs::path raw = fs::path(path).parent_path() / data_file;
    available = fs::file_size(raw, ec);
    if (ec) throw Error(ErrorCode::UnreadableInput, path + ": its data file " + raw.string() + " is missing");
  } else {
    return;  // a list or pattern of slice files: leave it to ITK
  }
  const std::uint64_t needed = compressed ? compressed_size : expected_bytes;
  if (needed > 0 && available < needed)
    throw Error(ErrorCode::UnreadableInput, path + ": the file is truncated: " + std::to_string(available) + " of " +
                                                std::to_string(needed) + " data bytes are present");
}

// NRRD (.nrrd with attached data, .nhdr with a detached data file): ITK allocates the declared size before it finds
// the data short, so a lying header cost a giant allocation. Raw data must be all there; gzip data cannot expand
// more than 1032:1. Other encodings (ascii, hex, bzip2) and file lists are left to ITK.
void check_nrrd_complete(const std::string& path, std::uint64_t expected_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return;
  std::string line, encoding = "raw", data_file;
  bool first = true;
  bool attached = false;
  while (std::getline(in, line) && in.tellg() < 1 << 20) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (first) {
      first = false;
      if (line.rfind("NRRD", 0) != 0) return;
      continue;
    }
    if (line.empty()) {  // end of the header: attached data follows
      attached = true;
      break;
    }
    if (line[0] == '#') continue;
    const auto colon = line.find(": ");
    if (colon == std::string::npos) continue;  // key:=value pairs and the like
    const std::string key = trim(line.substr(0, colon)), value = trim(line.substr(colon + 2));
    if (key == "encoding") encoding = value;
    if (key == "data file" || key == "datafile") data_file = value;
  }
  std::uint64_t available = 0;
  std::error_code ec;
  if (!data_file.empty()) {
    if (data_file.find(' ') != std::string::npos || data_file.rfind("LIST", 0) == 0) return;  // pattern or list
    const fs::path raw = fs::path(data_file).is_absolute() ? fs::path(data_file) : fs::path(path).parent_path() / data_file;
    available = fs::file_size(raw, ec);
    if (ec) throw Error(ErrorCode::UnreadableInput, path + ": its data file " + raw.string() + " is missing");
  } else if (attached && in) {
    const auto header_end = static_cast<std::uint64_t>(in.tellg());
    const std::uint64_t size = fs::file_size(path, ec);
    if (ec) return;
    available = size > header_end ? size - header_end : 0;
  } else {
    return;
  }
  if (encoding == "raw" && available < expected_bytes)
    throw Error(ErrorCode::UnreadableInput, path + ": the file is truncated or its header is wrong: " +
                                                std::to_string(available) + " of the " + std::to_string(expected_bytes) +
                                                " declared data bytes are present");
  if ((encoding == "gzip" || encoding == "gz") &&
      static_cast<double>(expected_bytes) > 1032.0 * static_cast<double>(available) + 65536.0)
    throw Error(ErrorCode::UnreadableInput, path + ": the file is truncated or its header is wrong: it declares " +
                                                std::to_string(expected_bytes) + " data bytes but holds only " +
                                                std::to_string(available) + " bytes of gzip data");
}

// ---- DICOM structure check (before GDCM sees a file) --------------------------------------------------------
//
// Debian's GDCM 3.0 is built with assertions: a DICOM file cut short (an interrupted transfer, found by
// fuzz_read_dicom) makes FileMetaInformation::ReadCompat assert and abort the whole process, a batch included. So
// every file that carries the DICM magic is walked here first, element by element (explicit or implicit VR, either
// byte order, sequences and encapsulated pixel data of undefined length), and refused when an element runs past
// the end of the file. Deflated data sets are not walked past their meta header.
class DicomWalker {
 public:
  explicit DicomWalker(const std::vector<unsigned char>& d) : d_(d) {}

  // "" when the file walks to its end; else what is wrong.
  std::string check() {
    std::size_t pos = 132;
    std::string syntax;
    while (pos + 8 <= d_.size() && u16le(pos) == 0x0002) {  // file meta group: explicit VR little endian
      const std::uint16_t element = u16le(pos + 2);
      std::uint64_t len = 0;
      std::size_t header = 0;
      if (!explicit_header(pos, false, len, header)) return "the file meta header is cut short";
      if (pos + header + len > d_.size()) return "the file meta header is cut short";
      if (element == 0x0010)
        syntax.assign(reinterpret_cast<const char*>(d_.data() + pos + header), static_cast<std::size_t>(len));
      pos += header + static_cast<std::size_t>(len);
    }
    // Nothing after the file meta header: GDCM 3.0 asserts ("Should not happen") reading on past the end (found by
    // fuzz_read_dicom: a 192-byte file whose meta group ends the file).
    if (pos >= d_.size()) return "the file ends after its file meta header: it holds no data set (cut short?)";
    while (!syntax.empty() && (syntax.back() == '\0' || syntax.back() == ' ')) syntax.pop_back();
    if (syntax == "1.2.840.10008.1.2.1.99") return "";  // deflated: GDCM inflates and checks it
    explicit_ = syntax != "1.2.840.10008.1.2";
    big_ = syntax == "1.2.840.10008.1.2.2";
    return walk_dataset(pos, false, 0) ? "" : problem_;
  }

 private:
  static constexpr std::uint32_t kUndefined = 0xFFFFFFFFu;
  static constexpr int kMaxDepth = 32;

  std::uint16_t u16le(std::size_t p) const { return static_cast<std::uint16_t>(d_[p] | (d_[p + 1] << 8)); }
  std::uint32_t u32le(std::size_t p) const {
    return static_cast<std::uint32_t>(d_[p]) | (static_cast<std::uint32_t>(d_[p + 1]) << 8) |
           (static_cast<std::uint32_t>(d_[p + 2]) << 16) | (static_cast<std::uint32_t>(d_[p + 3]) << 24);
  }
  std::uint16_t u16(std::size_t p) const {
    return big_ ? static_cast<std::uint16_t>((d_[p] << 8) | d_[p + 1]) : u16le(p);
  }
  std::uint32_t u32(std::size_t p) const {
    if (!big_) return u32le(p);
    return (static_cast<std::uint32_t>(d_[p]) << 24) | (static_cast<std::uint32_t>(d_[p + 1]) << 16) |
           (static_cast<std::uint32_t>(d_[p + 2]) << 8) | static_cast<std::uint32_t>(d_[p + 3]);
  }

  // Explicit VR element header at pos: its length (kUndefined kept as is) and header size.
  bool explicit_header(std::size_t pos, bool use_byte_order, std::uint64_t& len, std::size_t& header) const {
    const char a = static_cast<char>(d_[pos + 4]), b = static_cast<char>(d_[pos + 5]);
    static const char* const kLong[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"};
    bool long_form = false;
    for (const char* vr : kLong) long_form = long_form || (vr[0] == a && vr[1] == b);
    if (long_form) {
      if (pos + 12 > d_.size()) return false;
      len = use_byte_order ? u32(pos + 8) : u32le(pos + 8);
      header = 12;
    } else {
      len = use_byte_order ? u16(pos + 6) : u16le(pos + 6);
      header = 8;
    }
    return true;
  }

  bool fail(const std::string& what) {
    problem_ = what;
    return false;
  }

  // Elements from pos to the end of the file, or (inside an item of undefined length) to its item delimiter.
  bool walk_dataset(std::size_t& pos, bool in_item, int depth) {
    if (depth > kMaxDepth) return true;  // deeper than any real file: stop checking, let GDCM decide
    while (pos < d_.size()) {
      if (pos + 8 > d_.size()) return fail("the file ends inside a data element header");
      const std::uint16_t group = u16(pos), element = u16(pos + 2);
      if (group == 0xFFFE) {
        if (element == 0xE00D && in_item) {
          pos += 8;
          return true;
        }
        return fail("an item or delimiter stands where a data element belongs");
      }
      std::uint64_t len = 0;
      std::size_t header = 8;
      bool sequence_like = false;
      if (explicit_) {
        if (!explicit_header(pos, true, len, header)) return fail("the file ends inside a data element header");
        sequence_like = d_[pos + 4] == 'S' && d_[pos + 5] == 'Q';
      } else {
        len = u32(pos + 4);
      }
      pos += header;
      if (len == kUndefined) {
        const bool encapsulated = group == 0x7FE0 && element == 0x0010;
        if (!walk_sequence(pos, encapsulated, depth + 1)) return false;
        (void)sequence_like;
      } else {
        if (pos + len > d_.size()) return fail("the file is cut short: an element needs " + std::to_string(len) +
                                               " bytes, " + std::to_string(d_.size() - pos) + " remain");
        pos += static_cast<std::size_t>(len);
      }
    }
    return in_item ? fail("the file ends inside an item") : true;
  }

  // Items up to the sequence delimiter (item headers have no VR, whatever the transfer syntax).
  bool walk_sequence(std::size_t& pos, bool encapsulated, int depth) {
    while (true) {
      if (pos + 8 > d_.size()) return fail("the file ends inside a sequence");
      const std::uint16_t group = u16(pos), element = u16(pos + 2);
      const std::uint32_t len = u32(pos + 4);
      pos += 8;
      if (group != 0xFFFE) return fail("a sequence holds something other than items");
      if (element == 0xE0DD) return true;
      if (element != 0xE000) return fail("a sequence holds something other than items");
      if (len == kUndefined) {
        if (encapsulated) return fail("an encapsulated pixel data fragment has no length");
        if (!walk_dataset(pos, true, depth + 1)) return false;
      } else {
        if (pos + len > d_.size()) return fail("the file is cut short inside a sequence item");
        pos += len;
      }
    }
  }

  const std::vector<unsigned char>& d_;
  bool explicit_ = true, big_ = false;
  std::string problem_;
};

// What is wrong with a file that claims to be DICOM (DICM at byte 128), or "" (also for files without the magic).
std::string dicom_structure_problem(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  char magic[132] = {};
  if (!in.read(magic, 132) || std::memcmp(magic + 128, "DICM", 4) != 0) return "";
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 132) return "";
  std::vector<unsigned char> data(static_cast<std::size_t>(size));
  in.seekg(0);
  if (!in.read(reinterpret_cast<char*>(data.data()), size)) return "the file cannot be read";
  return DicomWalker(data).check();
}

}  // namespace

// ---- image files through ITK -----------------------------------------------------------------------------

RawImage read_image_file(const std::string& path, ReadKind kind) {
  ensure_setup();
  if (const std::string problem = dicom_structure_problem(path); !problem.empty())
    throw Error(ErrorCode::UnreadableInput, path + ": a broken DICOM file: " + problem);
  itk::ImageIOBase::Pointer io;
  try {
    io = itk::ImageIOFactory::CreateImageIO(path.c_str(), itk::IOFileModeEnum::ReadMode);
  } catch (const itk::ExceptionObject& e) {
    throw Error(ErrorCode::UnreadableInput, path + ": cannot read the image: " + condense(e));
  } catch (const std::exception& e) {
    throw Error(ErrorCode::UnreadableInput, path + ": cannot read the image: " + e.what());
  }
  if (!io || std::string(io->GetNameOfClass()) == "GDCMImageIO") {
    if (is_dicom_file(path)) {
      if (kind != ReadKind::Scalar3D)
        throw Error(ErrorCode::UnreadableInput, path + ": is a DICOM file; a multi-channel NIfTI is expected here");
      return read_dicom_files({path}, path);
    }
    throw Error(ErrorCode::UnreadableInput,
                path + ": not an image ctarr can read (no NIfTI, NRRD, MetaImage or DICOM reader accepts it; "
                       "the file may be corrupt or have the wrong extension)");
  }

  io->SetFileName(path);
  if (std::string(io->GetNameOfClass()) == "NiftiImageIO") check_nifti_header_finite(path);
  try {
    io->ReadImageInformation();
  } catch (const itk::ExceptionObject& e) {
    const std::string why = condense(e);
    if (why.find("orthonormal") != std::string::npos) {
      if (std::optional<RawImage> near = read_nifti_nearly_orthonormal_sform(path, kind)) return std::move(*near);
      throw Error(ErrorCode::UnsupportedGeometry,
                  path + ": the header's direction cosines are not orthonormal (a sheared grid, e.g. an "
                         "uncorrected gantry tilt): " + why + "; resample the image onto an orthogonal grid first");
    }
    throw Error(ErrorCode::UnreadableInput, path + ": cannot read the image header: " + why);
  } catch (const std::exception& e) {
    throw Error(ErrorCode::UnreadableInput, path + ": cannot read the image header: " + e.what());
  }

  RawImage out;
  out.format = format_of(*io);
  const unsigned ndim = io->GetNumberOfDimensions();
  const unsigned ncomp = io->GetNumberOfComponents();
  std::vector<std::uint64_t> dims(ndim);
  for (unsigned d = 0; d < ndim; ++d) dims[d] = io->GetDimensions(d);

  if (ndim < 3)
    throw Error(ErrorCode::UnsupportedGeometry,
                path + ": is 2D (" + size_string(dims) + " voxels); ctarr needs a 3D volume");
  if (ndim > 4)
    throw Error(ErrorCode::UnsupportedGeometry,
                path + ": has " + std::to_string(ndim) + " dimensions (" + size_string(dims) +
                    "); ctarr reads 3D volumes only");
  int channels = 1;
  if (ndim == 4) {
    if (kind == ReadKind::Scalar3D && dims[3] > 1)
      throw Error(ErrorCode::UnsupportedGeometry,
                  path + ": is 4D with " + std::to_string(dims[3]) + " volumes (" + size_string(dims) +
                      "); ctarr reads one 3D volume: extract the volume you want first");
    if (dims[3] > 100000)
      throw Error(ErrorCode::UnreadableInput, path + ": declares " + std::to_string(dims[3]) + " channels (corrupt header?)");
    channels = static_cast<int>(dims[3]);
  }
  if (ncomp > 1) {
    if (kind == ReadKind::MultiChannel && ndim == 3 && ncomp <= 100000) {
      channels = static_cast<int>(ncomp);
    } else {
      throw Error(ErrorCode::UnreadableInput,
                  path + ": has " + std::to_string(ncomp) +
                      " components per voxel (a colour or vector image); a scalar image is expected");
    }
  }

  // Check the declared size before allocating anything.
  std::int64_t total = 1;
  bool ok = true;
  for (unsigned d = 0; d < ndim && ok; ++d) ok = checked_multiply(total, dims[d]);
  if (ok) ok = checked_multiply(total, ncomp);
  if (!ok)
    throw Error(ErrorCode::UnreadableInput,
                path + ": declares " + size_string(dims) + " voxels, more than ctarr reads (2^31); corrupt header?");
  if (total == 0)
    throw Error(ErrorCode::UnsupportedGeometry, path + ": declares an empty image (" + size_string(dims) + ")");

  for (int a = 0; a < 3; ++a) {
    out.geometry.size[static_cast<std::size_t>(a)] = static_cast<std::int64_t>(dims[static_cast<unsigned>(a)]);
    out.geometry.origin[static_cast<std::size_t>(a)] = io->GetOrigin(static_cast<unsigned>(a));
    out.geometry.spacing[static_cast<std::size_t>(a)] = io->GetSpacing(static_cast<unsigned>(a));
    const std::vector<double> column = io->GetDirection(static_cast<unsigned>(a));
    for (int r = 0; r < 3; ++r)
      out.geometry.direction[static_cast<std::size_t>(3 * r + a)] =
          static_cast<std::size_t>(r) < column.size() ? column[static_cast<std::size_t>(r)] : 0.0;
  }
  out.channels = channels;

  const auto component = io->GetComponentType();
  const std::optional<ComponentType> type = from_itk(component);
  if (!type)
    throw Error(ErrorCode::UnreadableInput,
                path + ": voxel type " + itk::ImageIOBase::GetComponentTypeAsString(component) + " is not supported");
  out.stored_type = *type;
  if (out.format == "nifti") {
    const double slope = parse_double(metadata_string(*io, "scl_slope"), 0.0);
    const double inter = parse_double(metadata_string(*io, "scl_inter"), 0.0);
    if (std::isfinite(slope) && slope != 0.0 && std::isfinite(inter) && (slope != 1.0 || inter != 0.0)) {
      out.rescaled = true;
      const auto on_disk = from_nifti_datatype(static_cast<int>(parse_double(metadata_string(*io, "datatype"), 0.0)));
      if (on_disk) out.stored_type = *on_disk;
    }
  }

  itk::ImageIORegion region(ndim);
  for (unsigned d = 0; d < ndim; ++d) {
    region.SetIndex(d, 0);
    region.SetSize(d, dims[d]);
  }
  io->SetIORegion(region);
  const std::size_t values = static_cast<std::size_t>(total);
  try {
    if (out.format == "nifti" && ncomp == 1 && read_nifti_voxels(path, values, out)) return out;
    if (out.format == "meta") check_meta_image_complete(path, static_cast<std::uint64_t>(io->GetImageSizeInBytes()));
    if (out.format == "nrrd") check_nrrd_complete(path, static_cast<std::uint64_t>(io->GetImageSizeInBytes()));
    std::vector<char> raw(static_cast<std::size_t>(io->GetImageSizeInBytes()));
    io->Read(raw.data());
    out.voxels.resize(values);
    if (ncomp > 1) {
      // Interleaved vector pixels -> channel-major.
      std::vector<float> interleaved(values);
      convert_buffer(component, raw.data(), values, interleaved.data());
      const std::size_t nvox = values / ncomp;
      for (std::size_t v = 0; v < nvox; ++v)
        for (std::size_t c = 0; c < ncomp; ++c) out.voxels[c * nvox + v] = interleaved[v * ncomp + c];
    } else {
      convert_buffer(component, raw.data(), values, out.voxels.data());
    }
  } catch (const itk::ExceptionObject& e) {
    throw Error(ErrorCode::UnreadableInput,
                path + ": cannot read the voxel data (truncated or corrupt file?): " + condense(e));
  } catch (const std::bad_alloc&) {
    throw Error(ErrorCode::UnreadableInput, path + ": not enough memory to read " + size_string(dims) + " voxels");
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(ErrorCode::UnreadableInput, path + ": cannot read the voxel data: " + e.what());
  }
  return out;
}

// ---- writing ---------------------------------------------------------------------------------------------

namespace {

template <class T, unsigned D>
void write_typed(const std::string& path, const RawGeometry& g, int channels, const void* data) {
  using ImageType = itk::Image<T, D>;
  auto image = ImageType::New();
  typename ImageType::RegionType region;
  typename ImageType::SpacingType spacing;
  typename ImageType::PointType origin;
  typename ImageType::DirectionType direction;
  direction.SetIdentity();
  for (unsigned a = 0; a < D; ++a) {
    region.SetIndex(a, 0);
    if (a < 3) {
      region.SetSize(a, static_cast<itk::SizeValueType>(g.size[a]));
      spacing[a] = g.spacing[a];
      origin[a] = g.origin[a];
      for (unsigned r = 0; r < 3; ++r) direction(r, a) = g.direction[3 * r + a];
    } else {
      region.SetSize(a, static_cast<itk::SizeValueType>(channels));
      spacing[a] = 1.0;
      origin[a] = 0.0;
    }
  }
  image->SetRegions(region);
  image->SetSpacing(spacing);
  image->SetOrigin(origin);
  image->SetDirection(direction);
  const std::size_t count = static_cast<std::size_t>(g.voxels()) * static_cast<std::size_t>(channels);
  // Wrap the caller's buffer without copying: ITK only reads it while writing.
  image->GetPixelContainer()->SetImportPointer(static_cast<T*>(const_cast<void*>(data)), count, false);

  auto writer = itk::ImageFileWriter<ImageType>::New();
  writer->SetFileName(path);
  writer->SetInput(image);
  writer->SetUseCompression(true);  // .nrrd/.mha: gzip; .nii/.nii.gz follow the name
  writer->Update();
}

template <class T>
void write_dispatch_dim(const std::string& path, const RawGeometry& g, int channels, const void* data) {
  if (channels > 1)
    write_typed<T, 4>(path, g, channels, data);
  else
    write_typed<T, 3>(path, g, channels, data);
}

}  // namespace

namespace {

std::size_t component_size(ComponentType t) {
  switch (t) {
    case ComponentType::UInt8: case ComponentType::Int8: return 1;
    case ComponentType::UInt16: case ComponentType::Int16: return 2;
    case ComponentType::UInt32: case ComponentType::Int32: case ComponentType::Float32: return 4;
    case ComponentType::UInt64: case ComponentType::Int64: case ComponentType::Float64: return 8;
  }
  return 0;
}

// ITK's NIfTI and MetaImage writers report nothing when the disk fills up (niftilib and MetaIO only print), so
// the written file is checked: flushed to disk, and holding all its voxel data.
void verify_written(const std::string& path, std::uint64_t data_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw Error(ErrorCode::OutputNotWritable, path + ": cannot write: the file was not created");
  const int synced = ::fsync(fd);
  const int sync_errno = errno;
  ::close(fd);
  if (synced != 0)
    throw Error(ErrorCode::OutputNotWritable, path + ": cannot write: " + std::strerror(sync_errno));

  std::string lower_path = path;
  std::transform(lower_path.begin(), lower_path.end(), lower_path.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  auto ends_with = [&](const std::string& suffix) {
    return lower_path.size() >= suffix.size() && lower_path.compare(lower_path.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (ends_with(".nii") || ends_with(".nii.gz")) {
    gzFile f = gzopen(path.c_str(), "rb");
    if (!f) throw Error(ErrorCode::OutputNotWritable, path + ": cannot write: the file cannot be read back");
    std::vector<char> buffer(1 << 20);
    std::uint64_t total = 0;
    int got = 0;
    while ((got = gzread(f, buffer.data(), static_cast<unsigned>(buffer.size()))) > 0) total += static_cast<std::uint64_t>(got);
    gzclose(f);
    if (got < 0 || total < 348 + data_bytes)
      throw Error(ErrorCode::OutputNotWritable, path + ": cannot write: the file is incomplete (disk full?)");
  } else if (ends_with(".mha")) {
    try {
      check_meta_image_complete(path, data_bytes);
    } catch (const Error&) {
      throw Error(ErrorCode::OutputNotWritable, path + ": cannot write: the file is incomplete (disk full?)");
    }
  }
}

bool is_nii_gz(const std::string& path) {
  if (path.size() < 7) return false;
  std::string tail = path.substr(path.size() - 7);
  std::transform(tail.begin(), tail.end(), tail.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return tail == ".nii.gz";
}

// Compresses `from` into `to` (gzip, zlib level `level`).
void gzip_file(const std::string& from, const std::string& to, int level) {
  std::ifstream in(from, std::ios::binary);
  if (!in) throw Error(ErrorCode::OutputNotWritable, to + ": cannot write: the uncompressed image was not written");
  gzFile out = gzopen(to.c_str(), ("wb" + std::to_string(level)).c_str());
  if (!out) throw Error(ErrorCode::OutputNotWritable, to + ": cannot write: " + std::strerror(errno));
  std::vector<char> buffer(std::size_t{1} << 20);
  bool ok = true;
  while (ok && in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const auto n = static_cast<unsigned>(in.gcount());
    if (n > 0) ok = gzwrite(out, buffer.data(), n) == static_cast<int>(n);
  }
  ok = gzclose(out) == Z_OK && ok && in.eof();
  if (!ok) throw Error(ErrorCode::OutputNotWritable, to + ": cannot write: compressing the image failed (disk full?)");
}

// ITK writes the file; nothing checked yet.
void write_with_itk(const std::string& path, const RawGeometry& g, int channels, ComponentType type, const void* data) {
  try {
    switch (type) {
      case ComponentType::UInt8: write_dispatch_dim<std::uint8_t>(path, g, channels, data); break;
      case ComponentType::Int8: write_dispatch_dim<std::int8_t>(path, g, channels, data); break;
      case ComponentType::UInt16: write_dispatch_dim<std::uint16_t>(path, g, channels, data); break;
      case ComponentType::Int16: write_dispatch_dim<std::int16_t>(path, g, channels, data); break;
      case ComponentType::UInt32: write_dispatch_dim<std::uint32_t>(path, g, channels, data); break;
      case ComponentType::Int32: write_dispatch_dim<std::int32_t>(path, g, channels, data); break;
      case ComponentType::UInt64: write_dispatch_dim<std::uint64_t>(path, g, channels, data); break;
      case ComponentType::Int64: write_dispatch_dim<std::int64_t>(path, g, channels, data); break;
      case ComponentType::Float32: write_dispatch_dim<float>(path, g, channels, data); break;
      case ComponentType::Float64: write_dispatch_dim<double>(path, g, channels, data); break;
    }
  } catch (const itk::ExceptionObject& e) {
    throw Error(ErrorCode::OutputNotWritable, path + ": cannot write the image: " + condense(e));
  } catch (const std::bad_alloc&) {
    throw Error(ErrorCode::OutputNotWritable, path + ": not enough memory to write the image");
  } catch (const std::exception& e) {
    throw Error(ErrorCode::OutputNotWritable, path + ": cannot write the image: " + e.what());
  }
}

}  // namespace

void write_image_file(const std::string& path, const RawGeometry& g, int channels, ComponentType type,
                      const void* data) {
  ensure_setup();
  const std::uint64_t data_bytes =
      static_cast<std::uint64_t>(g.voxels()) * static_cast<std::uint64_t>(channels) * component_size(type);
  if (!is_nii_gz(path)) {
    write_with_itk(path, g, channels, type, data);
    verify_written(path, data_bytes);
    return;
  }
  // .nii.gz: ITK 5.2's NIfTI writer ignores the compression level and deflates at zlib's default (6): 0.76 s for
  // a 12.6 MB crop. ITK writes a .nii beside it (header semantics unchanged), which is compressed here at level 1
  // (the level nibabel uses): 0.20 s, 2.4 % larger. The .nii is removed whatever happens.
  const std::string plain = path.substr(0, path.size() - 7) + ".uncompressed.nii";
  const TempFileGuard in_flight(plain.c_str());
  struct Remove {
    std::string path;
    ~Remove() {
      std::error_code ec;
      fs::remove(path, ec);
    }
  } remove_plain{plain};
  try {
    write_with_itk(plain, g, channels, type, data);
  } catch (const Error& e) {  // name the file asked for
    std::string msg = e.what();
    if (msg.rfind(plain, 0) == 0) msg = path + msg.substr(plain.size());
    throw Error(e.code(), msg);
  }
  gzip_file(plain, path, 1);
  verify_written(path, data_bytes);  // a short .nii (niftilib only prints on a full disk) shows here
}

// ---- DICOM -----------------------------------------------------------------------------------------------

namespace {

using Vec3 = std::array<double, 3>;

double dot(const Vec3& a, const Vec3& b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }
Vec3 cross(const Vec3& a, const Vec3& b) {
  return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}
Vec3 sub(const Vec3& a, const Vec3& b) { return {a[0] - b[0], a[1] - b[1], a[2] - b[2]}; }
Vec3 add_scaled(const Vec3& a, const Vec3& b, double s) { return {a[0] + s * b[0], a[1] + s * b[1], a[2] + s * b[2]}; }
double norm(const Vec3& a) { return std::sqrt(dot(a, a)); }

const char* const kEnhancedUnsupported = "Enhanced (multi-frame) CT is not supported: convert with dcm2niix";

std::vector<double> parse_numbers(const std::string& s) {
  std::vector<double> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, '\\')) {
    item = trim(item);
    if (item.empty()) {
      out.push_back(std::numeric_limits<double>::quiet_NaN());
      continue;
    }
    out.push_back(parse_double(item, std::numeric_limits<double>::quiet_NaN()));
  }
  return out;
}

bool all_finite(const std::vector<double>& v) {
  return std::all_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); });
}

struct DicomFile {
  std::string path;
  std::string transfer_syntax;
  std::string sop_class, sop_instance, modality, image_type, series_uid, series_description;
  int series_number = 0;
  int instance_number = 0;
  unsigned rows = 0, cols = 0, samples_per_pixel = 1;
  bool enhanced = false;
  std::array<double, 6> orientation{};   // row cosine, column cosine
  std::array<double, 2> pixel_spacing{};  // DICOM order: between rows, between columns
  std::vector<Vec3> positions;            // one per frame
  std::vector<std::array<double, 2>> rescale;  // slope, intercept per frame
  std::string problem;                    // non-empty: cannot be placed in a volume (and why)
};

struct Slice {
  const DicomFile* file = nullptr;
  unsigned frame = 0;
  Vec3 position{};
  double depth = 0.0;  // position along the slice normal
  double slope = 1.0, intercept = 0.0;
  std::vector<float> pixels;  // rows * cols, row-major (column index fastest), rescaled
};

// Checks and stores ImageOrientationPatient (row, column cosines) and PixelSpacing; sets f.problem when unusable.
void set_plane_geometry(DicomFile& f, const std::vector<double>& orientation, const std::vector<double>& spacing) {
  if (orientation.size() != 6 || !all_finite(orientation)) {
    f.problem = "has no usable ImageOrientationPatient";
    return;
  }
  if (spacing.size() != 2 || !all_finite(spacing) || spacing[0] <= 0.0 || spacing[1] <= 0.0) {
    f.problem = "has no usable PixelSpacing";
    return;
  }
  Vec3 r{orientation[0], orientation[1], orientation[2]}, c{orientation[3], orientation[4], orientation[5]};
  const double nr = norm(r), nc = norm(c);
  if (nr < 0.5 || nc < 0.5 || std::abs(dot(r, c)) / (nr * nc) > 1e-3) {
    f.problem = "has an ImageOrientationPatient whose row and column cosines are not orthogonal unit vectors";
    return;
  }
  // Re-orthonormalise: DS strings carry a few digits only.
  for (auto& v : r) v /= nr;
  for (auto& v : c) v /= nc;
  c = add_scaled(c, r, -dot(r, c));
  const double nc2 = norm(c);
  for (auto& v : c) v /= nc2;
  f.orientation = {r[0], r[1], r[2], c[0], c[1], c[2]};
  f.pixel_spacing = {spacing[0], spacing[1]};
}

#if CTARR_DIRECT_GDCM

const gdcm::Tag kPixelData(0x7fe0, 0x0010);
const gdcm::Tag kImageType(0x0008, 0x0008);
const gdcm::Tag kSopClass(0x0008, 0x0016);
const gdcm::Tag kSopInstance(0x0008, 0x0018);
const gdcm::Tag kModality(0x0008, 0x0060);
const gdcm::Tag kSeriesDescription(0x0008, 0x103e);
const gdcm::Tag kSeriesUid(0x0020, 0x000e);
const gdcm::Tag kSeriesNumber(0x0020, 0x0011);
const gdcm::Tag kInstanceNumber(0x0020, 0x0013);
const gdcm::Tag kPosition(0x0020, 0x0032);
const gdcm::Tag kOrientation(0x0020, 0x0037);
const gdcm::Tag kSamplesPerPixel(0x0028, 0x0002);
const gdcm::Tag kNumberOfFrames(0x0028, 0x0008);
const gdcm::Tag kRows(0x0028, 0x0010);
const gdcm::Tag kColumns(0x0028, 0x0011);
const gdcm::Tag kPixelSpacing(0x0028, 0x0030);
const gdcm::Tag kRescaleIntercept(0x0028, 0x1052);
const gdcm::Tag kRescaleSlope(0x0028, 0x1053);
const gdcm::Tag kSharedGroups(0x5200, 0x9229);
const gdcm::Tag kPerFrameGroups(0x5200, 0x9230);
const gdcm::Tag kPlanePositionSeq(0x0020, 0x9113);
const gdcm::Tag kPlaneOrientationSeq(0x0020, 0x9116);
const gdcm::Tag kPixelMeasuresSeq(0x0028, 0x9110);
const gdcm::Tag kPixelValueTransformSeq(0x0028, 0x9145);

std::string element_string(const gdcm::StringFilter& sf, const gdcm::DataSet& ds, const gdcm::Tag& tag) {
  if (!ds.FindDataElement(tag)) return "";
  const gdcm::DataElement& de = ds.GetDataElement(tag);
  if (de.IsEmpty()) return "";
  return trim(sf.ToString(de));
}

// Value of `tag` inside item 1 of the sequences `seqs` (outermost first), starting at `ds`.
std::string nested_string(const gdcm::StringFilter& sf, const gdcm::DataSet& ds, const std::vector<gdcm::Tag>& seqs,
                          std::size_t level, const gdcm::Tag& tag) {
  if (level == seqs.size()) return element_string(sf, ds, tag);
  if (!ds.FindDataElement(seqs[level])) return "";
  const gdcm::DataElement& de = ds.GetDataElement(seqs[level]);
  gdcm::SmartPointer<gdcm::SequenceOfItems> sq = de.GetValueAsSQ();
  if (!sq || sq->GetNumberOfItems() < 1) return "";
  return nested_string(sf, sq->GetItem(1).GetNestedDataSet(), seqs, level + 1, tag);
}

// Reads the header of one file; nullopt when GDCM does not recognise it as DICOM or it holds no image.
std::optional<DicomFile> read_dicom_header(const std::string& path) {
  gdcm::Reader reader;
  reader.SetFileName(path.c_str());
  if (!reader.ReadUpToTag(kPixelData, {kPixelData})) return std::nullopt;
  const gdcm::File& file = reader.GetFile();
  const gdcm::DataSet& ds = file.GetDataSet();
  gdcm::StringFilter sf;
  sf.SetFile(file);

  DicomFile f;
  f.path = path;
  f.transfer_syntax = file.GetHeader().GetDataSetTransferSyntax().GetString()
                          ? file.GetHeader().GetDataSetTransferSyntax().GetString()
                          : "";
  f.rows = static_cast<unsigned>(parse_double(element_string(sf, ds, kRows), 0.0));
  f.cols = static_cast<unsigned>(parse_double(element_string(sf, ds, kColumns), 0.0));
  if (f.rows == 0 || f.cols == 0) return std::nullopt;  // DICOMDIR, structured report, ...: not an image
  f.samples_per_pixel = static_cast<unsigned>(parse_double(element_string(sf, ds, kSamplesPerPixel), 1.0));
  f.sop_class = element_string(sf, ds, kSopClass);
  if (f.sop_class.empty()) {
    const gdcm::DataSet& meta = file.GetHeader();
    if (meta.FindDataElement(gdcm::Tag(0x0002, 0x0002)))
      f.sop_class = element_string(sf, meta, gdcm::Tag(0x0002, 0x0002));
  }
  f.sop_instance = element_string(sf, ds, kSopInstance);
  f.modality = element_string(sf, ds, kModality);
  f.image_type = element_string(sf, ds, kImageType);
  f.series_uid = element_string(sf, ds, kSeriesUid);
  f.series_description = element_string(sf, ds, kSeriesDescription);
  f.series_number = static_cast<int>(parse_double(element_string(sf, ds, kSeriesNumber), 0.0));
  f.instance_number = static_cast<int>(parse_double(element_string(sf, ds, kInstanceNumber), 0.0));
  const int frames = std::max(1, static_cast<int>(parse_double(element_string(sf, ds, kNumberOfFrames), 1.0)));
  f.enhanced = ds.FindDataElement(kPerFrameGroups) || f.sop_class == "1.2.840.10008.5.1.4.1.1.2.1";

  auto parse_rescale = [](const std::string& slope_s, const std::string& inter_s) {
    const double slope = slope_s.empty() ? 1.0 : parse_double(slope_s, 1.0);
    const double inter = inter_s.empty() ? 0.0 : parse_double(inter_s, 0.0);
    return std::array<double, 2>{slope == 0.0 ? 1.0 : slope, inter};
  };

  std::vector<double> orientation, spacing;
  if (!f.enhanced) {
    if (frames > 1) {
      f.problem = "holds " + std::to_string(frames) + " frames without per-frame positions";
      return f;
    }
    orientation = parse_numbers(element_string(sf, ds, kOrientation));
    spacing = parse_numbers(element_string(sf, ds, kPixelSpacing));
    const std::vector<double> position = parse_numbers(element_string(sf, ds, kPosition));
    if (position.size() != 3 || !all_finite(position)) {
      f.problem = "has no usable ImagePositionPatient";
      return f;
    }
    f.positions.push_back({position[0], position[1], position[2]});
    f.rescale.push_back(parse_rescale(element_string(sf, ds, kRescaleSlope), element_string(sf, ds, kRescaleIntercept)));
  } else {
    // Enhanced CT: geometry and rescale live in the shared and per-frame functional groups.
    const std::string shared_orientation = nested_string(sf, ds, {kSharedGroups, kPlaneOrientationSeq}, 0, kOrientation);
    const std::string shared_spacing = nested_string(sf, ds, {kSharedGroups, kPixelMeasuresSeq}, 0, kPixelSpacing);
    std::string shared_slope = nested_string(sf, ds, {kSharedGroups, kPixelValueTransformSeq}, 0, kRescaleSlope);
    std::string shared_inter = nested_string(sf, ds, {kSharedGroups, kPixelValueTransformSeq}, 0, kRescaleIntercept);
    if (shared_slope.empty()) shared_slope = element_string(sf, ds, kRescaleSlope);
    if (shared_inter.empty()) shared_inter = element_string(sf, ds, kRescaleIntercept);
    if (!ds.FindDataElement(kPerFrameGroups)) {
      f.problem = std::string("has no per-frame functional groups. ") + kEnhancedUnsupported;
      return f;
    }
    gdcm::SmartPointer<gdcm::SequenceOfItems> per_frame = ds.GetDataElement(kPerFrameGroups).GetValueAsSQ();
    if (!per_frame || per_frame->GetNumberOfItems() != static_cast<gdcm::SequenceOfItems::SizeType>(frames)) {
      f.problem = std::string("has per-frame functional groups that do not match NumberOfFrames. ") + kEnhancedUnsupported;
      return f;
    }
    std::string first_orientation;
    for (gdcm::SequenceOfItems::SizeType n = 1; n <= per_frame->GetNumberOfItems(); ++n) {
      const gdcm::DataSet& item = per_frame->GetItem(n).GetNestedDataSet();
      std::string o = nested_string(sf, item, {kPlaneOrientationSeq}, 0, kOrientation);
      if (o.empty()) o = shared_orientation;
      if (n == 1) first_orientation = o;
      const std::vector<double> on = parse_numbers(o), o1 = parse_numbers(first_orientation);
      if (on.size() != 6 || o1.size() != 6 || !all_finite(on)) {
        f.problem = "frame " + std::to_string(n) + " has no usable ImageOrientationPatient";
        return f;
      }
      for (std::size_t k = 0; k < 6; ++k)
        if (std::abs(on[k] - o1[k]) > 1e-4) {
          f.problem = std::string("holds frames with different orientations. ") + kEnhancedUnsupported;
          return f;
        }
      const std::vector<double> p = parse_numbers(nested_string(sf, item, {kPlanePositionSeq}, 0, kPosition));
      if (p.size() != 3 || !all_finite(p)) {
        f.problem = "frame " + std::to_string(n) + " has no usable ImagePositionPatient";
        return f;
      }
      f.positions.push_back({p[0], p[1], p[2]});
      std::string slope = nested_string(sf, item, {kPixelValueTransformSeq}, 0, kRescaleSlope);
      std::string inter = nested_string(sf, item, {kPixelValueTransformSeq}, 0, kRescaleIntercept);
      f.rescale.push_back(parse_rescale(slope.empty() ? shared_slope : slope, inter.empty() ? shared_inter : inter));
    }
    orientation = parse_numbers(first_orientation);
    std::string s = nested_string(sf, per_frame->GetItem(1).GetNestedDataSet(), {kPixelMeasuresSeq}, 0, kPixelSpacing);
    spacing = parse_numbers(s.empty() ? shared_spacing : s);
  }

  set_plane_geometry(f, orientation, spacing);
  return f;
}

template <class T>
void rescale_copy(const char* raw, std::size_t count, double slope, double intercept, float* out) {
  T v;
  for (std::size_t n = 0; n < count; ++n) {
    std::memcpy(&v, raw + n * sizeof(T), sizeof(T));
    out[n] = static_cast<float>(static_cast<double>(v) * slope + intercept);
  }
}

// Decodes every frame of `file` that `slices` refer to (slices of that file, in any order).
void decode_file(const DicomFile& file, std::vector<Slice*>& slices) {
  gdcm::ImageReader reader;
  reader.SetFileName(file.path.c_str());
  const std::string ts_hint = " (transfer syntax " + file.transfer_syntax + ")";
  if (!reader.Read()) {
    if (file.enhanced) throw Error(ErrorCode::UnreadableInput, file.path + ": " + kEnhancedUnsupported);
    throw Error(ErrorCode::UnreadableInput, file.path + ": GDCM cannot read this DICOM image" + ts_hint);
  }
  const gdcm::Image& image = reader.GetImage();
  const gdcm::PixelFormat& pf = image.GetPixelFormat();
  if (pf.GetSamplesPerPixel() != 1)
    throw Error(ErrorCode::UnreadableInput,
                file.path + ": has " + std::to_string(pf.GetSamplesPerPixel()) +
                    " samples per pixel (a colour image); a CT slice has one");
  const unsigned cols = image.GetDimension(0), rows = image.GetDimension(1);
  const unsigned frames = image.GetNumberOfDimensions() > 2 ? image.GetDimension(2) : 1;
  if (cols != file.cols || rows != file.rows || frames != file.positions.size()) {
    if (file.enhanced) throw Error(ErrorCode::UnreadableInput, file.path + ": " + kEnhancedUnsupported);
    throw Error(ErrorCode::UnreadableInput, file.path + ": pixel data does not match the header's Rows/Columns");
  }
  std::vector<char> raw;
  try {
    raw.resize(image.GetBufferLength());
  } catch (const std::bad_alloc&) {
    throw Error(ErrorCode::UnreadableInput, file.path + ": not enough memory to decode the pixel data");
  }
  if (!image.GetBuffer(raw.data())) {
    gdcm::TransferSyntax ts = image.GetTransferSyntax();
    throw Error(ErrorCode::UnreadableInput,
                file.path + ": cannot decode the pixel data: unsupported transfer syntax " +
                    (ts.GetString() ? std::string(ts.GetString()) : file.transfer_syntax) +
                    " (convert the series with dcm2niix or gdcmconv --raw)");
  }
  const std::size_t per_frame = static_cast<std::size_t>(rows) * cols;
  const std::size_t bytes_per_value = raw.size() / (per_frame * frames);
  for (Slice* s : slices) {
    s->pixels.resize(per_frame);
    const char* src = raw.data() + static_cast<std::size_t>(s->frame) * per_frame * bytes_per_value;
    float* dst = s->pixels.data();
    switch (pf.GetScalarType()) {
      case gdcm::PixelFormat::UINT8: rescale_copy<std::uint8_t>(src, per_frame, s->slope, s->intercept, dst); break;
      case gdcm::PixelFormat::INT8: rescale_copy<std::int8_t>(src, per_frame, s->slope, s->intercept, dst); break;
      case gdcm::PixelFormat::UINT16: rescale_copy<std::uint16_t>(src, per_frame, s->slope, s->intercept, dst); break;
      case gdcm::PixelFormat::INT16: rescale_copy<std::int16_t>(src, per_frame, s->slope, s->intercept, dst); break;
      case gdcm::PixelFormat::UINT32: rescale_copy<std::uint32_t>(src, per_frame, s->slope, s->intercept, dst); break;
      case gdcm::PixelFormat::INT32: rescale_copy<std::int32_t>(src, per_frame, s->slope, s->intercept, dst); break;
      case gdcm::PixelFormat::FLOAT32: rescale_copy<float>(src, per_frame, s->slope, s->intercept, dst); break;
      case gdcm::PixelFormat::FLOAT64: rescale_copy<double>(src, per_frame, s->slope, s->intercept, dst); break;
      default:
        throw Error(ErrorCode::UnreadableInput,
                    file.path + ": pixel format " + pf.GetScalarTypeAsString() + " is not supported");
    }
  }
}

// True when GDCM parses the file as DICOM with an image or at least DICOM identifying attributes.
bool probe_dicom(const std::string& path) {
  gdcm::Reader reader;
  reader.SetFileName(path.c_str());
  if (!reader.ReadUpToTag(kPixelData, {kPixelData})) return false;
  const gdcm::DataSet& ds = reader.GetFile().GetDataSet();
  return ds.FindDataElement(kRows) || ds.FindDataElement(kSopClass) || ds.FindDataElement(kModality);
}

#else  // DICOM through itk::GDCMImageIO

std::string tag_value(const itk::GDCMImageIO& io, const char* key) {
  std::string v;
  itk::ExposeMetaData<std::string>(io.GetMetaDataDictionary(), key, v);
  return trim(v);
}

std::optional<DicomFile> read_dicom_header(const std::string& path) {
  auto io = itk::GDCMImageIO::New();
  try {
    if (!io->CanReadFile(path.c_str())) return std::nullopt;
    io->SetFileName(path);
    io->ReadImageInformation();
  } catch (const itk::ExceptionObject&) {
    return std::nullopt;
  }
  DicomFile f;
  f.path = path;
  f.transfer_syntax = tag_value(*io, "0002|0010");
  f.cols = static_cast<unsigned>(io->GetDimensions(0));
  f.rows = static_cast<unsigned>(io->GetDimensions(1));
  if (f.rows == 0 || f.cols == 0) return std::nullopt;
  const unsigned frames = io->GetNumberOfDimensions() > 2 ? static_cast<unsigned>(io->GetDimensions(2)) : 1u;
  f.samples_per_pixel = io->GetNumberOfComponents();
  f.sop_class = tag_value(*io, "0008|0016");
  if (f.sop_class.empty()) f.sop_class = tag_value(*io, "0002|0002");
  f.sop_instance = tag_value(*io, "0008|0018");
  f.modality = tag_value(*io, "0008|0060");
  f.image_type = tag_value(*io, "0008|0008");
  f.series_uid = tag_value(*io, "0020|000e");
  f.series_description = tag_value(*io, "0008|103e");
  f.series_number = static_cast<int>(parse_double(tag_value(*io, "0020|0011"), 0.0));
  f.instance_number = static_cast<int>(parse_double(tag_value(*io, "0020|0013"), 0.0));
  f.enhanced = f.sop_class == "1.2.840.10008.5.1.4.1.1.2.1";
  std::vector<double> orientation, spacing;
  if (!f.enhanced) {
    if (frames > 1) {
      f.problem = "holds " + std::to_string(frames) + " frames without per-frame positions";
      return f;
    }
    orientation = parse_numbers(tag_value(*io, "0020|0037"));
    spacing = parse_numbers(tag_value(*io, "0028|0030"));
    const std::vector<double> position = parse_numbers(tag_value(*io, "0020|0032"));
    if (position.size() != 3 || !all_finite(position)) {
      f.problem = "has no usable ImagePositionPatient";
      return f;
    }
    f.positions.push_back({position[0], position[1], position[2]});
  } else {
    // itk::GDCMImageIO does not expose the per-frame functional groups: place the frames on GDCM's grid.
    const std::vector<double> d0 = io->GetDirection(0), d1 = io->GetDirection(1), d2 = io->GetDirection(2);
    orientation = {d0[0], d0[1], d0[2], d1[0], d1[1], d1[2]};
    spacing = {io->GetSpacing(1), io->GetSpacing(0)};
    const Vec3 origin{io->GetOrigin(0), io->GetOrigin(1), io->GetOrigin(2)};
    const Vec3 normal{d2[0], d2[1], d2[2]};
    for (unsigned k = 0; k < frames; ++k) f.positions.push_back(add_scaled(origin, normal, k * io->GetSpacing(2)));
    if (frames < 2 || !(io->GetSpacing(2) > 0.0)) {
      f.problem = std::string("has frames whose positions cannot be established. ") + kEnhancedUnsupported;
      return f;
    }
  }
  f.rescale.assign(f.positions.size(), {1.0, 0.0});  // itk::GDCMImageIO applies the rescale itself
  set_plane_geometry(f, orientation, spacing);
  return f;
}

void decode_file(const DicomFile& file, std::vector<Slice*>& slices) {
  auto io = itk::GDCMImageIO::New();
  std::vector<char> raw;
  unsigned cols = 0, rows = 0, frames = 1;
  try {
    io->SetFileName(file.path);
    io->ReadImageInformation();
    cols = static_cast<unsigned>(io->GetDimensions(0));
    rows = static_cast<unsigned>(io->GetDimensions(1));
    frames = io->GetNumberOfDimensions() > 2 ? static_cast<unsigned>(io->GetDimensions(2)) : 1u;
    itk::ImageIORegion region(io->GetNumberOfDimensions());
    for (unsigned d = 0; d < io->GetNumberOfDimensions(); ++d) {
      region.SetIndex(d, 0);
      region.SetSize(d, io->GetDimensions(d));
    }
    io->SetIORegion(region);
    raw.resize(static_cast<std::size_t>(io->GetImageSizeInBytes()));
    io->Read(raw.data());
  } catch (const itk::ExceptionObject& e) {
    if (file.enhanced) throw Error(ErrorCode::UnreadableInput, file.path + ": " + kEnhancedUnsupported);
    throw Error(ErrorCode::UnreadableInput, file.path + ": cannot decode the pixel data: unsupported transfer syntax " +
                                                file.transfer_syntax + " (" + condense(e) + ")");
  }
  if (io->GetNumberOfComponents() != 1)
    throw Error(ErrorCode::UnreadableInput, file.path + ": is a colour image; a CT slice has one sample per pixel");
  if (cols != file.cols || rows != file.rows || frames != file.positions.size())
    throw Error(ErrorCode::UnreadableInput, file.path + ": pixel data does not match the header's Rows/Columns");
  const std::size_t per_frame = static_cast<std::size_t>(rows) * cols;
  const std::size_t bytes_per_value = io->GetComponentSize();
  for (Slice* s : slices) {
    s->pixels.resize(per_frame);
    convert_buffer(io->GetComponentType(), raw.data() + static_cast<std::size_t>(s->frame) * per_frame * bytes_per_value,
                   per_frame, s->pixels.data());
    if (s->slope != 1.0 || s->intercept != 0.0)
      for (float& v : s->pixels) v = static_cast<float>(static_cast<double>(v) * s->slope + s->intercept);
  }
}

bool probe_dicom(const std::string& path) {
  auto io = itk::GDCMImageIO::New();
  return io->CanReadFile(path.c_str());
}

#endif  // CTARR_DIRECT_GDCM

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
