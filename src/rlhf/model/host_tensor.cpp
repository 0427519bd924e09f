#include "rlhf/model/host_tensor.h"

namespace rlhf {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
  }
  return "?";
}

HostTensor make_f32_tensor(std::vector<int64_t> shape) {
  HostTensor t;
  t.shape = std::move(shape);
  t.dtype = DType::F32;
  auto buf = std::make_shared<std::vector<float>>(static_cast<size_t>(t.numel()), 0.0f);
  t.data = reinterpret_cast<const uint8_t*>(buf->data());
  t.nbytes = buf->size() * sizeof(float);
  t.owner = buf;
  return t;
}

}  // namespace rlhf
