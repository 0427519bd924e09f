// Pipeline spec: the bytes as the text of a spec (YAML, of which JSON is a part) through
// parse_spec; a spec that reads must also print (to_json, what `pipeline compile` shows).
#include <cstdint>
#include <string>

#include "fuzz_input.h"
#include "rlhf/pipeline/spec.h"
#include "rlhf/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    // The scratch folder is empty: relative dataset paths resolve against it and name nothing.
    const rlhf::pipeline::PipelineSpec spec = rlhf::pipeline::parse_spec(text, "spec.yaml", rlhf::fuzz::scratch_dir());
    (void)spec.to_json().dump();
  } catch (const rlhf::Error&) {
  }
  return 0;
}
