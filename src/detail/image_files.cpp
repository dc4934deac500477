// ctarr — NIfTI, NRRD and MetaImage files through ITK: reading (with ctarr's own checks before ITK sees a file) and
// writing (verified, .nii.gz compressed at level 1). DICOM goes to dicom_series.cpp.
#include "detail/itk_bridge.hpp"

#include "ctarr/error.hpp"
#include "detail/dicom_guard.hpp"
#include "detail/gzip_writer.hpp"
#include "detail/itk_support.hpp"
#include "detail/nifti_reader.hpp"
#include "temp_files.hpp"

#include <itkImage.h>
#include <itkImageFileWriter.h>
#include <itkMetaImageIO.h>
#include <itkNiftiImageIO.h>
#include <itkNrrdImageIO.h>

#include <zlib.h>  // linked through ITK (ITKZLIB)

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <new>
#include <optional>
#include <sstream>

#include <fcntl.h>
#include <unistd.h>

namespace ctarr::detail {

namespace fs = std::filesystem;
using namespace bridge;

namespace {

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

}  // namespace

// ---- image files through ITK -----------------------------------------------------------------------------

namespace {

// The first of ITK's NIfTI, NRRD and MetaImage readers that accepts the file, or null. Not
// itk::ImageIOFactory::CreateImageIO: every IO factory linked into the program registers itself, GDCM's among them,
// and GDCMImageIO::CanReadFile parses the whole file with GDCM (which aborts or allocates gigabytes on a 1 KB
// garbage file). DICOM is read by dicom_series.cpp, behind dicom_guard.cpp.
itk::ImageIOBase::Pointer reader_for(const std::string& path) {
  const itk::ImageIOBase::Pointer candidates[] = {itk::NiftiImageIO::New().GetPointer(),
                                                  itk::NrrdImageIO::New().GetPointer(),
                                                  itk::MetaImageIO::New().GetPointer()};
  for (const itk::ImageIOBase::Pointer& io : candidates)
    if (io->CanReadFile(path.c_str())) return io;
  return nullptr;
}

}  // namespace

RawImage read_image_file(const std::string& path, ReadKind kind) {
  ensure_setup();
  if (const std::string problem = dicom_structure_problem(path); !problem.empty())
    throw Error(ErrorCode::UnreadableInput, path + ": a broken DICOM file: " + problem);
  itk::ImageIOBase::Pointer io;
  try {
    io = reader_for(path);
  } catch (const itk::ExceptionObject& e) {
    throw Error(ErrorCode::UnreadableInput, path + ": cannot read the image: " + condense(e));
  } catch (const std::exception& e) {
    throw Error(ErrorCode::UnreadableInput, path + ": cannot read the image: " + e.what());
  }
  if (!io) {
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
  // .nii.gz: ITK 5.2's NIfTI writer ignores the compression level and deflates at zlib's default (6) on one core:
  // 0.76 s for a 12.6 MB crop. ITK writes a .nii beside it (header semantics unchanged), which is compressed here at
  // level 1 (the level nibabel uses; 2.4 % larger) on all cores (gzip_writer.hpp). The .nii is removed whatever
  // happens.
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
  // niftilib only prints on a full disk: a short .nii shows in its size. The .nii.gz is then written with every
  // byte checked and flushed (gzip_file), so it is not read back.
  std::error_code ec;
  const std::uintmax_t plain_size = fs::file_size(plain, ec);
  if (ec || plain_size < 348 + data_bytes)
    throw Error(ErrorCode::OutputNotWritable, path + ": cannot write: the file is incomplete (disk full?)");
  gzip_file(plain, path, 1);
}

}  // namespace ctarr::detail
