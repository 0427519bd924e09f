// safetensors: the bytes as a .safetensors file through safetensors::Archive; every tensor
// is read in full and must hold as many bytes as its shape and dtype say.
#include <cstdint>
#include <string>

#include "fuzz_input.h"
#include "rlhf/model/safetensors.h"
#include "rlhf/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = rlhf::fuzz::write_input(data, size, "model.safetensors");
  try {
    const rlhf::safetensors::Archive a = rlhf::safetensors::Archive::open(path);
    for (const std::string& name : a.names()) {
      const rlhf::HostTensor& t = a.get(name);
      for (int64_t d : t.shape) rlhf::fuzz::check(d >= 0, "dimensions are non-negative");
      rlhf::fuzz::check(t.nbytes == size_t(t.numel()) * rlhf::dtype_size(t.dtype), "bytes match shape and dtype");
      rlhf::fuzz::check(t.nbytes == 0 || t.data != nullptr, "data present");
      if (t.nbytes) rlhf::fuzz::touch(t.data, t.nbytes);
    }
    for (const auto& [k, v] : a.metadata()) rlhf::fuzz::touch(reinterpret_cast<const uint8_t*>(v.data()), v.size());
  } catch (const rlhf::Error&) {
  }
  return 0;
}
