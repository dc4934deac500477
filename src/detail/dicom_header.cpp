// ctarr — one DICOM file's header and frames through GDCM (see dicom_header.hpp).
#include "detail/dicom_header.hpp"

#include "ctarr/error.hpp"
#include "detail/dicom_guard.hpp"
#include "detail/itk_support.hpp"

#if CTARR_DIRECT_GDCM
#include <gdcmImage.h>
#include <gdcmImageReader.h>
#include <gdcmReader.h>
#include <gdcmSequenceOfItems.h>
#include <gdcmStringFilter.h>
#include <gdcmTransferSyntax.h>
#else
#include <itkGDCMImageIO.h>
#include <itkMetaDataObject.h>
#endif

#include <algorithm>
#include <cstring>
#include <limits>
#include <sstream>

namespace ctarr::detail::bridge {


namespace {

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

}  // namespace

std::optional<DicomFile> read_dicom_header(const std::string& path) {
  if (!gdcm_may_read(path)) return std::nullopt;  // before GDCM: it aborts or allocates on what the guard refuses
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

namespace {

template <class T>
void rescale_copy(const char* raw, std::size_t count, double slope, double intercept, float* out) {
  T v;
  for (std::size_t n = 0; n < count; ++n) {
    std::memcpy(&v, raw + n * sizeof(T), sizeof(T));
    out[n] = static_cast<float>(static_cast<double>(v) * slope + intercept);
  }
}

}  // namespace

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

bool probe_dicom(const std::string& path) {
  if (!gdcm_may_read(path)) return false;
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

}  // namespace

std::optional<DicomFile> read_dicom_header(const std::string& path) {
  if (!gdcm_may_read(path)) return std::nullopt;  // before GDCM: it aborts or allocates on what the guard refuses
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
  if (!gdcm_may_read(path)) return false;
  auto io = itk::GDCMImageIO::New();
  return io->CanReadFile(path.c_str());
}

#endif  // CTARR_DIRECT_GDCM

}  // namespace ctarr::detail::bridge
