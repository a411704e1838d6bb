#include "workloads/tensor_file.hpp"

#include <algorithm>
#include <bit>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "core/dtype.hpp"
#include "core/errors.hpp"

namespace ab {

static_assert(std::endian::native == std::endian::little,
              "the readers assume a little-endian host (both formats store little-endian data)");

namespace {

constexpr uint64_t kMaxHeader = 100ull << 20;  // the safetensors reference caps its header at 100 MB

[[noreturn]] void fail(const std::string& file, const std::string& what) {
  throw InputError(file + ": " + what);
}

// A JSON value for a message, cut short: a hostile header may hold megabytes in one entry.
template <class J>
std::string brief(const J& j) {
  std::string s = j.dump();
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

uint64_t file_size(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) fail(path, "no such file");
  if (std::filesystem::is_directory(path, ec)) fail(path, "is a directory, not a tensor file");
  const auto n = std::filesystem::file_size(path, ec);
  if (ec) fail(path, "cannot read its size: " + ec.message());
  return n;
}

std::string read_bytes(const std::string& path, uint64_t offset, uint64_t count) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, std::string("cannot open: ") + std::strerror(errno));
  std::string buf(static_cast<size_t>(count), '\0');
  f.seekg(static_cast<std::streamoff>(offset));
  f.read(buf.data(), static_cast<std::streamsize>(count));
  if (static_cast<uint64_t>(f.gcount()) != count)
    fail(path, "truncated: expected " + std::to_string(count) + " bytes at offset " +
                   std::to_string(offset) + ", read " + std::to_string(f.gcount()));
  return buf;
}

// numel × item_bytes, refusing overflow (a header that lies about sizes must not wrap around).
uint64_t checked_bytes(const std::string& file, const std::string& what,
                       const std::vector<int64_t>& shape, int item) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) fail(file, what + ": negative dimension " + std::to_string(d));
    if (d != 0 && n > (std::numeric_limits<uint64_t>::max() >> 2) / static_cast<uint64_t>(d))
      fail(file, what + ": shape is implausibly large (element count overflows)");
    n *= static_cast<uint64_t>(d);
  }
  if (n > (std::numeric_limits<uint64_t>::max() >> 2) / static_cast<uint64_t>(item))
    fail(file, what + ": shape is implausibly large (byte count overflows)");
  return n * static_cast<uint64_t>(item);
}

}  // namespace

std::string shape_str(const std::vector<int64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) o += ',';  // not ("," + string): GCC 12 -Wrestrict false positive (PR 105651)
    o += std::to_string(s[i]);
  }
  return o + "]";
}

namespace {

// A Python literal dict of the .npy header: {'descr': '<f4', 'fortran_order': False,
// 'shape': (2, 3), }. Only what numpy writes: strings, True/False, tuples of integers.
struct NpyHeader {
  std::string descr;
  bool fortran = false;
  std::vector<int64_t> shape;
};

class PyLiteral {
 public:
  PyLiteral(const std::string& text, const std::string& file) : t_(text), file_(file) {}

  NpyHeader parse() {
    NpyHeader h;
    bool has_descr = false, has_fortran = false, has_shape = false;
    expect('{');
    while (true) {
      ws();
      if (peek() == '}') { ++i_; break; }
      const std::string key = string_lit();
      expect(':');
      ws();
      if (key == "descr") h.descr = string_lit(), has_descr = true;
      else if (key == "fortran_order") h.fortran = boolean(), has_fortran = true;
      else if (key == "shape") h.shape = tuple(), has_shape = true;
      else bad("unexpected key '" + key + "' (a .npy header holds descr, fortran_order, shape)");
      ws();
      if (peek() == ',') { ++i_; continue; }
      ws();
      if (peek() == '}') { ++i_; break; }
      bad("expected ',' or '}'");
    }
    if (!has_descr || !has_fortran || !has_shape)
      bad("the header must hold the keys descr, fortran_order and shape");
    // The format pads the dict with spaces and ends it with '\n'; anything else after the
    // '}' means the stated header length is wrong and the data would be read shifted.
    for (; i_ < t_.size(); ++i_)
      if (t_[i_] != ' ' && t_[i_] != '\n' && t_[i_] != '\r' && t_[i_] != '\t' && t_[i_] != '\0')
        bad("unexpected bytes after the header's closing '}' (the header length is wrong: data would be read shifted)");
    if (t_.empty() || t_.back() != '\n')
      fail(file_, "malformed .npy header: it does not end in '\\n' within its stated length (the header length is wrong)");
    return h;
  }

