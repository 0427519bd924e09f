// GGUF layout (little-endian): "GGUF", u32 version, u64 tensor count, u64 metadata count,
// metadata (string key, u32 value type, value), tensor infos (string name, u32 n_dims,
// u64 dims fastest-first, u32 type, u64 offset), padding to general.alignment, tensor data.
// Strings are u64 length + bytes; arrays are u32 element type + u64 count + elements.
#include "rlhf/model/gguf.h"

#include <bit>
#include <cstring>
#include <limits>

#include "rlhf/util/error.h"

namespace rlhf::gguf {
namespace {

static_assert(std::endian::native == std::endian::little, "GGUF is read on little-endian hosts");

constexpr uint32_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;

const char* value_type_name(ValueType t) {
  switch (t) {
    case ValueType::U8: return "u8";
    case ValueType::I8: return "i8";
    case ValueType::U16: return "u16";
    case ValueType::I16: return "i16";
    case ValueType::U32: return "u32";
    case ValueType::I32: return "i32";
    case ValueType::F32: return "f32";
    case ValueType::BOOL: return "bool";
    case ValueType::STRING: return "string";
    case ValueType::ARRAY: return "array";
    case ValueType::U64: return "u64";
    case ValueType::I64: return "i64";
    case ValueType::F64: return "f64";
  }
  return "?";
}

bool is_unsigned(ValueType t) {
  return t == ValueType::U8 || t == ValueType::U16 || t == ValueType::U32 || t == ValueType::U64;
}
bool is_signed(ValueType t) {
  return t == ValueType::I8 || t == ValueType::I16 || t == ValueType::I32 || t == ValueType::I64;
}
bool is_float(ValueType t) { return t == ValueType::F32 || t == ValueType::F64; }

// Smallest encoding of one value of type t (a string is at least its u64 length).
uint64_t min_value_bytes(ValueType t) {
  switch (t) {
    case ValueType::U8: case ValueType::I8: case ValueType::BOOL: return 1;
    case ValueType::U16: case ValueType::I16: return 2;
    case ValueType::U32: case ValueType::I32: case ValueType::F32: return 4;
    case ValueType::U64: case ValueType::I64: case ValueType::F64: case ValueType::STRING: return 8;
    case ValueType::ARRAY: return 12;
  }
  return 1;
}

// Reads the mapped file front to back; every read is checked against the bytes left.
// `where` names what is being read (a key, a tensor) for error messages.
struct Reader {
  const std::string& path;
  const uint8_t* data;
  uint64_t size;
  uint64_t pos = 0;
  std::string where = "header";

  uint64_t left() const { return size - pos; }

  [[noreturn]] void error(const std::string& what) const {
    fail("{}: {} (byte {}): {}", path, where, pos, what);
  }

  void need(uint64_t n, const char* what) const {
    if (n > left())
      fail("{}: {} (byte {}): {} needs {} bytes but only {} remain (truncated or corrupt file)",
           path, where, pos, what, n, left());
  }

  template <class T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }

  std::string str(const char* what) {
    const uint64_t n = get<uint64_t>(what);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(data + pos), n);
    pos += n;
    return s;
  }

  bool boolean() {
    const uint8_t b = get<uint8_t>("bool");
    if (b > 1) error(fmt::format("bool value {} is neither 0 nor 1", b));
    return b != 0;
  }

  ValueType value_type(const char* what) {
    const uint32_t t = get<uint32_t>(what);
    if (t > static_cast<uint32_t>(ValueType::F64)) {
      pos -= 4;
      error(fmt::format("unknown metadata value type id {}", t));
    }
    return static_cast<ValueType>(t);
  }

  // One integer element of type t, widened to int64 (u64 values above INT64_MAX are rejected).
  int64_t array_int(ValueType t) {
    switch (t) {
      case ValueType::U8: return get<uint8_t>("u8");
      case ValueType::I8: return get<int8_t>("i8");
      case ValueType::U16: return get<uint16_t>("u16");
      case ValueType::I16: return get<int16_t>("i16");
      case ValueType::U32: return get<uint32_t>("u32");
      case ValueType::I32: return get<int32_t>("i32");
      case ValueType::I64: return get<int64_t>("i64");
      default: {
        const uint64_t u = get<uint64_t>("u64");
        if (u > uint64_t(std::numeric_limits<int64_t>::max()))
          error(fmt::format("u64 array element {} does not fit in int64", u));
        return int64_t(u);
      }
    }
  }

