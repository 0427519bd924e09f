// The rollouts of one step (PPO, GRPO or RLOO) and the bookkeeping around them: a Sample is one prompt and the
// policy's completion of it with its scores; Rollouts holds a step's samples and the [B, T]
// tensors computed from them (row b = sample b, column t = its t-th response token, T the
// longest response). The helpers cut samples into micro-batches and move rows between the
// step's tensors and a micro-batch's. The trainer (policy_trainer.h) fills them.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "rlhf/train/policy_model.h"

namespace rlhf {

struct Sample {
  const std::vector<int32_t>* prompt = nullptr;  // policy prompt ids
  size_t row = 0;                                // index into the prompt rows
  std::vector<int32_t> response;                 // generated ids, the stop id included
  bool stopped = false;                          // ended on a stop id
  float raw_score = 0;                           // the rewards' weighted sum, the reward model's score raw
  float score = 0;                               // the same, the reward model's standardised, after the
                                                 // missing-EOS penalty
};

struct Rollouts {
  std::vector<Sample> samples;
  // [B, T] float32: log-probs of the policy and the reference (zero when not computed), the
  // value model's values, 1 on real response tokens, the policy's per-token entropy.
  torch::Tensor old_logp, ref_logp, old_values, mask, entropy;
  torch::Tensor raw_scores, scores;  // [B]
  torch::Tensor rule_scores;         // [B, R] float64: each rule's reward (R = 0 without rules)
  torch::Tensor stopped;             // [B] bool
  // [B, T]: KL per token (k1), the whitened advantages and the returns (ppo). grpo and rloo:
  // advantages [B], one per completion, and returns undefined.
  torch::Tensor kl, advantages, returns;
  torch::Tensor std_zero;            // [B] bool: the reward's std over the completion's group is 0

  double mean_kl = 0;                // KL (k1) summed over the response, mean over the batch
  double mean_kl_k3 = 0;             // the same with the k3 estimate (never negative)
  double kl_coeff = 0;               // the coefficient the rewards used
  bool kl_measured = false;          // the reference was computed (else kl is zero)

  int64_t size() const { return static_cast<int64_t>(samples.size()); }
  int64_t width() const;             // T
};

// The response of a sample without its stop id.
std::vector<int32_t> response_body(const Sample& s);

// Micro-batches of sample indices with similar lengths (less padding); the masks make every
// sample independent of what else is in its micro-batch.
std::vector<std::vector<size_t>> micro_batches(std::vector<size_t> idx, const std::vector<Sample>& samples,
                                               int64_t size);
// Samples `idx` as one rollout batch.
RolloutBatch pack_samples(const std::vector<size_t>& idx, const std::vector<Sample>& samples, int32_t pad,
                          torch::Device device);
// Rows `idx` of a [B, T] tensor, cut to the first `width` columns.
torch::Tensor gather_rows(const torch::Tensor& t, const std::vector<size_t>& idx, int64_t width);
// Elements `idx` of a [B] tensor.
torch::Tensor gather_items(const torch::Tensor& t, const std::vector<size_t>& idx);
// Writes src (rows in the order of idx) into rows `idx` of dst, first src.size(1) columns.
void scatter_rows(torch::Tensor& dst, const std::vector<size_t>& idx, const torch::Tensor& src);

// A seed for one use (step, purpose, index) of the run's seed.
uint64_t mix_seed(uint64_t seed, uint64_t a, uint64_t b = 0, uint64_t c = 0);

}  // namespace rlhf
