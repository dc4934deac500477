// ctarr — set-up, error text and component types shared by the ITK/GDCM translation units of io.
#include "detail/itk_support.hpp"

#include "ctarr/error.hpp"

#include <itkMetaDataObject.h>
#include <itkMetaImageIOFactory.h>
#include <itkNiftiImageIOFactory.h>
#include <itkNrrdImageIOFactory.h>
#include <itkObjectFactoryBase.h>
#include <itkVersion.h>

#if CTARR_DIRECT_GDCM
#include <gdcmTrace.h>
#include <gdcmVersion.h>
#else
#include <dlfcn.h>
#endif

#include <cstring>
#include <mutex>
#include <sstream>

namespace ctarr::detail {

namespace bridge {

// ---- set-up and error translation ------------------------------------------------------------------------

// The library is static: ITK's automatic IO factory registration (a static object in each TU that includes
// itkImageFileReader.h with ITK_IO_FACTORY_REGISTER_MANAGER) is not reliable here, so register explicitly.
void ensure_setup() {
  static std::once_flag once;
  std::call_once(once, [] {
    itk::NiftiImageIOFactory::RegisterOneFactory();
    itk::NrrdImageIOFactory::RegisterOneFactory();
    itk::MetaImageIOFactory::RegisterOneFactory();
    // ITK 5.2 builds its list of factories on the first object it creates (ObjectFactoryBase::Initialize, reached
    // through CreateInstance), without a lock: two threads creating their first ITK objects at once (the batch reads
    // the next scan while the atlas loads) could both build it and abort in RegisterInternal. Build it here, once.
    static_cast<void>(itk::ObjectFactoryBase::CreateInstance("ctarr: set up the factory list"));
    // No GDCMImageIOFactory: its CanReadFile, asked about every file the other readers refuse, parses the whole
    // file with GDCM, which aborts or allocates gigabytes on a 1 KB garbage file. DICOM goes through
    // dicom_series.cpp, behind the element walker of dicom_guard.cpp.
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

std::string fmt_double(double v, int precision) {
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

namespace {

template <class T>
void convert_to_float(const char* raw, std::size_t count, float* out) {
  T v;
  for (std::size_t n = 0; n < count; ++n) {
    std::memcpy(&v, raw + n * sizeof(T), sizeof(T));
    out[n] = static_cast<float>(v);
  }
}

}  // namespace

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

}  // namespace bridge

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

}  // namespace ctarr::detail
