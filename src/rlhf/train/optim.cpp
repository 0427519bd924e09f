#include "rlhf/train/optim.h"

#include <cmath>
#include <cstdio>

#include "rlhf/train/tensor_file.h"
#include "rlhf/util/error.h"

namespace rlhf {

AdamW::AdamW(std::map<std::string, torch::Tensor> params, AdamWConfig config)
    : params_(std::move(params)), config_(config) {
  for (const auto& [name, p] : params_) {
    if (p.scalar_type() != torch::kFloat32) fail("AdamW: parameter '{}' is not float32", name);
    exp_avg_[name] = torch::zeros_like(p);
    exp_avg_sq_[name] = torch::zeros_like(p);
  }
}

void AdamW::zero_grad() {
  for (auto& [name, p] : params_)
    if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
}

double AdamW::clip_grad_norm(double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> squares;  // one sum per tensor, read back once (one device sync)
  for (auto& [name, p] : params_)
    if (p.grad().defined()) squares.push_back(p.grad().to(torch::kFloat64).pow(2).sum());
  const double norm = squares.empty() ? 0.0 : std::sqrt(torch::stack(squares).sum().item<double>());
  if (max_norm > 0 && std::isfinite(norm) && norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);
    for (auto& [name, p] : params_)
      if (p.grad().defined()) p.mutable_grad().mul_(scale);
  }
  return norm;
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++steps_;
  const double bc1 = 1.0 - std::pow(config_.beta1, static_cast<double>(steps_));
  const double bc2 = 1.0 - std::pow(config_.beta2, static_cast<double>(steps_));
  for (auto& [name, p] : params_) {
    const auto& g = p.grad();
    if (!g.defined()) continue;
    auto& m = exp_avg_.at(name);
    auto& v = exp_avg_sq_.at(name);
    if (config_.weight_decay != 0) p.mul_(1.0 - lr * config_.weight_decay);
    m.mul_(config_.beta1).add_(g, 1.0 - config_.beta1);
    v.mul_(config_.beta2).addcmul_(g, g, 1.0 - config_.beta2);
    // p -= lr * m_hat / (sqrt(v_hat) + eps), as torch.optim.AdamW computes it.
    auto denom = (v.sqrt() / std::sqrt(bc2)).add_(config_.eps);
    p.addcdiv_(m, denom, -lr / bc1);
  }
}

bool AdamW::step_if_finite(double lr, double grad_norm) {
  if (!std::isfinite(grad_norm)) {
    ++skipped_;
    return false;
  }
  step(lr);
  return true;
}

std::map<std::string, torch::Tensor> AdamW::state() const {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, m] : exp_avg_) out[name + ".exp_avg"] = m;
  for (const auto& [name, v] : exp_avg_sq_) out[name + ".exp_avg_sq"] = v;
  return out;
}

void AdamW::load_state(const std::map<std::string, torch::Tensor>& state, int64_t steps, const std::string& source) {
  for (auto& [name, m] : exp_avg_) {
    for (auto* moment : {&m, &exp_avg_sq_.at(name)}) {
      const std::string key = name + (moment == &m ? ".exp_avg" : ".exp_avg_sq");
      auto it = state.find(key);
      if (it == state.end()) fail("{}: optimizer state lacks '{}'", source, key);
      copy_checked(*moment, it->second.to(moment->device()), source + ": tensor '" + key + "'");
    }
  }
  if (state.size() != 2 * exp_avg_.size())
    fail("{}: optimizer state has {} tensors, expected {}", source, state.size(), 2 * exp_avg_.size());
  steps_ = steps;
}

NonFiniteGradGuard::NonFiniteGradGuard(int64_t max_consecutive, std::string what)
    : max_consecutive_(max_consecutive), what_(std::move(what)) {
  if (max_consecutive_ < 1) fail("max_skipped_steps must be at least 1 (got {})", max_consecutive_);
}

bool NonFiniteGradGuard::step(AdamW& opt, double lr, double grad_norm, int64_t step) {
  if (opt.step_if_finite(lr, grad_norm)) {
    consecutive_ = 0;
    return true;
  }
  ++skipped_;
  ++consecutive_;
  if (consecutive_ >= max_consecutive_)
    fail("{} training stopped at step {}: {} consecutive optimizer steps had a non-finite gradient norm (last: {}); "
         "lower the learning rate, use fp32, or check the data",
         what_, step, consecutive_, grad_norm);
  std::fprintf(stderr,
               "[rlhf] warning: %s step %lld: the gradient norm is %s; the optimizer step is skipped "
               "(%lld in a row, %lld in all; the run stops at %lld in a row)\n",
               what_.c_str(), static_cast<long long>(step), fmt::format("{}", grad_norm).c_str(),
               static_cast<long long>(consecutive_), static_cast<long long>(skipped_),
               static_cast<long long>(max_consecutive_));
  return false;
}

double warmup_linear_lr(double peak, int64_t step, int64_t warmup_steps, int64_t total) {
  if (warmup_steps > 0 && step < warmup_steps) return peak * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  const int64_t decay = std::max<int64_t>(1, total - warmup_steps);
  const double frac = static_cast<double>(total - step) / static_cast<double>(decay);
  return peak * std::clamp(frac, 0.0, 1.0);
}

}  // namespace rlhf
