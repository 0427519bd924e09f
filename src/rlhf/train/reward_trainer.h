// RewardTrainer: preference pairs -> a trained reward model (`rlhf train-reward`).
// It owns the whole loop: validate and encode the data, split off validation pairs, then per
// step: B pairs in micro-batches (gradient accumulation), the pairwise loss, clipping, AdamW
// with warmup and linear decay; metrics to TensorBoard/CSV/JSONL; validation and atomic
// checkpoints every N steps; a resume that reproduces an uninterrupted run; at the end the
// head's bias centred so the mean training reward is 0, and the model written to `output`.
#pragma once
#include <cstdint>
#include <string>

#include "rlhf/data/encode.h"
#include "rlhf/model/transformer.h"

namespace rlhf {

struct RewardTrainConfig {
  // Data.
  std::string preference_dataset;       // JSONL file, folder or glob
  std::string eval_dataset;             // used as the validation set when it has preference fields
  bool skip_invalid = false;            // leave out bad lines instead of stopping
  std::string prompt_format = "auto";   // raw, chat, or auto (chat when the data is in chat form)
  std::string instruction;              // prepended to every prompt
  int64_t prompt_sequence_length = 512;
  int64_t target_sequence_length = 64;
  double validation_fraction = 0.1;     // of the preference data, when no eval_dataset
  int64_t max_validation_pairs = 5000;

  // Model.
  std::string large_model_reference;    // registered name, GGUF file or HF folder
  std::string dtype = "fp32";           // fp32, or bf16 (base weights and activations; LoRA and head stay fp32)
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
  double max_grad_norm = 1.0;           // 0 = no clipping
  double margin = 0.0;                  // subtracted from r_chosen - r_rejected in the loss
  double center_rewards_coefficient = 0.0;  // 0.01 enables reward centering
  uint64_t seed = 0;

  // Run.
  std::string output;                   // folder of the model, logs and checkpoints
  bool resume = false;                  // continue from the latest checkpoint in output
  int64_t validation_every = 100;       // steps (and at the end); 0 = only at the end
  int64_t checkpoint_every = 100;       // steps (and at the end)
  int64_t keep_checkpoints = 2;
  int64_t centering_pairs = 512;        // training pairs the final mean reward is measured on (by seed)
  bool progress = true;
};

struct RewardTrainSummary {
  int64_t steps = 0;
  int64_t train_pairs = 0, validation_pairs = 0;
  double validation_accuracy = 0, validation_loss = 0;
  double train_seconds = 0, pairs_per_second = 0, tokens_per_second = 0;
};

// Runs the training; throws rlhf::Error on bad input or settings (before any training).
RewardTrainSummary train_reward_model(const RewardTrainConfig& config);

}  // namespace rlhf
