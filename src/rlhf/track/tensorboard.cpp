#include "rlhf/track/tensorboard.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>

#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"

namespace rlhf::track {
namespace {

namespace fs = std::filesystem;

// ---- CRC32C, slice-by-8 ------------------------------------------------------------------

// table[k][b]: the CRC of byte b followed by k zero bytes (reflected polynomial 0x82F63B78).
using CrcTables = std::array<std::array<uint32_t, 256>, 8>;

CrcTables make_crc_tables() {
  CrcTables t{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t c = b;
    for (int i = 0; i < 8; ++i) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[0][b] = c;
  }
  for (uint32_t b = 0; b < 256; ++b)
    for (int k = 1; k < 8; ++k) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xff];
  return t;
}

const CrcTables& crc_tables() {
  static const CrcTables tables = make_crc_tables();
  return tables;
}

// ---- little-endian helpers ---------------------------------------------------------------

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint32_t get_u32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
uint64_t get_u64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

// ---- protobuf encoding (only what an Event needs) ----------------------------------------

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_key(std::string& out, uint32_t field, uint32_t wire) { put_varint(out, (uint64_t(field) << 3) | wire); }
void put_double(std::string& out, uint32_t field, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, 8);
  put_key(out, field, 1);
  put_u64(out, bits);
}
void put_float(std::string& out, uint32_t field, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  put_key(out, field, 5);
  put_u32(out, bits);
}
void put_bytes(std::string& out, uint32_t field, std::string_view bytes) {
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out.append(bytes);
}

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

// ---- protobuf decoding --------------------------------------------------------------------

// Thrown inside the decoder; read_scalars turns it into an rlhf::Error naming file and offset.
struct BadProto {
  const char* what;
};

enum Wire : uint32_t { kVarint = 0, kFixed64 = 1, kBytes = 2, kFixed32 = 5 };

// A bounded reader over one serialized message.
struct ProtoReader {
  const char* p;
  const char* end;
  explicit ProtoReader(std::string_view s) : p(s.data()), end(s.data() + s.size()) {}

  bool done() const { return p >= end; }

  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
      if (p >= end) throw BadProto{"truncated varint"};
      const uint8_t b = static_cast<uint8_t>(*p++);
      if (shift == 63 && b > 1) throw BadProto{"varint overflows 64 bits"};
      v |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    throw BadProto{"varint longer than 10 bytes"};
  }
  uint64_t fixed64() {
    if (end - p < 8) throw BadProto{"truncated 64-bit field"};
    uint64_t v = get_u64(p);
    p += 8;
    return v;
  }
  uint32_t fixed32() {
    if (end - p < 4) throw BadProto{"truncated 32-bit field"};
    uint32_t v = get_u32(p);
    p += 4;
    return v;
  }
  std::string_view bytes() {
    const uint64_t n = varint();
    if (n > uint64_t(end - p)) throw BadProto{"length-delimited field longer than its message"};
    std::string_view s(p, n);
    p += n;
    return s;
  }
  // Reads a key; returns false at the end of the message.
  bool next(uint32_t& field, uint32_t& wire) {
    if (done()) return false;
    const uint64_t key = varint();
    field = static_cast<uint32_t>(key >> 3);
    wire = static_cast<uint32_t>(key & 7);
    if (field == 0 || (key >> 3) > 0x1fffffff) throw BadProto{"bad field number"};
    return true;
  }
  void skip(uint32_t wire) {
    switch (wire) {
      case kVarint: varint(); break;
      case kFixed64: fixed64(); break;
      case kBytes: bytes(); break;
      case kFixed32: fixed32(); break;
      default: throw BadProto{"unsupported wire type (groups)"};
    }
  }
};

