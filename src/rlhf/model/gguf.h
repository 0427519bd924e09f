// GGUF reader (v2 and v3): metadata of every value type, tensor infos, and tensor data
// dequantized to F32 (or viewed in place for F32/F16/BF16). Every size and offset read from
// the file is checked against the file size before anything is allocated; a truncated,
// corrupt or hostile file raises rlhf::Error naming the file and what is wrong.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "rlhf/model/host_tensor.h"
#include "rlhf/util/mapped_file.h"

namespace rlhf::gguf {

enum class ValueType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};

// ggml tensor types this reader understands (ids as in ggml.h).
enum class TensorType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q4_K = 12, Q6_K = 14,
  BF16 = 30,
};
const char* tensor_type_name(TensorType t);

// One metadata value. Scalars are widened (all integers to int64/uint64 by signedness,
// floats to double); arrays keep their element type and hold one of the vectors (integer
// arrays as int64: a u64 element above INT64_MAX is an error). Nested arrays are rejected.
struct Value {
  ValueType type = ValueType::U8;
  ValueType elem_type = ValueType::U8;  // for ARRAY
  std::variant<uint64_t, int64_t, double, bool, std::string,
               std::vector<int64_t>, std::vector<double>, std::vector<std::string>, std::vector<bool>>
      v;
};

struct TensorInfo {
  std::string name;
  std::vector<int64_t> shape;  // torch order (GGUF stores the fastest axis first; reversed here)
  TensorType type = TensorType::F32;
  uint64_t offset = 0;         // absolute offset in the file
  uint64_t nbytes = 0;
};

class File {
 public:
  static File open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  uint32_t version() const { return version_; }
  const std::map<std::string, Value>& metadata() const { return kv_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(const std::string& name) const;  // nullptr when absent

  bool has(const std::string& key) const { return kv_.count(key) != 0; }
  // Typed getters; throw rlhf::Error "<file>: metadata key '<key>' ..." when absent or of
  // an incompatible type. Integers of any width/sign convert when the value fits.
  uint64_t get_uint(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;  // F32/F64 (and integers)
  bool get_bool(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<int64_t> get_int_array(const std::string& key) const;
  std::vector<double> get_float_array(const std::string& key) const;
  std::optional<uint64_t> find_uint(const std::string& key) const;
  std::optional<double> find_float(const std::string& key) const;
  std::optional<std::string> find_string(const std::string& key) const;

  // The tensor's data: F32/F16/BF16 as a zero-copy view into the mapping (copied only when
  // general.alignment leaves it misaligned for its element size), quantized types
  // dequantized into an owned F32 buffer (in parallel for large tensors).
  HostTensor load(const TensorInfo& t) const;

 private:
  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  std::map<std::string, Value> kv_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;  // name -> position in tensors_
};

// Dequantizes n elements (a multiple of the type's block size) of type t from src to dst.
void dequantize(TensorType t, const uint8_t* src, float* dst, int64_t n);
// Bytes taken by n elements of type t; throws when n is not a multiple of the block size.
uint64_t type_nbytes(TensorType t, int64_t n);
// Elements per block of type t (1 for F32/F16/BF16, 32 or 256 for the block formats);
// 0 when t is not a type this reader knows.
int64_t type_block_size(TensorType t);

}  // namespace rlhf::gguf
