#include "rlhf/train/ppo.h"

#include <algorithm>
#include <cmath>

#include "rlhf/util/error.h"

namespace rlhf::ppo {

torch::Tensor masked_mean(const torch::Tensor& x, const torch::Tensor& mask) {
  return (x * mask).sum() / mask.sum().clamp_min(1);
}

torch::Tensor masked_var(const torch::Tensor& x, const torch::Tensor& mask) {
  auto mean = masked_mean(x, mask);
  auto centred = x - mean;
  auto var = masked_mean(centred * centred, mask);
  auto n = mask.sum();
  return var * n / (n - 1).clamp_min(1);
}

torch::Tensor masked_whiten(const torch::Tensor& x, const torch::Tensor& mask, bool shift_mean) {
  auto mean = masked_mean(x, mask);
  auto var = masked_var(x, mask);
  auto out = (x - mean) * torch::rsqrt(var + 1e-8);
  if (!shift_mean) out = out + mean;
  return out * mask;
}

EosPenaltyMode parse_eos_penalty_mode(const std::string& name, const std::string& field) {
  if (name == "replace") return EosPenaltyMode::Replace;
  if (name == "subtract") return EosPenaltyMode::Subtract;
  fail("{} is \"{}\"; it must be replace (the score becomes the penalty) or subtract (score - |penalty|)", field,
       name);
}

const char* eos_penalty_mode_name(EosPenaltyMode mode) {
  return mode == EosPenaltyMode::Replace ? "replace" : "subtract";
}

torch::Tensor apply_eos_penalty(const torch::Tensor& scores, const torch::Tensor& stopped, double penalty,
                                EosPenaltyMode mode) {
  auto penalized = mode == EosPenaltyMode::Replace ? torch::full_like(scores, penalty) : scores - std::abs(penalty);
  return torch::where(stopped, scores, penalized);
}

torch::Tensor kl_per_token(const torch::Tensor& logp, const torch::Tensor& ref_logp, const torch::Tensor& mask) {
  return (logp - ref_logp) * mask;
}

torch::Tensor kl_k3_per_token(const torch::Tensor& logp, const torch::Tensor& ref_logp, const torch::Tensor& mask) {
  auto log_r = (ref_logp - logp).to(torch::kFloat64);  // in float64: expm1 of tiny differences stays exact
  return ((torch::expm1(log_r) - log_r) * mask).to(logp.scalar_type());
}

torch::Tensor token_rewards(const torch::Tensor& scores, const torch::Tensor& kl, const torch::Tensor& mask,
                            double kl_coeff) {
  auto rewards = -kl_coeff * kl * mask;
  // The last real token of each row: (number of real tokens) - 1; rows without any get none.
  auto lengths = mask.sum(1).to(torch::kInt64);                     // [B]
  auto last = (lengths - 1).clamp_min(0).unsqueeze(1);              // [B, 1]
  auto add = (scores * (lengths > 0).to(scores.dtype())).unsqueeze(1);  // [B, 1]
  return rewards.scatter_add(1, last, add.to(rewards.dtype()));
}

std::pair<torch::Tensor, torch::Tensor> gae(const torch::Tensor& rewards, const torch::Tensor& values,
                                            const torch::Tensor& mask, double gamma, double lam) {
  const int64_t T = rewards.size(1);
  auto r = rewards * mask, v = values * mask;
  auto advantages = torch::zeros_like(r);
  auto last = torch::zeros({r.size(0)}, r.options());
  for (int64_t t = T - 1; t >= 0; --t) {
    auto next_value = t + 1 < T ? v.select(1, t + 1) : torch::zeros_like(last);
    auto delta = r.select(1, t) + gamma * next_value - v.select(1, t);
    last = delta + gamma * lam * last;
    advantages.select(1, t).copy_(last);
  }
  advantages = advantages * mask;
  return {advantages, (advantages + v) * mask};
}

PolicyLoss policy_loss(const torch::Tensor& logp, const torch::Tensor& old_logp, const torch::Tensor& advantages,
                       const torch::Tensor& mask, double cliprange) {
  auto log_ratio = logp - old_logp;
  auto ratio = torch::exp(log_ratio);
  auto unclipped = -advantages * ratio;
  auto clipped = -advantages * torch::clamp(ratio, 1.0 - cliprange, 1.0 + cliprange);
  PolicyLoss out;
  out.loss = masked_mean(torch::max(unclipped, clipped), mask);
  torch::NoGradGuard no_grad;
  out.clipfrac = masked_mean((clipped > unclipped).to(logp.dtype()), mask);
  out.approxkl = 0.5 * masked_mean(log_ratio * log_ratio, mask);
  return out;
}

ValueLoss value_loss(const torch::Tensor& values, const torch::Tensor& old_values, const torch::Tensor& returns,
                     const torch::Tensor& mask, double cliprange_value) {
  auto clipped_values = old_values + torch::clamp(values - old_values, -cliprange_value, cliprange_value);
  auto loss_unclipped = (values - returns).pow(2);
  auto loss_clipped = (clipped_values - returns).pow(2);
  ValueLoss out;
  out.loss = 0.5 * masked_mean(torch::max(loss_unclipped, loss_clipped), mask);
  torch::NoGradGuard no_grad;
  out.clipfrac = masked_mean((loss_clipped > loss_unclipped).to(values.dtype()), mask);
  return out;
}

torch::Tensor entropy_from_logits(const torch::Tensor& logits) {
  auto logp = torch::log_softmax(logits, -1);
  return -(logp.exp() * logp).sum(-1);
}

torch::Tensor token_logprobs(const torch::Tensor& logits, const torch::Tensor& tokens) {
  auto lse = torch::logsumexp(logits, -1);                                   // [B, T]
  auto picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1);         // [B, T]
  return picked - lse;
}

void AdaptiveKl::update(double current_kl, int64_t n_steps) {
  const double error = std::clamp(current_kl / target - 1.0, -0.2, 0.2);
  value *= 1.0 + error * static_cast<double>(n_steps) / horizon;
}

}  // namespace rlhf::ppo
