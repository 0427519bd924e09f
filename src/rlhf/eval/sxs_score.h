// Reward-model scores for the side-by-side table: both responses of every row scored by a
// model from `rlhf train-reward` (score_a, score_b). See reward_prompt in sxs.h for the
// prompt each response is scored with.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "rlhf/eval/sxs.h"
#include "rlhf/model/model.h"

namespace rlhf::eval {

struct SxsScoreOptions {
  std::string reward_model;    // the train-reward folder
  std::string model_override;  // its base model, when it moved since training ("" = recorded)
  LoadOptions load;
  int64_t batch_size = 16;
  bool progress = true;
};

struct SxsScoreReport {
  size_t scored = 0;                // responses scored (2 per row)
  size_t instruction_stripped = 0;  // prompts taken from inputs_pretokenized without the
                                    // reward model's instruction
  size_t pretokenized_as_is = 0;    // prompts taken from inputs_pretokenized as they are
  std::string instruction;          // the reward model's
};

// Fills score_a and score_b of every row and sets table.reward_model. Throws rlhf::Error.
SxsScoreReport score_sxs(SxsTable& table, const SxsScoreOptions& options);

}  // namespace rlhf::eval
