// DpoTrainer: preference pairs -> a policy adapter trained by direct preference optimisation
// (`rlhf train-dpo`). The policy is the base with a LoRA adapter, the reference the same base
// with the adapter off. Before the first step the reference's summed log-probs of every
// chosen and rejected completion (training and validation) are computed once, without
// gradients; a resume computes them again the same way (same data, weights and order: the
// same numbers). Per step: B pairs in micro-batches, each pair packed once (prompt ++ chosen ++
// rejected, reward_model.h pack_pairs) so the prompt is computed once for both completions;
// the loss of dpo.h; clipping, AdamW with warmup and linear decay; TRL's metrics; validation,
// atomic checkpoints and resume as train-reward (trainer_run.h). At the end a policy folder
// (policy.json last, trained_folder.h) that infer, sxs and export read as train-policy's.
#pragma once
#include <cstdint>
#include <string>

#include "rlhf/train/dpo_config.h"

namespace rlhf {

struct DpoTrainSummary {
  int64_t steps = 0;
  int64_t train_pairs = 0, validation_pairs = 0;
  // On the validation pairs at the end (TRL's eval_ metrics).
  double validation_loss = 0, validation_accuracy = 0, validation_margin = 0;
  double validation_reward_chosen = 0, validation_reward_rejected = 0;
  double train_seconds = 0, pairs_per_second = 0, tokens_per_second = 0;
};

// Runs the training; throws rlhf::Error on bad input or settings (before any training).
DpoTrainSummary train_dpo(const DpoTrainConfig& config);

}  // namespace rlhf