 private:
  char peek() const { return i_ < t_.size() ? t_[i_] : '\0'; }
  void ws() { while (i_ < t_.size() && std::isspace(static_cast<unsigned char>(t_[i_]))) ++i_; }
  [[noreturn]] void bad(const std::string& why) const {
    fail(file_, "malformed .npy header at character " + std::to_string(i_) + ": " + why);
  }
  void expect(char c) {
    ws();
    if (peek() != c) bad(std::string("expected '") + c + "'");
    ++i_;
  }
  std::string string_lit() {
    ws();
    const char q = peek();
    if (q != '\'' && q != '"') bad("expected a quoted string");
    ++i_;
    const size_t end = t_.find(q, i_);
    if (end == std::string::npos) bad("unterminated string");
    std::string s = t_.substr(i_, end - i_);
    i_ = end + 1;
    return s;
  }
  bool boolean() {
    if (t_.compare(i_, 4, "True") == 0) { i_ += 4; return true; }
    if (t_.compare(i_, 5, "False") == 0) { i_ += 5; return false; }
    bad("expected True or False");
  }
  std::vector<int64_t> tuple() {
    std::vector<int64_t> v;
    expect('(');
    while (true) {
      ws();
      if (peek() == ')') { ++i_; return v; }
      size_t start = i_;
      while (i_ < t_.size() && std::isdigit(static_cast<unsigned char>(t_[i_]))) ++i_;
      if (start == i_) bad("expected a non-negative integer dimension");
      if (i_ - start > 18) bad("dimension too large");
      v.push_back(std::stoll(t_.substr(start, i_ - start)));
      if (peek() == 'L') ++i_;  // Python 2 longs
      ws();
      if (peek() == ',') { ++i_; continue; }
      ws();
      if (peek() == ')') { ++i_; return v; }
      bad("expected ',' or ')' in the shape");
    }
  }
  const std::string& t_;
  const std::string& file_;
  size_t i_ = 0;
};

struct SafeDType {
  const char* name;
  int bytes;
};
constexpr SafeDType kSafeDTypes[] = {{"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
                                     {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
                                     {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8}};

}  // namespace

std::string_view file_dtype_name(FileDType t) {
  switch (t) {
    case FileDType::f32: return "f32";
    case FileDType::f16: return "f16";
    case FileDType::bf16: return "bf16";
  }
  return "?";
}

int file_dtype_bytes(FileDType t) { return t == FileDType::f32 ? 4 : 2; }

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

TensorInfo read_npy_header(const std::string& path, const std::string& declared) {
  const uint64_t size = file_size(path);
  if (size < 10) fail(path, "too short for a .npy file (" + std::to_string(size) + " bytes)");
  const std::string pre = read_bytes(path, 0, std::min<uint64_t>(size, 12));
  if (pre.compare(0, 6, "\x93NUMPY") != 0) fail(path, "not a .npy file (the magic string \\x93NUMPY is missing)");
  const int major = static_cast<unsigned char>(pre[6]);
  uint64_t header_len = 0, prefix = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(pre[8]) | (static_cast<unsigned char>(pre[9]) << 8);
    prefix = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) fail(path, "too short for a version " + std::to_string(major) + " .npy header");
    for (int b = 3; b >= 0; --b) header_len = (header_len << 8) | static_cast<unsigned char>(pre[8 + b]);
    prefix = 12;
  } else {
    fail(path, "unsupported .npy format version " + std::to_string(major) + "." +
                   std::to_string(static_cast<unsigned char>(pre[7])) + " (1.0, 2.0 and 3.0 are read)");
  }
  if (header_len > kMaxHeader) fail(path, "the header claims " + std::to_string(header_len) + " bytes: implausible");
  if (prefix + header_len > size)
    fail(path, "truncated header: it claims " + std::to_string(header_len) + " bytes, the file has " +
                   std::to_string(size - prefix) + " after the prefix");
  const std::string text = read_bytes(path, prefix, header_len);
  const NpyHeader h = PyLiteral(text, path).parse();

