// Batched generation with a KV cache: prompts are left-padded (with a pad id that is never a
// stop id) and decoded together; each sequence stops at a stop id or after max_new_tokens.
// Returns the generated ids and their log-probabilities, which PPO reuses.
//
// Two decode loops give these results:
// - per token: every step the chosen ids, log-probs and stop flags are read on the host, which
//   keeps the per-row state; sampling draws on the CPU with a CPU generator, so a seed repeats
//   on every device. Needed by on_token.
// - on the device: ids, log-probs, running/stopped flags and lengths live in tensors on the
//   model's device, preallocated for max_new_tokens; finished rows are fed pad, stop ids are
//   found by a device op, sampling draws on the device, and the host reads only "are all rows
//   done?" every sync_every steps and the results once at the end. No host synchronisation per
//   token on a GPU. On the CPU it returns exactly what the per-token loop returns (the same
//   draws from the same CPU generators); on a GPU a seed repeats on that device but gives
//   other samples than on the CPU.
// The KV cache (Transformer::new_cache) is allocated once for prompt + max_new_tokens.
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

enum class DecodeLoop {
  kAuto,      // on the device when the model is not on the CPU and on_token is unset, else per token
  kPerToken,  // the host reads every step
  kOnDevice,  // the host reads every sync_every steps (on_token set: per token all the same)
};

struct GenerateOptions {
  std::vector<int32_t> stop_ids;
  int32_t pad_id = 0;
  std::vector<const LoraAdapter*> adapters;  // active adapters (none = the base model)
  // One seed per prompt (empty = SamplingConfig::seed for the batch): each row then samples with its own
  // generator, so its completion does not depend on which other prompts share the batch
  // (data-parallel rollouts equal one process's). On a GPU each row has a generator of that
  // device seeded with its seed.
  std::vector<uint64_t> row_seeds;
  // Called after every decoding step with the new token of each still-running sequence. Setting
  // it forces the per-token loop (the host must see every token).
  std::function<void(size_t row, int32_t token)> on_token;
  DecodeLoop loop = DecodeLoop::kAuto;
  // Loop on the device: steps between the host's checks that every row is done (>= 1). After
  // the last row ends the loop runs up to sync_every - 1 more steps, whose tokens are dropped.
  int64_t sync_every = 8;
};

struct Generation {
  std::vector<std::vector<int32_t>> tokens;   // per prompt: generated ids (a stop id included)
  std::vector<std::vector<float>> logprobs;   // log p of each token under logits / temperature
                                              // (temperature 1 when greedy), before top-k/top-p
  std::vector<bool> stopped;                  // ended on a stop id (not on the length limit)
  int64_t steps = 0;       // decoding steps until the last row ended (the longest row's length),
                           // the same in both loops
  int64_t steps_run = 0;   // decoding steps the loop ran: steps, plus those after the last row
                           // ended that the loop on the device ran before its next check
  double prefill_seconds = 0, decode_seconds = 0;
};

// What a next token is drawn from, for next-token logits [B, V] float32: logp =
// log_softmax(logits / temperature) (temperature 1 when greedy), the distribution log-probs
// are reported under; and when sampling (temperature > 0), probs = softmax of logits /
// temperature with all but the top_k largest and the top_p nucleus set to -inf first
// (undefined when greedy). Both decode loops of generate() draw from these.
struct TokenDistribution {
  torch::Tensor logp;   // [B, V]
  torch::Tensor probs;  // [B, V], or undefined when greedy
};
TokenDistribution token_distribution(const torch::Tensor& logits, double temperature, int64_t top_k, double top_p);

Generation generate(const Transformer& net, const std::vector<std::vector<int32_t>>& prompts,
                    const SamplingConfig& sampling, const GenerateOptions& options);

}  // namespace rlhf
