// Batched generation with a KV cache: prompts are left-padded (with a pad id that is never a
// stop id) and decoded together; each sequence stops at a stop id or after max_new_tokens.
// Returns the generated ids and their log-probabilities, which PPO reuses.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "rlhf/model/transformer.h"

namespace rlhf {

struct SamplingConfig {
  double temperature = 1.0;    // 0 = greedy
  int64_t top_k = 0;           // 0 = off
  double top_p = 1.0;          // 1 = off
  int64_t max_new_tokens = 64;
  uint64_t seed = 0;           // CPU runs with the same seed and threads repeat exactly
};

struct GenerateOptions {
  std::vector<int32_t> stop_ids;
  int32_t pad_id = 0;
  std::vector<const LoraAdapter*> adapters;  // active adapters (none = the base model)
  // One seed per prompt (empty = SamplingConfig::seed for the batch): each row then samples with its own
  // generator, so its completion does not depend on which other prompts share the batch
  // (data-parallel rollouts equal one process's).
  std::vector<uint64_t> row_seeds;
  // Called after every decoding step with the new token of each still-running sequence.
  std::function<void(size_t row, int32_t token)> on_token;
};

struct Generation {
  std::vector<std::vector<int32_t>> tokens;   // per prompt: generated ids (a stop id included)
  std::vector<std::vector<float>> logprobs;   // log p of each token under logits / temperature
                                              // (temperature 1 when greedy), before top-k/top-p
  std::vector<bool> stopped;                  // ended on a stop id (not on the length limit)
  int64_t steps = 0;                          // decoding steps run
  double prefill_seconds = 0, decode_seconds = 0;
};

Generation generate(const Transformer& net, const std::vector<std::vector<int32_t>>& prompts,
                    const SamplingConfig& sampling, const GenerateOptions& options);

}  // namespace rlhf
