// RewardTrainConfig: every setting of `rlhf train-reward` and the pipeline's train_reward
// stage. The member initialisers are the only defaults; the settings table in
// reward_config.cpp gives each setting its flag, spec key, allowed range and help, and from
// it come the CLI flags, the spec's keys, the checks, the cache key and the resume
// fingerprint (docs/settings.md lists it). Torch-free.
#pragma once
#include <cstdint>
#include <string>

#include "rlhf/model/lora_config.h"
#include "rlhf/util/settings.h"

namespace rlhf {

struct RewardTrainConfig {
  // Inputs and outputs (arguments of the command, not settings).
  std::string preference_dataset;       // JSONL file, folder or glob
  std::string eval_dataset;             // used as the validation set when it has preference fields
  std::string large_model_reference;    // registered name, GGUF file or HF folder
  std::string output;                   // folder of the model, logs and checkpoints
  bool resume = false;                  // continue from the latest checkpoint in output
  bool progress = true;

  // Data.
  bool skip_invalid = false;            // leave out bad lines instead of stopping
  std::string prompt_format = "auto";   // raw, chat, or auto (chat when every prompt is a conversation)
  std::string instruction;              // prepended to every prompt
  int64_t prompt_sequence_length = 512;
  int64_t target_sequence_length = 64;
  double validation_fraction = 0.1;     // of the preference data, when no eval_dataset
  int64_t max_validation_pairs = 5000;

  // Model.
  std::string dtype = "auto";           // auto (model.h resolve_dtype), fp32, or bf16 (base weights and activations; LoRA and head stay fp32)
  std::string device = "cpu";
  LoraConfig lora{.rank = 4, .alpha = 0.0, .dropout = 0.0, .targets = {"q_proj", "v_proj"}};

  // Optimisation.
  int64_t train_steps = 1000;           // reward_model_train_steps
  double epochs = 0;                    // when > 0: steps = ceil(pairs / batch) × epochs
  int64_t batch_size = 64;              // pairs per step
  int64_t micro_batch_size = 8;         // pairs per forward/backward (gradient accumulation)
  double learning_rate_multiplier = 1.0;
  static constexpr double kBaseLearningRate = 1e-4;  // the lr the multiplier scales
  double warmup_ratio = 0.05;           // of the steps, rounded up
  double weight_decay = 0.0;
  double adam_epsilon = 1e-8;
  double max_grad_norm = 1.0;           // 0 = no clipping
  int64_t max_skipped_steps = 5;        // consecutive steps with a non-finite gradient before the run stops
  double margin = 0.0;                  // subtracted from r_chosen - r_rejected in the loss
  double center_rewards_coefficient = 0.0;  // 0.01 enables reward centering
  uint64_t seed = 0;

  // Run.
  int64_t validation_every = 100;       // steps (and at the end); 0 = only at the end
  int64_t checkpoint_every = 100;       // steps (and at the end)
  int64_t keep_checkpoints = 2;
  int64_t centering_pairs = 512;        // training pairs the final mean reward is measured on (by seed)
  bool gradient_checkpointing = false;  // recompute layer activations in the backward pass
  int64_t threads = 0;                  // CPU threads; 0 = all cores

  // The steps this configuration trains for `pairs` training pairs (epochs or train_steps).
  int64_t steps_for(int64_t pairs) const;
};

// One row per setting above (inputs and outputs excluded).
const SettingsTable<RewardTrainConfig>& reward_settings();

// Every check of the settings, each value against its row and the rows against each other;
// throws SettingError naming the setting at fault. `given` holds the names of the settings set
// explicitly (by flag or spec key): giving both train_steps and epochs is an error.
void check_reward_config(const RewardTrainConfig& config, const SettingNames& given = {});

}  // namespace rlhf