double bits_to_double(uint64_t bits) {
  double d;
  std::memcpy(&d, &bits, 8);
  return d;
}
float bits_to_float(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
double half_to_double(uint16_t h) {
  const int sign = (h >> 15) ? -1 : 1;
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  if (exp == 0) return sign * std::ldexp(double(mant), -24);
  if (exp == 31) return mant ? std::nan("") : sign * HUGE_VAL;
  return sign * std::ldexp(double(mant | 0x400), exp - 25);
}

// TensorFlow DataType values (types.proto) that a scalar summary can hold.
enum DType : int {
  DT_FLOAT = 1, DT_DOUBLE = 2, DT_INT32 = 3, DT_UINT8 = 4, DT_INT16 = 5, DT_INT8 = 6,
  DT_INT64 = 9, DT_BOOL = 10, DT_BFLOAT16 = 14, DT_UINT16 = 17, DT_HALF = 19,
  DT_UINT32 = 22, DT_UINT64 = 23,
};

// Bytes per element in tensor_content; 0 for dtypes that are not numbers.
size_t dtype_size(int dtype) {
  switch (dtype) {
    case DT_FLOAT: case DT_INT32: case DT_UINT32: return 4;
    case DT_DOUBLE: case DT_INT64: case DT_UINT64: return 8;
    case DT_INT16: case DT_UINT16: case DT_HALF: case DT_BFLOAT16: return 2;
    case DT_UINT8: case DT_INT8: case DT_BOOL: return 1;
    default: return 0;
  }
}

// One element of tensor_content (little-endian) as a double.
double content_value(int dtype, const char* p) {
  switch (dtype) {
    case DT_FLOAT: return bits_to_float(get_u32(p));
    case DT_DOUBLE: return bits_to_double(get_u64(p));
    case DT_INT32: return static_cast<int32_t>(get_u32(p));
    case DT_UINT32: return get_u32(p);
    case DT_INT64: return static_cast<double>(static_cast<int64_t>(get_u64(p)));
    case DT_UINT64: return static_cast<double>(get_u64(p));
    case DT_INT16: return static_cast<int16_t>(uint16_t(uint8_t(p[0]) | uint8_t(p[1]) << 8));
    case DT_UINT16: return uint16_t(uint8_t(p[0]) | uint8_t(p[1]) << 8);
    case DT_HALF: return half_to_double(uint16_t(uint8_t(p[0]) | uint8_t(p[1]) << 8));
    case DT_BFLOAT16: return bits_to_float(uint32_t(uint8_t(p[0]) | uint8_t(p[1]) << 8) << 16);
    case DT_INT8: return static_cast<int8_t>(p[0]);
    case DT_UINT8: return static_cast<uint8_t>(p[0]);
    case DT_BOOL: return p[0] ? 1 : 0;
    default: return std::nan("");
  }
}

// The typed repeated field (TensorProto) that holds values of a dtype, and how to read it.
enum class ValKind { None, Float, Double, Varint, Half };
struct TypedField {
  uint32_t field;
  ValKind kind;
};
TypedField typed_field(int dtype) {
  switch (dtype) {
    case DT_FLOAT: return {5, ValKind::Float};
    case DT_DOUBLE: return {6, ValKind::Double};
    case DT_INT32: case DT_INT16: case DT_INT8: case DT_UINT8: case DT_UINT16: return {7, ValKind::Varint};
    case DT_INT64: return {10, ValKind::Varint};
    case DT_BOOL: return {11, ValKind::Varint};
    case DT_HALF: case DT_BFLOAT16: return {13, ValKind::Half};
    case DT_UINT32: return {16, ValKind::Varint};
    case DT_UINT64: return {17, ValKind::Varint};
    default: return {0, ValKind::None};
  }
}

double varint_value(int dtype, uint64_t v) {
  switch (dtype) {
    case DT_INT32: case DT_INT16: case DT_INT8: return static_cast<int32_t>(v);
    case DT_INT64: return static_cast<double>(static_cast<int64_t>(v));
    case DT_BOOL: return v ? 1 : 0;
    default: return static_cast<double>(v);  // unsigned types
  }
}

// A TensorProto, reduced to what a scalar needs.
struct Tensor {
  int dtype = 0;
  int rank = 0;
  int64_t elements = 1;  // product of the dims
  std::string_view content;
  std::vector<double> values;  // from the typed field matching dtype
};

Tensor parse_tensor(std::string_view bytes) {
  // dtype may follow the value fields on the wire, so keep the candidate fields raw first.
  Tensor t;
  std::vector<std::pair<uint32_t, std::pair<uint32_t, std::string_view>>> raw;  // field, wire, bytes
  ProtoReader r(bytes);
  uint32_t field, wire;
  while (r.next(field, wire)) {
    const char* start = r.p;
    if (field == 1 && wire == kVarint) {
      t.dtype = static_cast<int>(r.varint());
    } else if (field == 2 && wire == kBytes) {  // TensorShapeProto: dim = 2 {size = 1}
      ProtoReader shape(r.bytes());
      uint32_t sf, sw;
      while (shape.next(sf, sw)) {
        if (sf == 2 && sw == kBytes) {
          ProtoReader dim(shape.bytes());
          int64_t size = 0;
          uint32_t df, dw;
          while (dim.next(df, dw)) {
            if (df == 1 && dw == kVarint) size = static_cast<int64_t>(dim.varint());
            else dim.skip(dw);
          }
          ++t.rank;
          // -1 once a dim is negative or the product leaves int64 (checked, never overflowed).
          int64_t product;
          if (t.elements < 0 || size < 0 || __builtin_mul_overflow(t.elements, size, &product)) product = -1;
          t.elements = product;
        } else {
          shape.skip(sw);
        }
      }
    } else if (field == 4 && wire == kBytes) {
      t.content = r.bytes();
    } else {
      r.skip(wire);
      raw.push_back({field, {wire, std::string_view(start, r.p - start)}});
    }
  }
  const TypedField typed = typed_field(t.dtype);
  for (const auto& [f, wv] : raw) {
    if (f != typed.field) continue;
    const auto [w, body] = wv;
    ProtoReader v(body);
    auto one = [&](ProtoReader& in, uint32_t w1) {
      if (typed.kind == ValKind::Float && w1 == kFixed32) t.values.push_back(bits_to_float(in.fixed32()));
      else if (typed.kind == ValKind::Double && w1 == kFixed64) t.values.push_back(bits_to_double(in.fixed64()));
      else if (typed.kind == ValKind::Varint && w1 == kVarint) t.values.push_back(varint_value(t.dtype, in.varint()));
      else if (typed.kind == ValKind::Half && w1 == kVarint) {
        const uint16_t bits = static_cast<uint16_t>(in.varint());
        t.values.push_back(t.dtype == DT_HALF ? half_to_double(bits) : bits_to_float(uint32_t(bits) << 16));
      } else {
        in.skip(w1);
      }
    };
    if (w == kBytes) {  // packed
      ProtoReader packed(v.bytes());
      const uint32_t elem_wire = typed.kind == ValKind::Float    ? kFixed32
                                 : typed.kind == ValKind::Double ? kFixed64
                                                                 : kVarint;
      while (!packed.done()) one(packed, elem_wire);
    } else {
      one(v, w);
    }
  }
  return t;
}

// The single value of a one-element numeric tensor, if it is one.
std::optional<double> tensor_scalar(const Tensor& t) {
  if (t.elements != 1) return std::nullopt;
  const size_t size = dtype_size(t.dtype);
  if (size == 0) return std::nullopt;
  if (!t.content.empty()) {
    if (t.content.size() != size) return std::nullopt;
    return content_value(t.dtype, t.content.data());
  }
  if (!t.values.empty()) return t.values.front();
  return 0.0;  // a tensor with no values holds the dtype's zero
}

// SummaryMetadata: plugin_data = 1 {plugin_name = 1}, data_class = 4 (1 = scalar).
struct Metadata {
  std::string plugin;
  bool scalar_class = false;
};
Metadata parse_metadata(std::string_view bytes) {
  Metadata m;
  ProtoReader r(bytes);
  uint32_t field, wire;
  while (r.next(field, wire)) {
    if (field == 1 && wire == kBytes) {
      ProtoReader pd(r.bytes());
      uint32_t pf, pw;
      while (pd.next(pf, pw)) {
        if (pf == 1 && pw == kBytes) m.plugin = std::string(pd.bytes());
        else pd.skip(pw);
      }
    } else if (field == 4 && wire == kVarint) {
      m.scalar_class = r.varint() == 1;
    } else {
      r.skip(wire);
    }
  }
  return m;
}

// Per file: the plugin each tag was first written with (TF2 may write metadata only once).
using PluginByTag = std::map<std::string, std::string, std::less<>>;

// Summary.Value: tag = 1, simple_value = 2, tensor = 8, metadata = 9.
void parse_value(std::string_view bytes, int64_t step, double wall_time, PluginByTag& plugins,
                 std::vector<ScalarPoint>& out) {
  std::string_view tag, tensor_bytes;
  std::optional<float> simple;
  std::optional<Metadata> meta;
  ProtoReader r(bytes);
  uint32_t field, wire;
  while (r.next(field, wire)) {
    if (field == 1 && wire == kBytes) tag = r.bytes();
    else if (field == 2 && wire == kFixed32) simple = bits_to_float(r.fixed32());
    else if (field == 8 && wire == kBytes) tensor_bytes = r.bytes();
    else if (field == 9 && wire == kBytes) meta = parse_metadata(r.bytes());
    else r.skip(wire);
  }
  if (meta && (!meta->plugin.empty() || meta->scalar_class) && !plugins.count(tag))
    plugins.emplace(std::string(tag), meta->scalar_class && meta->plugin.empty() ? "scalars" : meta->plugin);
  if (simple) {
    out.push_back({std::string(tag), step, wall_time, *simple});
    return;
  }
  if (tensor_bytes.data() == nullptr) return;
  // A tensor is a scalar point when its tag is a "scalars" plugin tag, or, without any
  // plugin, when it is a rank-0 number; other plugins' tensors (text, histograms) are not.
  auto it = plugins.find(tag);
  const bool scalar_plugin = it != plugins.end() && it->second == "scalars";
  if (it != plugins.end() && !scalar_plugin) return;
  const Tensor t = parse_tensor(tensor_bytes);
  if (!scalar_plugin && t.rank != 0) return;
  if (auto v = tensor_scalar(t)) out.push_back({std::string(tag), step, wall_time, *v});
}

// Event: wall_time = 1, step = 2, summary = 5 {value = 1}.
void parse_event(std::string_view bytes, PluginByTag& plugins, std::vector<ScalarPoint>& out) {
  double wall_time = 0;
  int64_t step = 0;
  std::vector<std::string_view> summaries;
  ProtoReader r(bytes);
  uint32_t field, wire;
  while (r.next(field, wire)) {
    if (field == 1 && wire == kFixed64) wall_time = bits_to_double(r.fixed64());
    else if (field == 2 && wire == kVarint) step = static_cast<int64_t>(r.varint());
    else if (field == 5 && wire == kBytes) summaries.push_back(r.bytes());
    else r.skip(wire);
  }
  for (std::string_view summary : summaries) {
    ProtoReader s(summary);
    while (s.next(field, wire)) {
      if (field == 1 && wire == kBytes) parse_value(s.bytes(), step, wall_time, plugins, out);
      else s.skip(wire);
    }
  }
}

void read_event_file(const std::string& path, std::vector<ScalarPoint>& out) {
  const std::string data = read_file(path);
  PluginByTag plugins;
  // Where the file's closing run of zero bytes starts (data.size() when it ends otherwise).
  // A power loss can leave the last record's bytes as zeros instead of cutting them off: a
  // record that fails its checksum where that run has begun is torn, like a short one (a
  // zero length with a zero checksum is no record).
  size_t zeros = data.size();
  while (zeros > 0 && data[zeros - 1] == '\0') --zeros;
  size_t off = 0;
  while (data.size() - off >= 12) {
    const char* rec = data.data() + off;
    const uint64_t len = get_u64(rec);
    if (get_u32(rec + 8) != masked_crc32c(rec, 8)) {
      if (zeros < off + 12) break;  // torn tail: zeros in the header
      fail("{}: corrupt TensorBoard record at byte {}: bad length checksum", path, off);
    }
    if (len > data.size() - off - 12 || data.size() - off - 12 - len < 4) break;  // torn tail
    std::string_view body(rec + 12, len);
    if (get_u32(rec + 12 + len) != masked_crc32c(body.data(), body.size())) {
      if (zeros < off + 12 + len + 4) break;  // torn tail: zeros in the data or its checksum
      fail("{}: corrupt TensorBoard record at byte {}: bad data checksum", path, off);
    }
    try {
      parse_event(body, plugins, out);
    } catch (const BadProto& e) {
      fail("{}: corrupt TensorBoard record at byte {}: bad Event protobuf ({})", path, off, e.what);
    }
    off += 12 + len + 4;
  }
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || !buf[0]) return "localhost";
  std::string h = buf;
  for (char& c : h)
    if (c == '/' || c == '\\') c = '_';
  return h;
}

}  // namespace