  Value value(ValueType t) {
    Value v;
    v.type = t;
    switch (t) {
      case ValueType::U8: v.v = uint64_t(get<uint8_t>("u8")); break;
      case ValueType::I8: v.v = int64_t(get<int8_t>("i8")); break;
      case ValueType::U16: v.v = uint64_t(get<uint16_t>("u16")); break;
      case ValueType::I16: v.v = int64_t(get<int16_t>("i16")); break;
      case ValueType::U32: v.v = uint64_t(get<uint32_t>("u32")); break;
      case ValueType::I32: v.v = int64_t(get<int32_t>("i32")); break;
      case ValueType::U64: v.v = get<uint64_t>("u64"); break;
      case ValueType::I64: v.v = get<int64_t>("i64"); break;
      case ValueType::F32: v.v = double(get<float>("f32")); break;
      case ValueType::F64: v.v = get<double>("f64"); break;
      case ValueType::BOOL: v.v = boolean(); break;
      case ValueType::STRING: v.v = str("string"); break;
      case ValueType::ARRAY: {
        const ValueType et = value_type("array element type");
        if (et == ValueType::ARRAY) error("nested arrays are not supported");
        v.elem_type = et;
        const uint64_t count = get<uint64_t>("array length");
        if (count > left() / min_value_bytes(et))
          error(fmt::format("array of {} {} values cannot fit in the {} bytes left", count,
                            value_type_name(et), left()));
        if (et == ValueType::STRING) {
          std::vector<std::string> a(count);
          for (auto& s : a) s = str("string");
          v.v = std::move(a);
        } else if (et == ValueType::BOOL) {
          std::vector<bool> a(count);
          for (uint64_t i = 0; i < count; ++i) a[i] = boolean();
          v.v = std::move(a);
        } else if (is_float(et)) {
          std::vector<double> a(count);
          for (auto& x : a) x = et == ValueType::F32 ? double(get<float>("f32")) : get<double>("f64");
          v.v = std::move(a);
        } else {
          std::vector<int64_t> a(count);
          for (auto& x : a) x = array_int(et);
          v.v = std::move(a);
        }
        break;
      }
    }
    return v;
  }
};

[[noreturn]] void type_error(const std::string& path, const std::string& key, const Value& v,
                             const char* wanted) {
  if (v.type == ValueType::ARRAY)
    fail("{}: metadata key '{}' is an array of {}, not {}", path, key,
         value_type_name(v.elem_type), wanted);
  fail("{}: metadata key '{}' is {}, not {}", path, key, value_type_name(v.type), wanted);
}

const Value& value_at(const std::string& path, const std::map<std::string, Value>& kv,
                      const std::string& key) {
  auto it = kv.find(key);
  if (it == kv.end()) fail("{}: metadata key '{}' is absent", path, key);
  return it->second;
}

uint64_t align_up(const std::string& path, uint64_t x, uint64_t a) {
  uint64_t r;
  if (__builtin_add_overflow(x, a - 1, &r)) fail("{}: data section offset overflows", path);
  return r & ~(a - 1);
}

}  // namespace

