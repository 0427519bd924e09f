// The pipeline spec: one YAML file with the seed's parameter names (docs/pipeline.md), read and
// checked in full. Every problem is an rlhf::Error naming the file, the key (dotted for nested
// blocks: "advanced.ppo_epochs") and its line. Unknown keys are errors (a typo must not
// silently fall back to a default). Relative paths are taken from the spec's folder.
//
//   preference_dataset: prefs.jsonl            # or an rlaif block that labels one
//   prompt_dataset: prompts.jsonl
//   eval_dataset: eval.jsonl                   # optional: untuned/tuned inference + side by side
//   large_model_reference: smollm2-135m-instruct
//   prompt_sequence_length: 512
//   target_sequence_length: 64
//   reward_model_train_steps: 1000             # or reward_model_epochs
//   reinforcement_learning_train_steps: 1000   # or reinforcement_learning_epochs
//   reward_model_learning_rate_multiplier: 1.0
//   reinforcement_learning_rate_multiplier: 1.0
//   kl_coeff: 0.1
//   method: ppo                                # grpo, rloo (train-policy) or dpo (train-dpo)
//   rewards: [max-words=50, "regex=^(Yes|No),"]  # rule rewards, with or without a reward model
//   instruction: "Summarize in less than 50 words."
//   rlaif:    {prompt_dataset, rule | judge, task, temperatures: [0.7, 1.0], min_confidence}
//   autosxs:  {judge, task, explanation_tokens}
//   advanced: {prompt_format, batch sizes, LoRA ranks, PPO knobs, seed, ...}
//
// The trainers' keys and their checks come from the settings tables (docs/settings.md): a
// value the trainer would refuse is refused here, naming the key.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/train/dpo_config.h"
#include "rlhf/train/policy_config.h"
#include "rlhf/train/reward_config.h"

namespace rlhf::pipeline {

// Labeling the preference set first (rlhf label): two sampled candidates per prompt.
struct RlaifSpec {
  bool enabled = false;
  std::string prompt_dataset;                 // prompts to sample candidates for
  std::string rule;                           // max-words=N, regex=..., prefer-shorter
  std::string judge;                          // or a judge model
  std::string task = "summarization";
  std::vector<double> temperatures = {0.7, 1.0};
  double min_confidence = 0;
  bool keep_ties = false;
};

struct AutoSxsSpec {
  bool enabled = false;
  std::string judge;                          // "" = the embedded default
  std::string task = "summarization";
  int64_t explanation_tokens = 32;
};

// The advanced keys that belong to no trainer (the trainers' own keys come from their
// settings tables: reward_settings(), policy_settings()).
struct AdvancedSpec {
  int64_t inference_batch_size = 16;          // label, infer, sxs scoring
  int64_t max_words = 50;                     // side by side: the share of completions over it
  std::string export_format = "hf";           // hf, gguf, none
};

struct PipelineSpec {
  std::string path;                           // the spec file
  std::string preference_dataset, prompt_dataset, eval_dataset;
  std::string large_model_reference;          // "" = the embedded default
  // The two trainers' settings, each from the keys of its settings table (instruction,
  // prompt_sequence_length, kl_coeff, advanced.ppo_epochs, ...); a key both tables have sets
  // both. The data paths, model and outputs of the trainers are filled in by the stages.
  RewardTrainConfig reward;
  PolicyTrainConfig policy;
  DpoTrainConfig dpo;                         // the policy stage's settings when method is dpo
  // How the policy is tuned: ppo, grpo, rloo (train-policy --method, from prompt_dataset and
  // the rewards) or dpo (train-dpo, from preference_dataset). The rule rewards (`rewards:`)
  // are policy.reward_rule.
  std::string method = "ppo";
  SettingNames given;                         // the spec keys present in the file
  RlaifSpec rlaif;
  AutoSxsSpec autosxs;
  AdvancedSpec advanced;

  // Settings every stage shares (the same keys in both tables).
  const std::string& instruction() const { return reward.instruction; }
  const std::string& prompt_format() const { return reward.prompt_format; }
  int64_t prompt_sequence_length() const { return reward.prompt_sequence_length; }
  int64_t target_sequence_length() const { return reward.target_sequence_length; }
  uint64_t seed() const { return reward.seed; }
  const std::string& dtype() const { return reward.dtype; }
  const std::string& device() const { return reward.device; }
  int64_t threads() const { return reward.threads; }
  bool dpo_method() const { return method == "dpo"; }
  // Whether the reward model is trained: always for ppo, grpo and rloo without rule rewards;
  // with rule rewards or dpo only when there are preference pairs to train it on (its scores
  // then enter the side by side).
  bool trains_reward_model() const {
    return (!dpo_method() && policy.reward_rule.empty()) || !preference_dataset.empty() || rlaif.enabled;
  }

  // Every value, defaults filled in (what `pipeline compile` prints and manifests record). A
  // key both trainers have and whose defaults differ shows {"train_reward": .., "train_policy": ..}.
  nlohmann::json to_json() const;
};

// Every key a spec may hold, in the order the report shows them ("advanced.ppo_epochs" for
// nested ones), with the block keys ("rlaif", "autosxs") as their block's name.
const std::vector<std::string>& spec_key_order();

// Reads and checks a spec file. Throws rlhf::Error naming the file, key and line.
PipelineSpec read_spec(const std::string& path);
// The same from text (`source` names it in errors; relative paths are taken from `base_dir`).
PipelineSpec parse_spec(const std::string& text, const std::string& source, const std::string& base_dir);

}  // namespace rlhf::pipeline