uint32_t crc32c(const void* data, size_t n, uint32_t crc) {
  const auto& t = crc_tables();
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~crc;
  while (n >= 8) {
    const uint32_t lo = c ^ (uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24);
    c = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
        t[3][p[4]] ^ t[2][p[5]] ^ t[1][p[6]] ^ t[0][p[7]];
    p += 8;
    n -= 8;
  }
  while (n--) c = (c >> 8) ^ t[0][(c ^ *p++) & 0xff];
  return ~c;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  const uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string encode_record(std::string_view data) {
  std::string out;
  out.reserve(data.size() + 16);
  put_u64(out, data.size());
  put_u32(out, masked_crc32c(out.data(), 8));
  out.append(data);
  put_u32(out, masked_crc32c(data.data(), data.size()));
  return out;
}

std::string encode_file_version_event(double wall_time) {
  std::string ev;
  put_double(ev, 1, wall_time);
  put_bytes(ev, 3, "brain.Event:2");
  return ev;
}

std::string encode_scalar_event(double wall_time, int64_t step, std::string_view tag, float value) {
  std::string val;
  put_bytes(val, 1, tag);
  put_float(val, 2, value);  // in a oneof: written even when 0
  std::string summary;
  put_bytes(summary, 1, val);
  std::string ev;
  put_double(ev, 1, wall_time);
  if (step != 0) {
    put_key(ev, 2, kVarint);
    put_varint(ev, static_cast<uint64_t>(step));
  }
  put_bytes(ev, 5, summary);
  return ev;
}

EventWriter::EventWriter(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("{}: cannot create folder: {}", dir, ec.message());
  const auto seconds = static_cast<int64_t>(now_seconds());
  const std::string base = (fs::path(dir) / fmt::format("events.out.tfevents.{}.{}.{}.rlhf", seconds,
                                                         host_name(), ::getpid())).string();
  // O_EXCL: never append to another writer's file, even one started in the same second.
  for (int n = 0;; ++n) {
    path_ = n == 0 ? base : fmt::format("{}.{}", base, n);
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) {
      file_ = ::fdopen(fd, "wb");
      if (!file_) {
        ::close(fd);
        fail("{}: cannot open: {}", path_, std::strerror(errno));
      }
      break;
    }
    if (errno != EEXIST || n >= 1000) fail("{}: cannot create: {}", path_, std::strerror(errno));
  }
  write_record(encode_file_version_event(now_seconds()));
}