  TensorInfo t;
  t.file = path;
  t.name = std::filesystem::path(path).filename().string();
  t.stored = h.descr;
  t.shape = h.shape;
  if (h.fortran)
    fail(path, "fortran_order arrays are not read: save a C-order array (np.ascontiguousarray)");
  const std::string& d = h.descr;
  if (d.size() >= 2 && d[0] == '>')
    fail(path, "dtype '" + d + "' is big-endian: save it little-endian (arr.astype('<" + d.substr(1) + "'))");
  const std::string code = d.size() >= 2 && (d[0] == '<' || d[0] == '=' || d[0] == '|') ? d.substr(1) : d;
  if (code == "f4") {
    t.dtype = FileDType::f32;
    if (!declared.empty() && declared != "f32")
      fail(path, "holds float32 but input.dtype declares '" + declared + "' (declare a dtype only for uint16 arrays)");
  } else if (code == "f2") {
    t.dtype = FileDType::f16;
    if (!declared.empty() && declared != "f16")
      fail(path, "holds float16 but input.dtype declares '" + declared + "' (declare a dtype only for uint16 arrays)");
  } else if (code == "u2") {
    if (declared == "bf16") t.dtype = FileDType::bf16;
    else if (declared == "f16") t.dtype = FileDType::f16;
    else
      fail(path, "holds uint16 ('" + d + "'): declare what its bits are with input.dtype: bf16 (or f16)");
  } else {
    fail(path, "unsupported dtype '" + d + "': attn-bench reads float32 ('<f4'), float16 ('<f2') and "
               "uint16 holding bf16 bits ('<u2' with input.dtype: bf16)");
  }
  t.item_bytes = file_dtype_bytes(t.dtype);
  t.offset = prefix + header_len;
  t.bytes = checked_bytes(path, "shape " + shape_str(t.shape), t.shape, t.item_bytes);
  const uint64_t have = size - t.offset;
  if (have < t.bytes)
    fail(path, "truncated: the header's shape " + shape_str(t.shape) + " of " + d + " needs " +
                   std::to_string(t.bytes) + " bytes of data, the file holds " + std::to_string(have));
  if (have > t.bytes)
    fail(path, "the file holds " + std::to_string(have) + " bytes of data but the header's shape " +
                   shape_str(t.shape) + " of " + d + " accounts for " + std::to_string(t.bytes) +
                   " (the header does not describe this file)");
  return t;
}

const TensorInfo* SafetensorsHeader::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

std::vector<std::string> SafetensorsHeader::names() const {
  std::vector<std::string> v;
  for (const auto& t : tensors) v.push_back(t.name);
  std::sort(v.begin(), v.end());
  return v;
}