File File::open(const std::string& path) {
  File f;
  f.file_ = MappedFile::open(path);
  Reader r{path, f.file_->data(), f.file_->size()};

  if (r.size < 4) fail("{}: not a GGUF file: only {} bytes long", path, r.size);
  if (std::memcmp(r.data, "GGUF", 4) != 0)
    fail("{}: not a GGUF file: bad magic {:02x} {:02x} {:02x} {:02x} (expected 'GGUF')", path,
         r.data[0], r.data[1], r.data[2], r.data[3]);
  r.pos = 4;
  f.version_ = r.get<uint32_t>("version");
  if (f.version_ != 2 && f.version_ != 3) {
    const uint32_t swapped = __builtin_bswap32(f.version_);
    if (swapped == 2 || swapped == 3) fail("{}: big-endian GGUF files are not supported", path);
    fail("{}: unsupported GGUF version {} (versions 2 and 3 are supported)", path, f.version_);
  }
  const uint64_t n_tensors = r.get<uint64_t>("tensor count");
  const uint64_t n_kv = r.get<uint64_t>("metadata count");
  // Each tensor info takes at least 24 bytes, each key/value at least 13.
  if (n_tensors > r.left() / 24)
    r.error(fmt::format("tensor count {} cannot fit in the {} bytes left", n_tensors, r.left()));
  if (n_kv > (r.left() - n_tensors * 24) / 13)
    r.error(fmt::format("metadata count {} cannot fit in the {} bytes left", n_kv, r.left()));

  for (uint64_t i = 0; i < n_kv; ++i) {
    r.where = fmt::format("metadata entry #{}", i);
    std::string key = r.str("key");
    r.where = fmt::format("metadata key '{}'", key);
    if (f.kv_.count(key)) r.error("duplicate key");
    const ValueType t = r.value_type("value type");
    f.kv_.emplace(std::move(key), r.value(t));
  }

  f.tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    r.where = fmt::format("tensor info #{}", i);
    TensorInfo t;
    t.name = r.str("tensor name");
    r.where = fmt::format("tensor '{}'", t.name);
    if (f.tensor_index_.count(t.name)) r.error("duplicate tensor name");
    const uint32_t n_dims = r.get<uint32_t>("n_dims");
    if (n_dims > kMaxDims)
      r.error(fmt::format("{} dimensions (at most {} are supported)", n_dims, kMaxDims));
    std::vector<uint64_t> dims(n_dims);
    for (auto& d : dims) d = r.get<uint64_t>("dimension");
    const uint32_t type_id = r.get<uint32_t>("tensor type");
    t.type = static_cast<TensorType>(type_id);
    if (type_block_size(t.type) == 0)
      r.error(fmt::format("unsupported tensor type id {}", type_id));
    t.offset = r.get<uint64_t>("data offset");

    int64_t numel = 1;
    for (uint64_t d : dims) {
      if (d > uint64_t(std::numeric_limits<int64_t>::max()) ||
          __builtin_mul_overflow(numel, int64_t(d), &numel))
        r.error("element count overflows int64");
    }
    const int64_t block = type_block_size(t.type);
    const int64_t inner = n_dims ? int64_t(dims[0]) : 1;
    if (inner % block != 0)
      r.error(fmt::format("innermost dimension {} is not a multiple of the {} block size {}",
                          inner, tensor_type_name(t.type), block));
    try {
      t.nbytes = type_nbytes(t.type, numel);
    } catch (const Error& e) {
      r.error(e.what());
    }
    t.shape.assign(dims.rbegin(), dims.rend());
    f.tensor_index_.emplace(t.name, f.tensors_.size());
    f.tensors_.push_back(std::move(t));
  }

  r.where = "header";
  uint64_t alignment = kDefaultAlignment;
  if (f.has("general.alignment")) {
    alignment = f.get_uint("general.alignment");
    if (alignment == 0 || (alignment & (alignment - 1)) != 0)
      fail("{}: general.alignment {} is not a non-zero power of two", path, alignment);
  }
  const uint64_t data_start = align_up(path, r.pos, alignment);
  for (auto& t : f.tensors_) {
    if (t.offset % alignment != 0)
      fail("{}: tensor '{}': data offset {} is not a multiple of the alignment {}", path, t.name,
           t.offset, alignment);
    if (data_start > r.size || t.offset > r.size - data_start ||
        t.nbytes > r.size - data_start - t.offset)
      fail("{}: tensor '{}': data (offset {} + {} bytes after the data section at byte {}) "
           "lies past the end of the file ({} bytes)",
           path, t.name, t.offset, t.nbytes, data_start, r.size);
    t.offset += data_start;
  }
  return f;
}

const TensorInfo* File::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

