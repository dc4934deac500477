// ctarr — the DICOM element walker (see dicom_guard.hpp).
//
// Debian's GDCM 3.0 is built with assertions, and it believes the lengths a file declares:
// - a DICOM file cut short (an interrupted transfer, found by fuzz_read_dicom) makes
//   FileMetaInformation::ReadCompat assert and abort the whole process, a batch included;
// - a file without the DICM magic (GDCM reads those too: preamble-less DICOM, ACR-NEMA) whose element declares more
//   bytes than the file holds makes GDCM allocate that length (4 GB for a 1 KB file, found by fuzz_read_dicom) and
//   then assert in ExplicitImplicitDataElement::ReadPreValue.
// So every file is walked here first, element by element (explicit or implicit VR, either byte order, sequences and
// encapsulated pixel data of undefined length): a DICM file that does not walk to its end is refused with what is
// wrong; a file without the magic that walks under no transfer syntax GDCM would guess is not DICOM. Only element
// headers are read, never the values. Deflated data sets are not walked past their file meta header.
#include "detail/dicom_guard.hpp"

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <optional>
#include <vector>

namespace ctarr::detail::bridge {

namespace {

// Random access to a file's bytes through a small window: the walker jumps over values and reads headers only.
class FileBytes {
 public:
  explicit FileBytes(const std::string& path) : in_(path, std::ios::binary) {
    if (!in_) return;
    in_.seekg(0, std::ios::end);
    const std::streamoff end = in_.tellg();
    size_ = end > 0 ? static_cast<std::size_t>(end) : 0;
  }

  bool opened() const { return static_cast<bool>(in_) || size_ > 0; }
  bool failed() const { return failed_; }
  std::size_t size() const { return size_; }

  // The byte at p < size(); 0 (and failed()) when the file cannot be read there.
  unsigned char operator[](std::size_t p) {
    if (p < start_ || p >= start_ + window_.size()) load(p);
    return p - start_ < window_.size() ? window_[p - start_] : 0;
  }

 private:
  static constexpr std::size_t kWindow = 1 << 16;

  void load(std::size_t p) {
    start_ = p;
    window_.resize(std::min(kWindow, size_ - std::min(p, size_)));
    in_.clear();
    in_.seekg(static_cast<std::streamoff>(p));
    if (!in_.read(reinterpret_cast<char*>(window_.data()), static_cast<std::streamsize>(window_.size()))) {
      failed_ = true;
      window_.clear();
    }
  }

  std::ifstream in_;
  std::size_t size_ = 0;
  std::size_t start_ = 0;
  std::vector<unsigned char> window_;
  bool failed_ = false;
};

enum class Syntax { ExplicitLittle, ImplicitLittle, ExplicitBig };

class DicomWalker {
 public:
  explicit DicomWalker(FileBytes& d) : d_(d) {}

  // A file meta group (explicit VR little endian) from `pos`, then the data set in the syntax it names, to the end
  // of the file. "" when it walks; else what is wrong.
  std::string check_from_meta(std::size_t pos) {
    std::string syntax;
    while (pos + 8 <= d_.size() && u16le(pos) == 0x0002) {
      const std::uint16_t element = u16le(pos + 2);
      std::uint64_t len = 0;
      std::size_t header = 0;
      if (!explicit_header(pos, false, len, header)) return "the file meta header is cut short";
      if (pos + header + len > d_.size()) return "the file meta header is cut short";
      if (element == 0x0010) {
        syntax.clear();
        for (std::size_t k = 0; k < len; ++k) syntax += static_cast<char>(d_[pos + header + k]);
      }
      pos += header + static_cast<std::size_t>(len);
    }
    // Nothing after the file meta header: GDCM 3.0 asserts ("Should not happen") reading on past the end (found by
    // fuzz_read_dicom: a 192-byte file whose meta group ends the file).
    if (pos >= d_.size()) return "the file ends after its file meta header: it holds no data set (cut short?)";
    while (!syntax.empty() && (syntax.back() == '\0' || syntax.back() == ' ')) syntax.pop_back();
    if (syntax == "1.2.840.10008.1.2.1.99") return "";  // deflated: GDCM inflates and checks it
    const Syntax s = syntax == "1.2.840.10008.1.2"     ? Syntax::ImplicitLittle
                     : syntax == "1.2.840.10008.1.2.2" ? Syntax::ExplicitBig
                                                       : Syntax::ExplicitLittle;
    return check_data_set(pos, s, false);
  }

