#include "rlhf/train/grpo.h"

#include <algorithm>
#include <cmath>

#include "rlhf/util/error.h"

namespace rlhf::grpo {

ScaleRewards parse_scale_rewards(const std::string& name, const std::string& field) {
  if (name == "group") return ScaleRewards::Group;
  if (name == "batch") return ScaleRewards::Batch;
  if (name == "none") return ScaleRewards::None;
  fail("{} is \"{}\"; it must be group, batch or none", field, name);
}

LossType parse_loss_type(const std::string& name, const std::string& field) {
  if (name == "grpo") return LossType::Grpo;
  if (name == "dapo") return LossType::Dapo;
  if (name == "dr_grpo") return LossType::DrGrpo;
  fail("{} is \"{}\"; it must be grpo, dapo or dr_grpo", field, name);
}

torch::Tensor std_unbiased(const torch::Tensor& x, int64_t dim) {
  if (dim < 0) return x.numel() > 1 ? x.std(/*unbiased=*/true) : torch::full({}, NAN, x.options());
  return x.size(dim) > 1 ? x.std(dim, /*unbiased=*/true) : torch::full_like(x.select(dim, 0), NAN);
}

namespace {
torch::Tensor grouped(const torch::Tensor& rewards, int64_t group) {
  if (rewards.dim() != 1 || group < 1 || rewards.size(0) % group != 0)
    fail("{} rewards do not form groups of {}", rewards.numel(), group);
  return rewards.view({-1, group});
}
}  // namespace

Advantages group_advantages(const torch::Tensor& rewards, int64_t group, ScaleRewards scale) {
  const auto g = grouped(rewards, group);
  const auto mean = g.mean(1).repeat_interleave(group);
  torch::Tensor stdev;
  if (scale == ScaleRewards::Batch) {
    stdev = rewards.numel() > 1 ? std_unbiased(rewards).expand_as(rewards) : torch::zeros_like(rewards);
  } else {  // group (none uses it for the zero-std count only)
    stdev = group > 1 ? std_unbiased(g, 1).repeat_interleave(group) : torch::zeros_like(rewards);
  }
  Advantages out;
  out.advantages = rewards - mean;
  if (scale != ScaleRewards::None) out.advantages = out.advantages / (stdev + 1e-4);
  out.advantages = torch::nan_to_num(out.advantages, 0.0);
  out.std_zero = torch::isclose(stdev, torch::zeros_like(stdev));
  return out;
}

torch::Tensor grpo_token_loss(const torch::Tensor& logp, const torch::Tensor& old_logp, const torch::Tensor& ref_logp,
                              const torch::Tensor& advantages, const torch::Tensor& mask, double eps_low, double eps_high,
                              double beta, torch::Tensor* clipped) {
  const auto a = advantages.unsqueeze(1);  // [N, 1]
  const auto ratio = torch::exp(logp - old_logp);
  const auto clamped = torch::clamp(ratio, 1.0 - eps_low, 1.0 + eps_high);
  auto loss = -torch::min(ratio * a, clamped * a);
  if (beta != 0 && ref_logp.defined()) {
    const auto d = ref_logp - logp;
    loss = loss + beta * (torch::exp(d) - d - 1);
  }
  if (clipped) {
    torch::NoGradGuard no_grad;
    *clipped = ((ratio < 1.0 - eps_low) & (a < 0)) | ((ratio > 1.0 + eps_high) & (a > 0));
  }
  return loss * mask;
}

Loss grpo_loss(const torch::Tensor& logp, const torch::Tensor& old_logp, const torch::Tensor& ref_logp,
               const torch::Tensor& advantages, const torch::Tensor& mask, double eps_low, double eps_high, double beta,
               LossType type, const LossScale& scale) {
  torch::Tensor clipped;
  const auto token = grpo_token_loss(logp, old_logp, ref_logp, advantages, mask, eps_low, eps_high, beta, &clipped);
  const double n = scale.sequences > 0 ? scale.sequences : static_cast<double>(logp.size(0));
  Loss out;
  switch (type) {
    case LossType::Grpo:
      out.loss = (token.sum(1) / mask.sum(1).clamp_min(1.0)).sum() / n;
      break;
    case LossType::Dapo: {
      const double tokens = scale.tokens > 0 ? scale.tokens : std::max(1.0, mask.sum().item<double>());
      out.loss = token.sum() / tokens;
      break;
    }
    case LossType::DrGrpo: {
      const int64_t length = scale.max_length > 0 ? scale.max_length : logp.size(1);
      out.loss = token.sum() / (n * static_cast<double>(length));
      break;
    }
  }
  torch::NoGradGuard no_grad;
  const auto count = mask.sum().clamp_min(1.0);
  out.clipfrac = (clipped.to(mask.dtype()) * mask).sum() / count;
  const auto log_ratio = (logp - old_logp) * mask;
  out.approxkl = 0.5 * (log_ratio * log_ratio).sum() / count;
  if (beta != 0 && ref_logp.defined()) {
    const auto d = ref_logp - logp;
    out.kl_k3 = ((torch::exp(d) - d - 1) * mask).sum() / count;
  }
  return out;
}

torch::Tensor rloo_rewards(const torch::Tensor& scores, const torch::Tensor& old_logp, const torch::Tensor& ref_logp,
                           const torch::Tensor& mask, double beta) {
  if (beta == 0 || !ref_logp.defined()) return scores;
  return scores - beta * ((old_logp - ref_logp) * mask).sum(1);
}

torch::Tensor rloo_advantages(const torch::Tensor& rewards, int64_t group) {
  if (group < 2) fail("the leave-one-out baseline needs groups of at least 2 (is {})", group);
  const auto g = grouped(rewards, group);
  const auto baseline = (g.sum(1, /*keepdim=*/true) - g) / static_cast<double>(group - 1);
  return (g - baseline).reshape({-1});
}

Loss rloo_loss(const torch::Tensor& logp, const torch::Tensor& old_logp, const torch::Tensor& advantages,
               const torch::Tensor& mask, double eps_low, double eps_high, double sequences) {
  const auto log_ratio = ((logp - old_logp) * mask).sum(1);  // [N]
  const auto ratio = torch::exp(log_ratio);
  const auto clamped = torch::clamp(ratio, 1.0 - eps_low, 1.0 + eps_high);
  const auto per_sequence = -torch::min(ratio * advantages, clamped * advantages);
  const double n = sequences > 0 ? sequences : static_cast<double>(logp.size(0));
  Loss out;
  out.loss = per_sequence.sum() / n;
  torch::NoGradGuard no_grad;
  const auto clipped = ((ratio < 1.0 - eps_low) & (advantages < 0)) | ((ratio > 1.0 + eps_high) & (advantages > 0));
  out.clipfrac = clipped.to(mask.dtype()).mean();
  const auto token_ratio = (logp - old_logp) * mask;
  out.approxkl = 0.5 * (token_ratio * token_ratio).sum() / mask.sum().clamp_min(1.0);
  return out;
}

}  // namespace rlhf::grpo