SafetensorsHeader read_safetensors_header(const std::string& path) {
  using json = nlohmann::json;
  const uint64_t size = file_size(path);
  if (size < 8) fail(path, "too short for a .safetensors file (" + std::to_string(size) + " bytes)");
  const std::string pre = read_bytes(path, 0, 8);
  uint64_t n = 0;
  for (int b = 7; b >= 0; --b) n = (n << 8) | static_cast<unsigned char>(pre[b]);
  if (n > size - 8)
    fail(path, "the header length " + std::to_string(n) + " exceeds the file (" + std::to_string(size) +
                   " bytes): truncated, or not a .safetensors file");
  if (n > kMaxHeader) fail(path, "the header length " + std::to_string(n) + " is implausible (over 100 MB)");
  const std::string text = read_bytes(path, 8, n);
  // A header is two levels deep ({name: {dtype, shape, data_offsets}}); deeper nesting is
  // refused while parsing, so that nothing recursive (dump, copies) ever walks it.
  json h;
  try {
    h = json::parse(text, [&](int depth, json::parse_event_t, json&) {
      if (depth > 8) fail(path, "the header nests deeper than 8 levels: not a .safetensors header");
      return true;
    }, /*allow_exceptions=*/false);
  } catch (const json::exception& e) {
    fail(path, std::string("the header is not valid JSON: ") + e.what());
  }
  if (h.is_discarded()) fail(path, "the header is not valid JSON (not a .safetensors file?)");
  if (!h.is_object()) fail(path, "the header is not a JSON object");
  const uint64_t buffer = size - 8 - n;

  SafetensorsHeader out;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    const json& e = it.value();
    if (name == "__metadata__") {
      if (!e.is_object()) fail(path, "__metadata__ must be an object of strings");
      for (auto m = e.begin(); m != e.end(); ++m)
        out.metadata[m.key()] = m.value().is_string() ? m.value().get<std::string>() : m.value().dump();
      continue;
    }
    const std::string what = "tensor '" + name + "'";
    if (!e.is_object()) fail(path, what + ": header entry is not an object");
    if (!e.contains("dtype") || !e["dtype"].is_string()) fail(path, what + ": no dtype string");
    if (!e.contains("shape") || !e["shape"].is_array()) fail(path, what + ": no shape array");
    if (!e.contains("data_offsets") || !e["data_offsets"].is_array() || e["data_offsets"].size() != 2)
      fail(path, what + ": data_offsets must be [begin, end]");
    TensorInfo t;
    t.file = path;
    t.name = name;
    t.stored = e["dtype"].get<std::string>();
    int item = 0;
    for (const auto& sd : kSafeDTypes)
      if (t.stored == sd.name) item = sd.bytes;
    if (!item) fail(path, what + ": unknown dtype '" + t.stored + "'");
    t.item_bytes = item;
    t.supported = t.stored == "F32" || t.stored == "F16" || t.stored == "BF16";
    t.dtype = t.stored == "F16" ? FileDType::f16 : t.stored == "BF16" ? FileDType::bf16 : FileDType::f32;
    for (const auto& d : e["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0)
        fail(path, what + ": shape entries must be non-negative integers, got " + brief(e["shape"]));
      t.shape.push_back(d.get<int64_t>());
    }
    for (const auto& o : e["data_offsets"])
      if (!o.is_number_unsigned() && !(o.is_number_integer() && o.get<int64_t>() >= 0))
        fail(path, what + ": data_offsets must be non-negative integers, got " + brief(e["data_offsets"]));
    const uint64_t begin = e["data_offsets"][0].get<uint64_t>(), end = e["data_offsets"][1].get<uint64_t>();
    if (begin > end)
      fail(path, what + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "] run backwards");
    if (end > buffer)
      fail(path, what + ": data_offsets end " + std::to_string(end) + " lies beyond the data buffer (" +
                     std::to_string(buffer) + " bytes): the file is truncated or the header lies");
    t.bytes = checked_bytes(path, what + " shape " + shape_str(t.shape), t.shape, item);
    if (end - begin != t.bytes)
      fail(path, what + ": shape " + shape_str(t.shape) + " of " + t.stored + " needs " + std::to_string(t.bytes) +
                     " bytes but data_offsets span " + std::to_string(end - begin));
    t.offset = 8 + n + begin;
    out.tensors.push_back(std::move(t));
  }
  std::sort(out.tensors.begin(), out.tensors.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.offset < b.offset; });
  for (size_t i = 1; i < out.tensors.size(); ++i) {
    const TensorInfo& a = out.tensors[i - 1];
    const TensorInfo& b = out.tensors[i];
    if (a.bytes > 0 && b.bytes > 0 && a.offset + a.bytes > b.offset)
      fail(path, "tensors '" + a.name + "' and '" + b.name + "' overlap in the data buffer");
  }
  // The format's rule (the reference reader's validate_offsets): the tensors tile the data
  // buffer from its first byte to its last, without holes. A header length a few bytes short
  // still parses (headers are space-padded) but leaves the buffer longer than its tensors:
  // reading it would shift every value.
  uint64_t covered = 8 + n;
  for (const auto& t : out.tensors) {
    if (t.bytes == 0) continue;
    if (t.offset != covered)
      fail(path, "tensor '" + t.name + "' starts at byte " + std::to_string(t.offset - 8 - n) +
                     " of the data buffer, expected " + std::to_string(covered - 8 - n) +
                     " (the tensors must tile the buffer without holes; is the header length right?)");
    covered = t.offset + t.bytes;
  }
  if (covered != size)
    fail(path, "the data buffer holds " + std::to_string(size - 8 - n) + " bytes but its tensors cover " +
                   std::to_string(covered - 8 - n) + " (the header length or the file size is wrong)");
  return out;
}

std::vector<float> read_tensor(const TensorInfo& t) {
  if (!t.supported)
    fail(t.file, "tensor '" + t.name + "' has dtype " + t.stored + ": attn-bench reads F32, F16 and BF16");
  const uint64_t size = file_size(t.file);
  if (t.offset > size || t.bytes > size - t.offset)
    fail(t.file, "truncated: tensor '" + t.name + "' needs bytes up to " + std::to_string(t.offset + t.bytes) +
                     ", the file has " + std::to_string(size));
  const size_t n = static_cast<size_t>(t.bytes / static_cast<uint64_t>(t.item_bytes));
  std::vector<float> out(n);
  if (n == 0) return out;  // an empty tensor: no bytes to read (memcpy to a null data() is UB)
  const std::string raw = read_bytes(t.file, t.offset, t.bytes);
  const unsigned char* p = reinterpret_cast<const unsigned char*>(raw.data());
  switch (t.dtype) {
    case FileDType::f32: std::memcpy(out.data(), p, n * 4); break;
    case FileDType::f16:
      for (size_t i = 0; i < n; ++i) out[i] = f16_bits_to_float(static_cast<uint16_t>(p[2 * i] | (p[2 * i + 1] << 8)));
      break;
    case FileDType::bf16:
      for (size_t i = 0; i < n; ++i) out[i] = bf16_bits_to_float(static_cast<uint16_t>(p[2 * i] | (p[2 * i + 1] << 8)));
      break;
  }
  return out;
}

}  // namespace ab
