#include "rlhf/model/gguf_write.h"

#include <fcntl.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"

namespace rlhf::gguf {
namespace {

static_assert(std::endian::native == std::endian::little, "GGUF is written on little-endian hosts");

constexpr uint32_t kDefaultAlignment = 32;

template <class T>
void put_raw(std::string& s, T v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof v);
}
void put_str(std::string& s, const std::string& v) {
  put_raw<uint64_t>(s, v.size());
  s.append(v);
}

// One integer of type t, range-checked against its width.
void put_int(std::string& s, ValueType t, int64_t v, bool from_unsigned, uint64_t uv, const std::string& key) {
  auto in = [&](auto lo, auto hi) {
    if (from_unsigned) return uv <= static_cast<uint64_t>(hi);
    return v >= static_cast<int64_t>(lo) && (v < 0 || static_cast<uint64_t>(v) <= static_cast<uint64_t>(hi));
  };
  auto value = [&]() -> uint64_t { return from_unsigned ? uv : static_cast<uint64_t>(v); };
  bool ok = true;
  switch (t) {
    case ValueType::U8: ok = in(0, std::numeric_limits<uint8_t>::max()); if (ok) put_raw<uint8_t>(s, uint8_t(value())); break;
    case ValueType::I8: ok = in(std::numeric_limits<int8_t>::min(), std::numeric_limits<int8_t>::max()); if (ok) put_raw<int8_t>(s, int8_t(value())); break;
    case ValueType::U16: ok = in(0, std::numeric_limits<uint16_t>::max()); if (ok) put_raw<uint16_t>(s, uint16_t(value())); break;
    case ValueType::I16: ok = in(std::numeric_limits<int16_t>::min(), std::numeric_limits<int16_t>::max()); if (ok) put_raw<int16_t>(s, int16_t(value())); break;
    case ValueType::U32: ok = in(0, std::numeric_limits<uint32_t>::max()); if (ok) put_raw<uint32_t>(s, uint32_t(value())); break;
    case ValueType::I32: ok = in(std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()); if (ok) put_raw<int32_t>(s, int32_t(value())); break;
    case ValueType::U64: ok = from_unsigned || v >= 0; if (ok) put_raw<uint64_t>(s, value()); break;
    case ValueType::I64: ok = !from_unsigned || uv <= uint64_t(std::numeric_limits<int64_t>::max()); if (ok) put_raw<int64_t>(s, int64_t(value())); break;
    default: fail("GGUF key '{}': not an integer type", key);
  }
  if (!ok) fail("GGUF key '{}': value {} does not fit its type", key, from_unsigned ? std::to_string(uv) : std::to_string(v));
}

bool is_int(ValueType t) {
  switch (t) {
    case ValueType::U8: case ValueType::I8: case ValueType::U16: case ValueType::I16:
    case ValueType::U32: case ValueType::I32: case ValueType::U64: case ValueType::I64: return true;
    default: return false;
  }
}

TensorType tensor_type_of(DType d) {
  switch (d) {
    case DType::F32: return TensorType::F32;
    case DType::F16: return TensorType::F16;
    case DType::BF16: return TensorType::BF16;
  }
  return TensorType::F32;
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

// A file descriptor that writes everything or throws; the temp file goes away unless kept.
class TempFile {
 public:
  explicit TempFile(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("{}: cannot create: {}", path_, std::strerror(errno));
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!kept_) ::unlink(path_.c_str());
  }
  void write(const void* data, size_t n) {
    write_all(fd_, std::string_view(static_cast<const char*>(data), n), path_);
    written_ += n;
  }
  void zeros(uint64_t n) {
    static const char z[64] = {};
    while (n > 0) {
      size_t k = static_cast<size_t>(std::min<uint64_t>(n, sizeof z));
      write(z, k);
      n -= k;
    }
  }
  uint64_t written() const { return written_; }
  void commit(const std::string& target) {
    if (::fsync(fd_) != 0) fail("{}: cannot flush to disk: {}", path_, std::strerror(errno));
    int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) fail("{}: cannot close: {}", path_, std::strerror(errno));
    if (::rename(path_.c_str(), target.c_str()) != 0)
      fail("{}: cannot rename into place: {}", target, std::strerror(errno));
    kept_ = true;
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool kept_ = false;
  uint64_t written_ = 0;
};

}  // namespace

