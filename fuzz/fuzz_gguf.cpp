// GGUF: the bytes as a .gguf file through gguf::File (metadata, every typed getter, every
// tensor loaded and read), then through read_model, which turns the metadata into a model
// config, a tokenizer and a chat template and takes the weights.
#include <cstdint>
#include <string>

#include "fuzz_input.h"
#include "rlhf/model/gguf.h"
#include "rlhf/model/loader.h"
#include "rlhf/util/error.h"

namespace {

template <class F>
void expect_error_or_value(F&& f) {
  try {
    (void)f();
  } catch (const rlhf::Error&) {
  }
}

void read_file(const std::string& path) {
  const rlhf::gguf::File f = rlhf::gguf::File::open(path);
  for (const auto& kv : f.metadata()) {
    const std::string& key = kv.first;
    expect_error_or_value([&] { return f.get_uint(key); });
    expect_error_or_value([&] { return f.get_int(key); });
    expect_error_or_value([&] { return f.get_float(key); });
    expect_error_or_value([&] { return f.get_bool(key); });
    expect_error_or_value([&] { return f.get_string(key); });
    expect_error_or_value([&] { return f.get_string_array(key); });
    expect_error_or_value([&] { return f.get_int_array(key); });
    expect_error_or_value([&] { return f.get_float_array(key); });
  }
  for (const rlhf::gguf::TensorInfo& t : f.tensors()) {
    rlhf::fuzz::check(f.find_tensor(t.name) == &t, "find_tensor finds each tensor");
    try {
      const rlhf::HostTensor h = f.load(t);
      rlhf::fuzz::check(h.shape == t.shape, "a loaded tensor has its info's shape");
      rlhf::fuzz::check(h.nbytes == size_t(h.numel()) * rlhf::dtype_size(h.dtype), "bytes match shape and dtype");
      rlhf::fuzz::check(h.nbytes == 0 || h.data != nullptr, "data present");
      if (h.nbytes) rlhf::fuzz::touch(h.data, h.nbytes);
    } catch (const rlhf::Error&) {
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = rlhf::fuzz::write_input(data, size, "input.gguf");
  try {
    read_file(path);
  } catch (const rlhf::Error&) {
    return 0;
  }
  try {
    rlhf::ModelFiles m = rlhf::read_model(path, /*weights=*/true);
    for (const auto& [name, t] : m.weights)
      if (t.nbytes) rlhf::fuzz::touch(t.data, t.nbytes);
  } catch (const rlhf::Error&) {
  }
  return 0;
}
