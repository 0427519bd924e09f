// The pipeline spec: one YAML file with the seed's parameter names (DESIGN.md §4), read and
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
//   instruction: "Summarize in less than 50 words."
//   rlaif:    {prompt_dataset, rule | judge, task, temperatures: [0.7, 1.0], min_confidence}
//   autosxs:  {judge, task, explanation_tokens}
//   advanced: {prompt_format, batch sizes, LoRA ranks, PPO knobs, seed, ...}
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

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

// Knobs a user never has to touch (DESIGN.md §4, §6); the defaults are the single commands'.
struct AdvancedSpec {
  std::string prompt_format = "auto";         // raw, chat, auto (chat when the data is chat)
  int64_t reward_model_batch_size = 64;
  int64_t reward_model_micro_batch_size = 8;
  int64_t reward_model_lora_rank = 4;
  double validation_fraction = 0.1;
  int64_t reinforcement_learning_batch_size = 64;
  int64_t reinforcement_learning_micro_batch_size = 8;
  int64_t policy_lora_rank = 1;
  int64_t ppo_epochs = 4;
  int64_t num_mini_batches = 1;
  double cliprange = 0.2, cliprange_value = 0.2, vf_coef = 0.1;
  double gamma = 1.0, lam = 0.95;
  double temperature = 0.7;                   // rollouts
  double missing_eos_penalty = -1.0;
  bool eos_penalty = true;
  int64_t checkpoint_every = 10;              // both trainers, in steps
  int64_t inference_batch_size = 16;
  int64_t max_eval_prompts = 500;
  int64_t max_words = 50;                     // side by side: the share of completions over it
  std::string export_format = "hf";           // hf, gguf, none
  uint64_t seed = 0;
  std::string dtype = "fp32", device = "cpu";
  int64_t threads = 0;                        // 0 = all cores
};

struct PipelineSpec {
  std::string path;                           // the spec file
  std::string preference_dataset, prompt_dataset, eval_dataset;
  std::string large_model_reference;          // "" = the embedded default
  int64_t prompt_sequence_length = 512;
  int64_t target_sequence_length = 64;
  int64_t reward_model_train_steps = 1000;
  double reward_model_epochs = 0;             // > 0: steps = ceil(pairs / batch) × epochs
  int64_t reinforcement_learning_train_steps = 1000;
  double reinforcement_learning_epochs = 0;
  double reward_model_learning_rate_multiplier = 1.0;
  double reinforcement_learning_rate_multiplier = 1.0;
  double kl_coeff = 0.1;
  std::string instruction;
  RlaifSpec rlaif;
  AutoSxsSpec autosxs;
  AdvancedSpec advanced;

  // Every value, defaults filled in (what `pipeline compile` prints and manifests record).
  nlohmann::json to_json() const;
};

// Reads and checks a spec file. Throws rlhf::Error naming the file, key and line.
PipelineSpec read_spec(const std::string& path);
// The same from text (`source` names it in errors; relative paths are taken from `base_dir`).
PipelineSpec parse_spec(const std::string& text, const std::string& source, const std::string& base_dir);

}  // namespace rlhf::pipeline