void Writer::put(const std::string& key, std::string encoded) {
  if (key.empty()) fail("GGUF: a metadata key is empty");
  for (auto& kv : kv_)
    if (kv.key == key) {
      kv.encoded = std::move(encoded);
      return;
    }
  kv_.push_back({key, std::move(encoded)});
}

bool Writer::has(const std::string& key) const {
  for (const auto& kv : kv_)
    if (kv.key == key) return true;
  return false;
}

void Writer::add(const std::string& key, const Value& v) {
  std::string s;
  put_raw<uint32_t>(s, static_cast<uint32_t>(v.type));
  if (is_int(v.type)) {
    if (const auto* u = std::get_if<uint64_t>(&v.v)) put_int(s, v.type, 0, true, *u, key);
    else if (const auto* i = std::get_if<int64_t>(&v.v)) put_int(s, v.type, *i, false, 0, key);
    else fail("GGUF key '{}': integer type without an integer value", key);
  } else if (v.type == ValueType::F32 || v.type == ValueType::F64) {
    const auto* d = std::get_if<double>(&v.v);
    if (!d) fail("GGUF key '{}': float type without a float value", key);
    if (v.type == ValueType::F32) put_raw<float>(s, static_cast<float>(*d));
    else put_raw<double>(s, *d);
  } else if (v.type == ValueType::BOOL) {
    const auto* b = std::get_if<bool>(&v.v);
    if (!b) fail("GGUF key '{}': bool type without a bool value", key);
    put_raw<uint8_t>(s, *b ? 1 : 0);
  } else if (v.type == ValueType::STRING) {
    const auto* str = std::get_if<std::string>(&v.v);
    if (!str) fail("GGUF key '{}': string type without a string value", key);
    put_str(s, *str);
  } else if (v.type == ValueType::ARRAY) {
    const ValueType et = v.elem_type;
    put_raw<uint32_t>(s, static_cast<uint32_t>(et));
    if (et == ValueType::STRING) {
      const auto* a = std::get_if<std::vector<std::string>>(&v.v);
      if (!a) fail("GGUF key '{}': string array without strings", key);
      put_raw<uint64_t>(s, a->size());
      for (const auto& x : *a) put_str(s, x);
    } else if (et == ValueType::BOOL) {
      const auto* a = std::get_if<std::vector<bool>>(&v.v);
      if (!a) fail("GGUF key '{}': bool array without bools", key);
      put_raw<uint64_t>(s, a->size());
      for (bool x : *a) put_raw<uint8_t>(s, x ? 1 : 0);
    } else if (et == ValueType::F32 || et == ValueType::F64) {
      const auto* a = std::get_if<std::vector<double>>(&v.v);
      if (!a) fail("GGUF key '{}': float array without floats", key);
      put_raw<uint64_t>(s, a->size());
      for (double x : *a) {
        if (et == ValueType::F32) put_raw<float>(s, static_cast<float>(x));
        else put_raw<double>(s, x);
      }
    } else if (is_int(et)) {
      const auto* a = std::get_if<std::vector<int64_t>>(&v.v);
      if (!a) fail("GGUF key '{}': integer array without integers", key);
      put_raw<uint64_t>(s, a->size());
      for (int64_t x : *a) put_int(s, et, x, false, 0, key);
    } else {
      fail("GGUF key '{}': arrays of type {} cannot be written", key, static_cast<uint32_t>(et));
    }
  } else {
    fail("GGUF key '{}': unknown value type {}", key, static_cast<uint32_t>(v.type));
  }
  put(key, std::move(s));
}

void Writer::add_string(const std::string& key, const std::string& v) {
  Value x;
  x.type = ValueType::STRING;
  x.v = v;
  add(key, x);
}

