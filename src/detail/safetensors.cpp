#include "detail/safetensors.hpp"

#include "ctarr/error.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <utility>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.cpp assumes a little-endian host"
#endif

namespace ctarr::detail {

namespace {

using json = nlohmann::json;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw Error(ErrorCode::ModelFailure, "model file " + path + ": " + what +
                                           " (the file is corrupt, truncated or not a safetensors file; "
                                           "re-download or re-export it)");
}

int dtype_size(const std::string& dtype) {
  if (dtype == "F32") return 4;
  if (dtype == "F16" || dtype == "BF16") return 2;
  return 0;
}

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t mant = h & 0x3ffu;
  std::uint32_t bits = 0;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / nan
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

float bf16_to_float(std::uint16_t b) {
  const std::uint32_t bits = static_cast<std::uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// ---- SHA-256 (FIPS 180-4) ----------------------------------------------------------------------------------

class Sha256 {
 public:
  void update(const unsigned char* p, std::size_t n) {
    length_ += n;
    while (n > 0) {
      const std::size_t take = std::min(n, std::size_t{64} - fill_);
      std::memcpy(block_.data() + fill_, p, take);
      fill_ += take;
      p += take;
      n -= take;
      if (fill_ == 64) {
        compress(block_.data());
        fill_ = 0;
      }
    }
  }
  std::string hex() {
    const std::uint64_t bits = length_ * 8;
    const unsigned char pad = 0x80;
    update(&pad, 1);
    const unsigned char zero = 0;
    while (fill_ != 56) update(&zero, 1);
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(bits >> (56 - 8 * i));
    update(len, 8);
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (std::uint32_t v : h_)
      for (int i = 7; i >= 0; --i) out += digits[(v >> (4 * i)) & 0xfu];
    return out;
  }

 private:
  static std::uint32_t rotr(std::uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
  void compress(const unsigned char* b) {
    static const std::uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    std::uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = (static_cast<std::uint32_t>(b[4 * i]) << 24) | (static_cast<std::uint32_t>(b[4 * i + 1]) << 16) |
             (static_cast<std::uint32_t>(b[4 * i + 2]) << 8) | static_cast<std::uint32_t>(b[4 * i + 3]);
    for (int i = 16; i < 64; ++i) {
      const std::uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const std::uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    std::uint32_t a = h_[0], bb = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int i = 0; i < 64; ++i) {
      const std::uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      const std::uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c));
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = bb;
      bb = a;
      a = t1 + t2;
    }
    h_[0] += a;
    h_[1] += bb;
    h_[2] += c;
    h_[3] += d;
    h_[4] += e;
    h_[5] += f;
    h_[6] += g;
    h_[7] += h;
  }

  std::array<std::uint32_t, 8> h_{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::array<unsigned char, 64> block_{};
  std::size_t fill_ = 0;
  std::uint64_t length_ = 0;
};

}  // namespace

std::int64_t SafetensorsTensor::numel() const {
  std::int64_t n = 1;
  for (std::int64_t s : shape) n *= s;
  return n;
}

std::string shape_to_string(const std::vector<std::int64_t>& shape) {
  std::ostringstream os;
  os << '[';
  for (std::size_t a = 0; a < shape.size(); ++a) os << (a ? ", " : "") << shape[a];
  os << ']';
  return os.str();
}

SafetensorsFile read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Error(ErrorCode::ModelFailure,
                "model file " + path + " cannot be opened (missing or unreadable; check --model / CTARR_DATA_DIR)");
  in.seekg(0, std::ios::end);
  const std::streamoff file_size_signed = in.tellg();
  if (file_size_signed < 0) fail(path, "cannot determine the file size");
  const auto file_size = static_cast<std::uint64_t>(file_size_signed);
  in.seekg(0, std::ios::beg);
  if (file_size < 8) fail(path, "file is " + std::to_string(file_size) + " bytes, shorter than the 8-byte header length");

  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > file_size - 8)
    fail(path, "header length " + std::to_string(header_len) + " exceeds the file size " + std::to_string(file_size));
  if (header_len < 2) fail(path, "header length " + std::to_string(header_len) + " is too small for a JSON object");
  const std::uint64_t data_size = file_size - 8 - header_len;

  std::string header_text(static_cast<std::size_t>(header_len), '\0');
  in.read(header_text.data(), static_cast<std::streamsize>(header_len));
  if (!in) fail(path, "cannot read the header");

  json header;
  try {
    header = json::parse(header_text);
  } catch (const json::exception& e) {
    fail(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) fail(path, "header is not a JSON object");

  struct Entry {
    std::string name;
    std::string dtype;
    std::vector<std::int64_t> shape;
    std::uint64_t begin = 0, end = 0;
  };
  std::vector<Entry> entries;
  SafetensorsFile result;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail(path, "__metadata__ is not a JSON object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) fail(path, "__metadata__ value '" + m.key() + "' is not a string");
        result.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object()) fail(path, "entry '" + name + "' is not a JSON object");
    if (!v.contains("dtype") || !v["dtype"].is_string()) fail(path, "tensor '" + name + "' has no string dtype");
    if (!v.contains("shape") || !v["shape"].is_array()) fail(path, "tensor '" + name + "' has no shape array");
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
      fail(path, "tensor '" + name + "' has no [begin, end] data_offsets");
    Entry e;
    e.name = name;
    e.dtype = v["dtype"].get<std::string>();
    const int esize = dtype_size(e.dtype);
    if (esize == 0)
      fail(path, "tensor '" + name + "' has dtype " + e.dtype + "; only F32, F16 and BF16 are supported");
    std::uint64_t bytes = static_cast<std::uint64_t>(esize);
    for (const json& s : v["shape"]) {
      if (!s.is_number_unsigned()) fail(path, "tensor '" + name + "' has a shape entry that is not a non-negative integer");
      const auto d = s.get<std::uint64_t>();
      if (d != 0 && bytes > data_size / d)
        fail(path, "tensor '" + name + "' needs more bytes than the file's data section holds (" +
                       std::to_string(data_size) + ")");
      bytes *= d;
      e.shape.push_back(static_cast<std::int64_t>(d));
    }
    for (const json& o : v["data_offsets"])
      if (!o.is_number_unsigned()) fail(path, "tensor '" + name + "' has data_offsets that are not non-negative integers");
    e.begin = v["data_offsets"][0].get<std::uint64_t>();
    e.end = v["data_offsets"][1].get<std::uint64_t>();
    if (e.begin > e.end) fail(path, "tensor '" + name + "' has data_offsets begin > end");
    if (e.end > data_size)
      fail(path, "tensor '" + name + "' ends at byte " + std::to_string(e.end) + " of the data but the data holds only " +
                     std::to_string(data_size) + " bytes");
    if (e.end - e.begin != bytes)
      fail(path, "tensor '" + name + "' of shape " + shape_to_string(e.shape) + " and dtype " + e.dtype + " needs " +
                     std::to_string(bytes) + " bytes but its data_offsets span " + std::to_string(e.end - e.begin));
    entries.push_back(std::move(e));
  }

  // Offsets must tile the data buffer exactly: sorted, no overlap, no holes, nothing after the last tensor.
  std::vector<const Entry*> order;
  for (const Entry& e : entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  std::uint64_t pos = 0;
  for (const Entry* e : order) {
    if (e->begin < pos) fail(path, "tensor '" + e->name + "' overlaps the previous tensor's data");
    if (e->begin > pos) fail(path, "there is a hole in the data before tensor '" + e->name + "'");
    pos = e->end;
  }
  if (pos != data_size)
    fail(path, std::to_string(data_size - pos) + " bytes of data after the last tensor (the header does not describe them)");

  std::vector<unsigned char> data(static_cast<std::size_t>(data_size));
  if (data_size > 0) {
    in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(data_size));
    if (!in || static_cast<std::uint64_t>(in.gcount()) != data_size) fail(path, "cannot read the tensor data");
  }

  for (const Entry& e : entries) {
    SafetensorsTensor t;
    t.shape = e.shape;
    t.dtype = e.dtype;
    const unsigned char* src = data.data() + e.begin;
    const std::size_t n = static_cast<std::size_t>(e.end - e.begin) / static_cast<std::size_t>(dtype_size(e.dtype));
    t.data.resize(n);
    if (e.dtype == "F32") {
      if (n) std::memcpy(t.data.data(), src, n * 4);
    } else {
      for (std::size_t i = 0; i < n; ++i) {
        const std::uint16_t h = static_cast<std::uint16_t>(src[2 * i] | (src[2 * i + 1] << 8));
        t.data[i] = e.dtype == "F16" ? half_to_float(h) : bf16_to_float(h);
      }
    }
    result.tensors.emplace(e.name, std::move(t));
  }
  return result;
}

