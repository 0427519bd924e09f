// A trained reward model on disk, and using it. The folder holds:
//   reward_model.json           what it is: base model (reference, path, sha256), LoRA and
//                               encoding settings (prompt format, instruction, lengths, EOS)
//   adapter_model.safetensors   the LoRA adapter, peft names (+ adapter_config.json)
//   reward_head.safetensors     score.weight [1, hidden], score.bias [1]
// reward_model.json is written last: a folder without it holds no finished model.
#pragma once
#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

#include "rlhf/data/dataset.h"
#include "rlhf/data/encode.h"
#include "rlhf/model/model.h"
#include "rlhf/train/reward_model.h"

namespace rlhf {

struct RewardModelInfo {
  std::string base_reference, base_path, base_format, base_sha256;
  LoraConfig lora;
  data::EncodeConfig encode;
  int32_t eos_id = -1, pad_id = -1;
  int64_t hidden_size = 0;
  nlohmann::json training;  // settings and results of the run (informational)

  nlohmann::json to_json() const;
  // Throws rlhf::Error naming `source` and the field at fault.
  static RewardModelInfo from_json(const nlohmann::json& j, const std::string& source);
};

void write_reward_model_info(const std::string& dir, const RewardModelInfo& info);
RewardModelInfo read_reward_model_info(const std::string& dir);

// The token id that ends completions for this model: the tokenizer's EOS when it is a stop
// token, else the first stop token.
int32_t completion_eos_id(const Model& model);

struct LoadedRewardModel {
  std::unique_ptr<Model> base;
  std::unique_ptr<RewardModel> reward;
  std::unique_ptr<data::Encoder> encoder;
  RewardModelInfo info;
};

// Loads the base model named in the folder (model_override replaces it, e.g. after a move),
// checks its content hash, and the adapter and head.
std::unique_ptr<LoadedRewardModel> load_reward_model(const std::string& dir, const LoadOptions& options,
                                                     const std::string& model_override = "");

// Rewards of (prompt, completion) rows, in input order; batches sorted by length.
std::vector<float> score_rows(const LoadedRewardModel& m, const std::vector<data::ScoredRow>& rows,
                              int64_t batch_size, bool progress);

}  // namespace rlhf
