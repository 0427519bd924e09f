// DpoTrainConfig: every setting of `rlhf train-dpo` (offline preference optimisation of a
// policy adapter: DPO, IPO or hinge). The member initialisers are the only defaults; the
// settings table in dpo_config.cpp gives each setting its flag, spec key, allowed range and
// help, and from it come the CLI flags, the checks and the resume fingerprint
// (docs/settings.md lists it). Torch-free.
#pragma once
#include <cstdint>
#include <string>

#include "rlhf/model/lora_config.h"
#include "rlhf/util/settings.h"

namespace rlhf {

struct DpoTrainConfig {
  // Inputs and outputs (arguments of the command, not settings).
  std::string preference_dataset;       // JSONL file, folder or glob (every form train-reward reads)
  std::string eval_dataset;             // validation pairs when it has preference fields
  std::string large_model_reference;    // the base: registered name, GGUF file or HF folder
  std::string output;                   // the policy folder, logs and checkpoints
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

  // Model: the policy is the base + a LoRA adapter, the reference the base alone.
  std::string dtype = "auto";           // auto (model.h resolve_dtype), fp32, or bf16 base (the adapter stays fp32)
  std::string device = "cpu";
  LoraConfig lora{.rank = 8, .alpha = 0.0, .dropout = 0.0, .targets = {"q_proj", "v_proj"}};

  // Loss.
  double beta = 0.1;                    // strength of the tie to the reference
  std::string loss_type = "sigmoid";    // sigmoid (DPO), ipo, hinge (dpo.h)
  double label_smoothing = 0.0;         // conservative DPO: the assumed rate of flipped labels, in [0, 0.5)

  // Optimisation.
  int64_t train_steps = 1000;
  double epochs = 0;                    // when > 0: steps = ceil(pairs / batch) × epochs
  int64_t batch_size = 64;              // pairs per step
  int64_t micro_batch_size = 8;         // pairs per forward/backward (gradient accumulation)
  double learning_rate_multiplier = 1.0;
  static constexpr double kBaseLearningRate = 1e-4;  // the lr the multiplier scales (LoRA)
  double warmup_ratio = 0.05;           // of the steps, rounded up
  double weight_decay = 0.0;
  double adam_epsilon = 1e-8;
  double max_grad_norm = 1.0;           // 0 = no clipping
  int64_t max_skipped_steps = 5;        // consecutive steps with a non-finite gradient before the run stops
  uint64_t seed = 0;

  // Run.
  int64_t validation_every = 100;       // steps (and at the end); 0 = only at the end
  int64_t checkpoint_every = 100;       // steps (and at the end)
  int64_t keep_checkpoints = 2;
  bool gradient_checkpointing = false;  // recompute layer activations in the backward pass
  int64_t threads = 0;                  // CPU threads; 0 = all cores

  // The steps this configuration trains for `pairs` training pairs (epochs or train_steps).
  int64_t steps_for(int64_t pairs) const;
};

// One row per setting above (inputs and outputs excluded).
const SettingsTable<DpoTrainConfig>& dpo_settings();

// Every check of the settings; throws SettingError naming the setting at fault (see
// check_reward_config).
void check_dpo_config(const DpoTrainConfig& config, const SettingNames& given = {});

}  // namespace rlhf
