// The critic-free arithmetic of RL tuning: GRPO's group-relative advantages and clipped loss,
// and RLOO's leave-one-out baseline and sequence-level clipped loss. Pure functions on the
// step's tensors, no model: the trainer (policy_trainer.h) feeds them. Rollouts come in
// groups: the G completions of one prompt are G consecutive rows, so a batch of B prompts
// is N = B·G rows; per-token tensors are [N, T] with `mask` 1 on real tokens.
//
// Semantics follow TRL 1.16 (GRPOTrainer and RLOOTrainer, their defaults):
//   GRPO advantage  A = (r - mean of its group) / (std + 1e-4); std is the group's (scale
//                   group), the whole batch's (batch), or none (no division); std is the
//                   unbiased estimate (n - 1), as TRL's nanstd.
//   GRPO loss       per token -min(ratio·A, clip(ratio, 1 - eps, 1 + eps_high)·A) + beta·k3,
//                   k3 = exp(ref - logp) - (ref - logp) - 1, ratio = exp(logp - old_logp);
//                   averaged per loss type (LossType).
//   RLOO reward     r - beta · Σ_t (old_logp - ref_logp) (k1 summed over the completion);
//   RLOO advantage  reward - mean of the other G - 1 rewards of its group (not normalised);
//   RLOO loss       -min(ratio·A, clip(ratio, 1 - eps, 1 + eps_high)·A) per sequence with
//                   ratio = exp(Σ_t (logp - old_logp)), mean over sequences.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace rlhf::grpo {

enum class ScaleRewards { Group, Batch, None };
enum class LossType {
  Grpo,    // each sequence's mean over its tokens, then the mean over sequences
  Dapo,    // the sum over every real token of the batch / their count
  DrGrpo,  // the sum over every real token / (sequences × the length limit)
};
// "group"/"batch"/"none", "grpo"/"dapo"/"dr_grpo"; anything else throws rlhf::Error naming `field`.
ScaleRewards parse_scale_rewards(const std::string& name, const std::string& field = "scale_rewards");
LossType parse_loss_type(const std::string& name, const std::string& field = "loss_type");

// Unbiased standard deviation (n - 1) over `dim` (all elements when dim < 0); NaN for one element.
torch::Tensor std_unbiased(const torch::Tensor& x, int64_t dim = -1);

// GRPO advantages of rewards [N] in groups of `group` consecutive rows. std_zero [N] bool:
// the std used (the group's, or the batch's with Batch) is 0, where the advantage says
// nothing (TRL's frac_reward_zero_std).
struct Advantages {
  torch::Tensor advantages, std_zero;
};
Advantages group_advantages(const torch::Tensor& rewards, int64_t group, ScaleRewards scale);

// The GRPO per-token loss [N, T] (0 on padding); ref_logp undefined or beta 0: no KL term.
// advantages [N]. clipped [N, T] bool (optional): where the clip is active (the low clip
// with A < 0, the high clip with A > 0).
torch::Tensor grpo_token_loss(const torch::Tensor& logp, const torch::Tensor& old_logp, const torch::Tensor& ref_logp,
                              const torch::Tensor& advantages, const torch::Tensor& mask, double eps_low, double eps_high,
                              double beta, torch::Tensor* clipped = nullptr);

// What a loss is averaged over: the batch it is a part of. A micro-batch's loss is its share
// of the batch's, so the gradients of a batch's micro-batches add up to the batch's.
// Zeros: the micro-batch's own (its sequences, its real tokens).
struct LossScale {
  double sequences = 0;   // N of the whole batch
  double tokens = 0;      // real tokens of the whole batch
  int64_t max_length = 0; // the completion length limit (dr_grpo)
};

struct Loss {
  torch::Tensor loss;      // scalar, with gradients through logp
  torch::Tensor clipfrac;  // share of the micro-batch's tokens (GRPO) or sequences (RLOO) clipped
  torch::Tensor approxkl;  // ½ masked mean (logp - old_logp)²
  torch::Tensor kl_k3;     // masked mean of k3 per token (undefined without the KL term)
};
// The GRPO loss of a micro-batch as its share of the batch's (`scale`).
Loss grpo_loss(const torch::Tensor& logp, const torch::Tensor& old_logp, const torch::Tensor& ref_logp,
               const torch::Tensor& advantages, const torch::Tensor& mask, double eps_low, double eps_high, double beta,
               LossType type, const LossScale& scale);

// RLOO: rewards with the KL penalty (scores [N], logp and ref [N, T]); the leave-one-out
// advantages of rewards [N] in groups of `group` (at least 2).
torch::Tensor rloo_rewards(const torch::Tensor& scores, const torch::Tensor& old_logp, const torch::Tensor& ref_logp,
                           const torch::Tensor& mask, double beta);
torch::Tensor rloo_advantages(const torch::Tensor& rewards, int64_t group);
// The RLOO loss of a micro-batch as its share of the batch's mean over `sequences` (0 = its own).
Loss rloo_loss(const torch::Tensor& logp, const torch::Tensor& old_logp, const torch::Tensor& advantages,
               const torch::Tensor& mask, double eps_low, double eps_high, double sequences = 0);

}  // namespace rlhf::grpo