HostTensor File::load(const TensorInfo& t) const {
  if (t.offset > file_->size() || t.nbytes > file_->size() - t.offset)
    fail("{}: tensor '{}': data lies past the end of the file", path(), t.name);
  const uint8_t* src = file_->data() + t.offset;
  HostTensor h;
  switch (t.type) {
    case TensorType::F32: h.dtype = DType::F32; break;
    case TensorType::F16: h.dtype = DType::F16; break;
    case TensorType::BF16: h.dtype = DType::BF16; break;
    default: {
      h.shape = t.shape;
      const int64_t n = h.numel();
      if (type_nbytes(t.type, n) != t.nbytes)
        fail("{}: tensor '{}': shape and byte size disagree", path(), t.name);
      // Not zero-filled: dequantize writes every element, and its threads fault the pages in.
      auto buf = std::make_shared_for_overwrite<float[]>(size_t(n));
      dequantize(t.type, src, buf.get(), n);
      h.data = reinterpret_cast<const uint8_t*>(buf.get());
      h.nbytes = size_t(n) * sizeof(float);
      h.owner = std::move(buf);
      return h;
    }
  }
  h.shape = t.shape;
  h.nbytes = t.nbytes;
  if (uint64_t(h.numel()) * dtype_size(h.dtype) != t.nbytes)
    fail("{}: tensor '{}': shape and byte size disagree", path(), t.name);
  if (reinterpret_cast<uintptr_t>(src) % dtype_size(h.dtype) == 0) {
    h.data = src;
    h.owner = file_;
  } else {  // an alignment below the element size: copy so the data is element-aligned
    auto buf = std::make_shared<std::vector<float>>((t.nbytes + 3) / 4);
    std::memcpy(buf->data(), src, t.nbytes);
    h.data = reinterpret_cast<const uint8_t*>(buf->data());
    h.owner = buf;
  }
  return h;
}

uint64_t File::get_uint(const std::string& key) const {
  const Value& v = value_at(path(), kv_, key);
  if (is_unsigned(v.type)) return std::get<uint64_t>(v.v);
  if (is_signed(v.type)) {
    const int64_t i = std::get<int64_t>(v.v);
    if (i >= 0) return uint64_t(i);
    fail("{}: metadata key '{}' is {}, not an unsigned integer", path(), key, i);
  }
  type_error(path(), key, v, "an integer");
}

int64_t File::get_int(const std::string& key) const {
  const Value& v = value_at(path(), kv_, key);
  if (is_signed(v.type)) return std::get<int64_t>(v.v);
  if (is_unsigned(v.type)) {
    const uint64_t u = std::get<uint64_t>(v.v);
    if (u <= uint64_t(std::numeric_limits<int64_t>::max())) return int64_t(u);
    fail("{}: metadata key '{}' is {}, which does not fit in int64", path(), key, u);
  }
  type_error(path(), key, v, "an integer");
}

double File::get_float(const std::string& key) const {
  const Value& v = value_at(path(), kv_, key);
  if (is_float(v.type)) return std::get<double>(v.v);
  if (is_unsigned(v.type)) return double(std::get<uint64_t>(v.v));
  if (is_signed(v.type)) return double(std::get<int64_t>(v.v));
  type_error(path(), key, v, "a number");
}

bool File::get_bool(const std::string& key) const {
  const Value& v = value_at(path(), kv_, key);
  if (v.type != ValueType::BOOL) type_error(path(), key, v, "a bool");
  return std::get<bool>(v.v);
}

std::string File::get_string(const std::string& key) const {
  const Value& v = value_at(path(), kv_, key);
  if (v.type != ValueType::STRING) type_error(path(), key, v, "a string");
  return std::get<std::string>(v.v);
}

std::vector<std::string> File::get_string_array(const std::string& key) const {
  const Value& v = value_at(path(), kv_, key);
  if (v.type != ValueType::ARRAY || v.elem_type != ValueType::STRING)
    type_error(path(), key, v, "an array of strings");
  return std::get<std::vector<std::string>>(v.v);
}

std::vector<int64_t> File::get_int_array(const std::string& key) const {
  const Value& v = value_at(path(), kv_, key);
  if (v.type != ValueType::ARRAY || !(is_signed(v.elem_type) || is_unsigned(v.elem_type)))
    type_error(path(), key, v, "an array of integers");
  return std::get<std::vector<int64_t>>(v.v);
}

std::vector<double> File::get_float_array(const std::string& key) const {
  const Value& v = value_at(path(), kv_, key);
  if (v.type == ValueType::ARRAY && is_float(v.elem_type)) return std::get<std::vector<double>>(v.v);
  if (v.type == ValueType::ARRAY && (is_signed(v.elem_type) || is_unsigned(v.elem_type))) {
    const auto& ints = std::get<std::vector<int64_t>>(v.v);
    return std::vector<double>(ints.begin(), ints.end());
  }
  type_error(path(), key, v, "an array of numbers");
}

std::optional<uint64_t> File::find_uint(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return get_uint(key);
}

std::optional<double> File::find_float(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return get_float(key);
}

std::optional<std::string> File::find_string(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return get_string(key);
}

}  // namespace rlhf::gguf