  // The data set from `pos` to the end of the file in `syntax`. With `known_vrs`, an explicit VR must be one of the
  // standard's (a guessed syntax is wrong otherwise). "" when it walks; else what is wrong.
  std::string check_data_set(std::size_t pos, Syntax syntax, bool known_vrs) {
    explicit_ = syntax != Syntax::ImplicitLittle;
    big_ = syntax == Syntax::ExplicitBig;
    known_vrs_ = known_vrs;
    problem_.clear();
    const bool walked = walk_dataset(pos, false, 0);
    if (d_.failed()) return "the file cannot be read";
    return walked ? "" : problem_;
  }

 private:
  static constexpr std::uint32_t kUndefined = 0xFFFFFFFFu;
  static constexpr int kMaxDepth = 32;

  std::uint16_t u16le(std::size_t p) { return static_cast<std::uint16_t>(d_[p] | (d_[p + 1] << 8)); }
  std::uint32_t u32le(std::size_t p) {
    return static_cast<std::uint32_t>(d_[p]) | (static_cast<std::uint32_t>(d_[p + 1]) << 8) |
           (static_cast<std::uint32_t>(d_[p + 2]) << 16) | (static_cast<std::uint32_t>(d_[p + 3]) << 24);
  }
  std::uint16_t u16(std::size_t p) { return big_ ? static_cast<std::uint16_t>((d_[p] << 8) | d_[p + 1]) : u16le(p); }
  std::uint32_t u32(std::size_t p) {
    if (!big_) return u32le(p);
    return (static_cast<std::uint32_t>(d_[p]) << 24) | (static_cast<std::uint32_t>(d_[p + 1]) << 16) |
           (static_cast<std::uint32_t>(d_[p + 2]) << 8) | static_cast<std::uint32_t>(d_[p + 3]);
  }

  static bool known_vr(char a, char b) {
    static const char* const kVrs[] = {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT",
                                       "OB", "OD", "OF", "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST",
                                       "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV"};
    return std::any_of(std::begin(kVrs), std::end(kVrs), [&](const char* vr) { return vr[0] == a && vr[1] == b; });
  }

  // Explicit VR element header at pos: its length (kUndefined kept as is) and header size. False when it does not
  // fit in the file, or (with known_vrs_) its VR is not one of the standard's.
  bool explicit_header(std::size_t pos, bool use_byte_order, std::uint64_t& len, std::size_t& header) {
    const char a = static_cast<char>(d_[pos + 4]), b = static_cast<char>(d_[pos + 5]);
    if (known_vrs_ && !known_vr(a, b)) return false;
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
      if (d_.failed()) return false;
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
      if (explicit_) {
        if (!explicit_header(pos, true, len, header))
          return fail(known_vrs_ ? "an element has no valid value representation, or its header is cut short"
                                 : "the file ends inside a data element header");
      } else {
        len = u32(pos + 4);
      }
      pos += header;
      if (len == kUndefined) {
        const bool encapsulated = group == 0x7FE0 && element == 0x0010;
        if (!walk_sequence(pos, encapsulated, depth + 1)) return false;
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
      if (d_.failed()) return false;
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

  FileBytes& d_;
  bool explicit_ = true, big_ = false, known_vrs_ = false;
  std::string problem_;
};

bool has_dicm_magic(FileBytes& bytes) {
  if (bytes.size() < 132) return false;
  return bytes[128] == 'D' && bytes[129] == 'I' && bytes[130] == 'C' && bytes[131] == 'M' && !bytes.failed();
}

}  // namespace

std::string dicom_structure_problem(const std::string& path) {
  FileBytes bytes(path);
  if (!bytes.opened() || !has_dicm_magic(bytes)) return "";
  return DicomWalker(bytes).check_from_meta(132);
}

bool walks_as_dicom_without_preamble(const std::string& path) {
  FileBytes bytes(path);
  if (!bytes.opened() || bytes.size() < 8) return false;
  DicomWalker walker(bytes);
  // A file meta group at offset 0 (a preamble-less Part 10 file) names its syntax.
  if (bytes[0] == 0x02 && bytes[1] == 0x00) return walker.check_from_meta(0).empty();
  // No meta group: GDCM guesses the syntax from the first element, as does this walk.
  for (const Syntax guess : {Syntax::ExplicitLittle, Syntax::ImplicitLittle, Syntax::ExplicitBig})
    if (walker.check_data_set(0, guess, true).empty()) return true;
  return false;
}

bool gdcm_may_read(const std::string& path) {
  FileBytes bytes(path);
  if (!bytes.opened()) return false;
  if (has_dicm_magic(bytes)) return DicomWalker(bytes).check_from_meta(132).empty();
  return walks_as_dicom_without_preamble(path);
}

}  // namespace ctarr::detail::bridge
