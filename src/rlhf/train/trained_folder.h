// A trained folder on disk: what train-reward and train-policy leave, or a plain peft
// adapter. Read and written here only; torch-free (the weights are read elsewhere).
//   reward model   reward_model.json            the manifest (below)
//                  adapter_model.safetensors    the LoRA adapter, peft names
//                  adapter_config.json          peft's settings (task_type SEQ_CLS)
//                  reward_head.safetensors      score.weight [1, hidden], score.bias [1]
//   policy         policy.json                  the manifest ("format": "rlhf.policy")
//                  adapter_model.safetensors    the LoRA adapter (+ adapter_config.json)
//                  value_head.safetensors,
//                  value/                       the value model, for continuing training
//   peft adapter   adapter_config.json + adapter_model.safetensors, nothing else required
// A manifest records the base model (reference, path, format, sha256), the LoRA settings,
// the prompt encoding (format, instruction, lengths, EOS and padding ids) and what the
// training did ("training": settings and summary); reward_model.json also the head
// ("head": {"hidden_size", "position": "eos"}). It is written last and atomically: a folder
// without its manifest holds no finished model.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/data/encode.h"
#include "rlhf/model/lora_config.h"

namespace rlhf {

inline constexpr const char* kRewardModelManifest = "reward_model.json";
inline constexpr const char* kPolicyManifest = "policy.json";
inline constexpr const char* kAdapterConfigFile = "adapter_config.json";
inline constexpr const char* kAdapterWeightsFile = "adapter_model.safetensors";
inline constexpr const char* kRewardHeadFile = "reward_head.safetensors";
inline constexpr size_t kMaxManifestBytes = size_t(4) << 20;  // larger manifests are refused

struct TrainedFolder {
  enum class Kind { RewardModel, Policy, Peft };

  Kind kind = Kind::RewardModel;
  std::string dir;  // where it was read from ("" for one not read from disk)
  // The base model as recorded: the reference given at training time, its resolved absolute
  // path, "hf" or "gguf", and its content hash (model_content_hash). A peft folder records
  // only base_model_name_or_path (as base_reference) and no hash.
  std::string base_reference, base_path, base_format, base_sha256;
  LoraConfig lora;
  data::EncodeConfig encode;          // reward model, policy; a peft folder: the defaults
  int32_t eos_id = -1, pad_id = -1;   // reward model, policy; -1 in a peft folder
  int64_t hidden_size = 0;            // reward model: the head's input width; else 0
  std::string task_type;              // adapter_config.json's (CAUSAL_LM, SEQ_CLS, ...)
  nlohmann::json training;            // settings and summary of the run (informational)

  // The manifest: reward_model.json or policy.json (adapter_config.json for a peft folder).
  std::string manifest_path() const;
  std::string adapter_config_path() const;
  std::string adapter_weights_path() const;
  std::string reward_head_path() const;  // a reward model's head
  // The files whose bytes make up this model, in a fixed order: the manifest, the adapter
  // weights and, for a reward model, the head (sha256_files of them fingerprints it).
  std::vector<std::string> content_files() const;

  // The base to load when none is given: the recorded absolute path while it exists, else
  // the reference as given at training time. Throws rlhf::Error (naming the manifest) when
  // the folder records neither.
  std::string base_to_load() const;
  // Throws rlhf::Error when a base sha256 is recorded and `sha256` (the content hash of
  // `reference`, loaded from `path`) differs: the message names the folder, the manifest and
  // the `flag` that chooses another base.
  void check_base(const std::string& reference, const std::string& path, const std::string& sha256,
                  const std::string& flag) const;

  // The manifest's JSON (reward model or policy; a peft folder has none).
  nlohmann::json to_json() const;
  // A manifest's contents; the kind comes from its "format" ("rlhf.reward_model",
  // "rlhf.policy"). Throws rlhf::Error naming `source` and the field at fault.
  static TrainedFolder from_json(const nlohmann::json& j, const std::string& source);
};

// "reward", "policy", "peft".
const char* trained_folder_kind_name(TrainedFolder::Kind kind);

// Reads a trained folder: the kind from the manifest present (reward_model.json, else
// policy.json, else a peft folder's adapter_config.json), its fields, and adapter_config.json
// (plain LoRA; r and lora_alpha must match the manifest). adapter_model.safetensors and, for
// a reward model, reward_head.safetensors must be there. A pipeline run's stage folder
// (RUN/train_policy, RUN/train_reward) stands for the model in its model/ subfolder (`dir`
// then names that subfolder). Reads are bounded
// (kMaxManifestBytes); errors name the file and the field.
TrainedFolder read_trained_folder(const std::string& dir);

// Writes the manifest of a reward model or policy into `dir`, atomically (write it after the
// weights: it marks the folder finished). Throws rlhf::Error for a peft folder.
void write_trained_folder_manifest(const std::string& dir, const TrainedFolder& folder);

// A policy's manifest, policy.json: `folder.kind` must be Policy.
void write_policy_folder_manifest(const std::string& dir, const TrainedFolder& folder);

// A reward model's manifest as the reward trainer fills it (kind RewardModel).
using RewardModelInfo = TrainedFolder;
// write_trained_folder_manifest for a reward model (`info.kind` must be RewardModel).
void write_reward_model_info(const std::string& dir, const RewardModelInfo& info);
// read_trained_folder of a folder that must hold a reward model.
RewardModelInfo read_reward_model_info(const std::string& dir);

}  // namespace rlhf