void write_safetensors(const std::string& path, const SafetensorsFile& file) {
  json header = json::object();
  if (!file.metadata.empty()) header["__metadata__"] = file.metadata;
  std::uint64_t offset = 0;
  for (const auto& [name, t] : file.tensors) {
    if (t.numel() != static_cast<std::int64_t>(t.data.size()))
      throw Error(ErrorCode::Internal, "write_safetensors: tensor '" + name + "' has shape " + shape_to_string(t.shape) +
                                           " but " + std::to_string(t.data.size()) + " values");
    const std::uint64_t bytes = t.data.size() * 4;
    header[name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw Error(ErrorCode::OutputNotWritable, "cannot create " + path + " (check the folder exists and is writable)");
  unsigned char len[8];
  const std::uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const auto& [name, t] : file.tensors)
    out.write(reinterpret_cast<const char*>(t.data.data()), static_cast<std::streamsize>(t.data.size() * 4));
  out.flush();
  if (!out) throw Error(ErrorCode::OutputNotWritable, "cannot write " + path + " (disk full?)");
}

std::string sha256_file_hex(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::ModelFailure, "cannot open " + path + " to compute its sha256");
  Sha256 h;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const std::streamsize got = in.gcount();
    if (got > 0) h.update(reinterpret_cast<const unsigned char*>(buf.data()), static_cast<std::size_t>(got));
  }
  if (in.bad()) throw Error(ErrorCode::ModelFailure, "error reading " + path + " to compute its sha256");
  return h.hex();
}

}  // namespace ctarr::detail