void Writer::add_u32(const std::string& key, uint32_t v) {
  Value x;
  x.type = ValueType::U32;
  x.v = uint64_t(v);
  add(key, x);
}

void Writer::add_f32(const std::string& key, float v) {
  Value x;
  x.type = ValueType::F32;
  x.v = double(v);
  add(key, x);
}

void Writer::add_bool(const std::string& key, bool v) {
  Value x;
  x.type = ValueType::BOOL;
  x.v = v;
  add(key, x);
}

void Writer::add_string_array(const std::string& key, const std::vector<std::string>& v) {
  Value x;
  x.type = ValueType::ARRAY;
  x.elem_type = ValueType::STRING;
  x.v = v;
  add(key, x);
}

void Writer::add_i32_array(const std::string& key, const std::vector<int32_t>& v) {
  Value x;
  x.type = ValueType::ARRAY;
  x.elem_type = ValueType::I32;
  x.v = std::vector<int64_t>(v.begin(), v.end());
  add(key, x);
}

void Writer::add_tensor(const std::string& name, const HostTensor& t) {
  if (name.empty()) fail("GGUF: a tensor name is empty");
  if (t.shape.empty() || t.shape.size() > 4) fail("GGUF: tensor '{}' has {} dimensions (1 to 4)", name, t.shape.size());
  for (int64_t d : t.shape)
    if (d <= 0) fail("GGUF: tensor '{}' has a dimension of {}", name, d);
  if (t.nbytes != static_cast<size_t>(t.numel()) * dtype_size(t.dtype) || !t.data)
    fail("GGUF: tensor '{}': {} bytes do not match its shape and type {}", name, t.nbytes, dtype_name(t.dtype));
  for (const auto& x : tensors_)
    if (x.name == name) fail("GGUF: tensor '{}' is added twice", name);
  tensors_.push_back({name, t});
}

void Writer::write(const std::string& path, uint32_t alignment) const {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0)
    fail("{}: alignment {} is not a power of two", path, alignment);
  std::vector<Kv> kv = kv_;
  std::erase_if(kv, [](const Kv& x) { return x.key == "general.alignment"; });
  if (alignment != kDefaultAlignment) {
    std::string s;
    put_raw<uint32_t>(s, static_cast<uint32_t>(ValueType::U32));
    put_raw<uint32_t>(s, alignment);
    kv.push_back({"general.alignment", s});
  }

  std::string head = "GGUF";
  put_raw<uint32_t>(head, 3);
  put_raw<uint64_t>(head, tensors_.size());
  put_raw<uint64_t>(head, kv.size());
  for (const auto& x : kv) {
    put_str(head, x.key);
    head += x.encoded;
  }
  uint64_t offset = 0;
  std::vector<uint64_t> offsets;
  for (const auto& t : tensors_) {
    offset = align_up(offset, alignment);
    offsets.push_back(offset);
    put_str(head, t.name);
    put_raw<uint32_t>(head, static_cast<uint32_t>(t.data.shape.size()));
    for (auto it = t.data.shape.rbegin(); it != t.data.shape.rend(); ++it) put_raw<uint64_t>(head, static_cast<uint64_t>(*it));
    put_raw<uint32_t>(head, static_cast<uint32_t>(tensor_type_of(t.data.dtype)));
    put_raw<uint64_t>(head, offset);
    offset += t.data.nbytes;
  }

  std::filesystem::path target(path);
  if (target.has_parent_path()) std::filesystem::create_directories(target.parent_path());
  TempFile f(path + ".tmp." + std::to_string(::getpid()));
  f.write(head.data(), head.size());
  f.zeros(align_up(f.written(), alignment) - f.written());
  const uint64_t data_start = f.written();
  for (size_t i = 0; i < tensors_.size(); ++i) {
    f.zeros(data_start + offsets[i] - f.written());
    f.write(tensors_[i].data.data, tensors_[i].data.nbytes);
  }
  f.commit(path);
}

}  // namespace rlhf::gguf