EventWriter::~EventWriter() {
  if (file_) std::fclose(file_);
}

void EventWriter::add_scalar(std::string_view tag, int64_t step, double value, double wall_time) {
  if (wall_time == 0) wall_time = now_seconds();
  write_record(encode_scalar_event(wall_time, step, tag, static_cast<float>(value)));
}

void EventWriter::flush() {
  if (std::fflush(file_) != 0) fail("{}: cannot write: {}", path_, std::strerror(errno));
}

void EventWriter::write_record(std::string_view data) {
  const std::string rec = encode_record(data);
  if (std::fwrite(rec.data(), 1, rec.size(), file_) != rec.size())
    fail("{}: cannot write: {}", path_, std::strerror(errno));
  flush();
}

std::vector<ScalarPoint> read_scalars(const std::string& path) {
  std::error_code ec;
  std::vector<ScalarPoint> out;
  if (fs::is_regular_file(path, ec)) {
    read_event_file(path, out);
    return out;
  }
  if (!fs::is_directory(path, ec)) fail("{}: no such file or folder", path);
  std::vector<std::string> files;
  for (auto it = fs::recursive_directory_iterator(path, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec) && it->path().filename().string().find("tfevents") != std::string::npos)
      files.push_back(it->path().string());
  }
  if (ec) fail("{}: cannot list: {}", path, ec.message());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) read_event_file(f, out);
  return out;
}

}  // namespace rlhf::track
