// The PPO arithmetic of RL tuning, on [B, T] response tensors (row b = one completion, column
// t = its t-th token; `mask` is 1 on real tokens, 0 on padding after the completion's end).
// Pure functions, no model: the trainer (policy_trainer.h) feeds them.
//
// Conventions follow "The N+ Implementation Details of RLHF with PPO" (Huang et al. 2024) and
// TRL's PPO trainer: per-token KL k1 = logp - logp_ref; reward = -kl_coeff · k1 with the score
// added at the last real token; GAE over the response; advantages whitened over real tokens;
// masked means divide by the number of real tokens.
#pragma once
#include <torch/torch.h>

#include <string>

namespace rlhf::ppo {

// mean of x over mask (float mask, 1 = real).
torch::Tensor masked_mean(const torch::Tensor& x, const torch::Tensor& mask);
// Unbiased variance of x over mask (n / (n - 1) correction, as TRL).
torch::Tensor masked_var(const torch::Tensor& x, const torch::Tensor& mask);
// (x - mean) / sqrt(var + 1e-8) over mask; with shift_mean false the mean is added back.
// Padding entries are set to 0.
torch::Tensor masked_whiten(const torch::Tensor& x, const torch::Tensor& mask, bool shift_mean = true);

// The "EOS trick" for completions that did not stop on EOS within the length:
//   Replace   the score becomes `penalty` (the N+ implementation details);
//   Subtract  the score minus |penalty| (TRL's missing_eos_penalty).
// Completions that stopped keep their score. scores [B] float, stopped [B] bool.
enum class EosPenaltyMode { Replace, Subtract };
// "replace" or "subtract"; anything else throws rlhf::Error naming `field`.
EosPenaltyMode parse_eos_penalty_mode(const std::string& name, const std::string& field = "eos_penalty_mode");
const char* eos_penalty_mode_name(EosPenaltyMode mode);
torch::Tensor apply_eos_penalty(const torch::Tensor& scores, const torch::Tensor& stopped, double penalty,
                                EosPenaltyMode mode = EosPenaltyMode::Replace);

// Per-token KL estimate k1 = logp - ref_logp, 0 on padding. [B, T]. Unbiased for
// KL(policy || reference) on samples of the policy, but any one token's (and a small batch's
// mean) can be negative.
torch::Tensor kl_per_token(const torch::Tensor& logp, const torch::Tensor& ref_logp, const torch::Tensor& mask);
// Per-token KL estimate k3 = (r - 1) - log r with r = p_ref / p (Schulman, "Approximating KL
// divergence"), 0 on padding. [B, T]. Also unbiased on samples of the policy, and never
// negative: the number a run's headline shows.
torch::Tensor kl_k3_per_token(const torch::Tensor& logp, const torch::Tensor& ref_logp, const torch::Tensor& mask);

// Per-token rewards [B, T]: -kl_coeff · kl, plus scores[b] at the last real token of row b.
torch::Tensor token_rewards(const torch::Tensor& scores, const torch::Tensor& kl, const torch::Tensor& mask,
                            double kl_coeff);

// Generalised advantage estimation over the response. values [B, T] (0 on padding is not
// required: they are masked). Returns {advantages, returns} with returns = advantages + values;
// both 0 on padding. The value after the last real token is 0 (the episode ends there).
std::pair<torch::Tensor, torch::Tensor> gae(const torch::Tensor& rewards, const torch::Tensor& values,
                                            const torch::Tensor& mask, double gamma, double lam);

// Clipped surrogate policy loss. Returns the loss (masked mean of max(-A·r, -A·clip(r))),
// the fraction of tokens where clipping was active, and approx KL = ½ mean (logp - old)².
struct PolicyLoss {
  torch::Tensor loss, clipfrac, approxkl;
};
PolicyLoss policy_loss(const torch::Tensor& logp, const torch::Tensor& old_logp, const torch::Tensor& advantages,
                       const torch::Tensor& mask, double cliprange);

// Clipped value loss: ½ masked mean of max((v - R)², (v_clipped - R)²) with
// v_clipped = old + clamp(v - old, ±cliprange). Returns the loss and the clipped fraction.
struct ValueLoss {
  torch::Tensor loss, clipfrac;
};
ValueLoss value_loss(const torch::Tensor& values, const torch::Tensor& old_values, const torch::Tensor& returns,
                     const torch::Tensor& mask, double cliprange_value);

// Entropy of each softmax(logits) row: logits [..., V] -> [...].
torch::Tensor entropy_from_logits(const torch::Tensor& logits);

// log p(token) under softmax(logits): logits [B, T, V] float, tokens [B, T] int64 -> [B, T].
torch::Tensor token_logprobs(const torch::Tensor& logits, const torch::Tensor& tokens);

// Adaptive KL coefficient (Ziegler et al. 2019): after each batch,
//   coeff *= 1 + clip(kl / target - 1, -0.2, 0.2) · n_steps / horizon.
struct AdaptiveKl {
  double value, target, horizon;
  void update(double current_kl, int64_t n_steps);
};

}  // namespace rlhf::ppo
