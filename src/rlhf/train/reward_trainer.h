// RewardTrainer: preference pairs -> a trained reward model (`rlhf train-reward`).
// It validates and encodes the data and splits off validation pairs, then per step: B pairs
// in micro-batches (gradient accumulation), the pairwise loss, clipping, AdamW with warmup and
// linear decay (a step with a non-finite gradient norm is skipped); metrics, validation and
// atomic checkpoints every N steps; a resume that reproduces an uninterrupted run (the run
// plumbing is trainer_run.h); at the end the head's bias centred so the mean training reward
// is 0, and the model written to `output` (reward_model.json last, see trained_folder.h).
#pragma once
#include <cstdint>
#include <string>

#include "rlhf/train/reward_config.h"

namespace rlhf {

struct RewardTrainSummary {
  int64_t steps = 0;
  int64_t train_pairs = 0, validation_pairs = 0;
  double validation_accuracy = 0, validation_loss = 0;
  double train_seconds = 0, pairs_per_second = 0, tokens_per_second = 0;
};

// Runs the training; throws rlhf::Error on bad input or settings (before any training).
RewardTrainSummary train_reward_model(const RewardTrainConfig& config);

}  // namespace rlhf
