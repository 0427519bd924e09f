// HostTensor: a weight as read from a model file, before it becomes a torch tensor: a shape
// in torch order (slowest axis first), an element type, and bytes that either point into a
// mapped file (zero copy) or are owned (dequantized data).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace rlhf {

enum class DType { F32, F16, BF16 };

inline size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }
const char* dtype_name(DType t);

struct HostTensor {
  std::vector<int64_t> shape;      // torch order: shape[0] is the slowest axis
  DType dtype = DType::F32;
  const uint8_t* data = nullptr;   // numel() * dtype_size(dtype) bytes, little-endian
  size_t nbytes = 0;
  std::shared_ptr<const void> owner;  // keeps `data` alive (a MappedFile or a buffer)

  int64_t numel() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

// An owned F32 tensor of the given shape, zero-filled; write through mutable_f32().
HostTensor make_f32_tensor(std::vector<int64_t> shape);
inline float* mutable_f32(HostTensor& t) { return const_cast<float*>(reinterpret_cast<const float*>(t.data)); }

}  // namespace rlhf
