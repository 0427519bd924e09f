// GGUF writer (version 3): metadata values of every type and F32/F16/BF16 tensors, streamed
// to a temporary file beside the target, flushed to disk and renamed into place, so that a
// crash or an error never leaves a half-written model behind. The layout is what
// llama.cpp's gguf reader expects: header, key/values, tensor infos (dims fastest axis
// first), padding to general.alignment, then each tensor's data at an aligned offset.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "rlhf/model/gguf.h"
#include "rlhf/model/host_tensor.h"

namespace rlhf::gguf {

class Writer {
 public:
  // Any value as gguf::File reads it; integers and floats are written at their original width
  // (Value::type / elem_type). Throws rlhf::Error naming the key when a value does not fit.
  void add(const std::string& key, const Value& v);
  void add_string(const std::string& key, const std::string& v);
  void add_u32(const std::string& key, uint32_t v);
  void add_f32(const std::string& key, float v);
  void add_bool(const std::string& key, bool v);
  void add_string_array(const std::string& key, const std::vector<std::string>& v);
  void add_i32_array(const std::string& key, const std::vector<int32_t>& v);

  // A tensor in torch order (slowest axis first); its bytes are written as they are, as
  // GGUF type F32, F16 or BF16 after t.dtype. `t` must stay valid until write().
  void add_tensor(const std::string& name, const HostTensor& t);

  // Writes the file atomically; general.alignment is written when it is not the default 32.
  void write(const std::string& path, uint32_t alignment = 32) const;

  bool has(const std::string& key) const;

 private:
  struct Kv {
    std::string key;
    std::string encoded;  // u32 type + value
  };
  struct Tensor {
    std::string name;
    HostTensor data;
  };
  void put(const std::string& key, std::string encoded);
  std::vector<Kv> kv_;
  std::vector<Tensor> tensors_;
};

}  // namespace rlhf::gguf
