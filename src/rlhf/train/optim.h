// AdamW over named float32 parameters, with its state (moments, step count) exposed by name
// so checkpoints can save and restore it exactly; the guard that skips optimizer steps whose
// gradients are not finite (and stops a run that keeps producing them); and the
// learning-rate schedule the trainers use (linear warmup, then linear decay to zero).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>

namespace rlhf {

struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;           // added to sqrt(v_hat); the trainers' adam_epsilon
  double weight_decay = 0.0;  // decoupled, applied to every parameter
};

class AdamW {
 public:
  AdamW(std::map<std::string, torch::Tensor> params, AdamWConfig config);

  // One update with learning rate lr from the parameters' .grad() (missing grads are skipped).
  void step(double lr);
  // step(lr) when grad_norm is finite and true; otherwise nothing changes (parameters,
  // moments, step count), the skip is counted and false is returned.
  bool step_if_finite(double lr, double grad_norm);
  void zero_grad();
  // Global L2 norm of the gradients, scaled down in place to max_norm when above it (0 = off).
  // Returns the norm before clipping; a non-finite norm is returned as is, gradients untouched.
  double clip_grad_norm(double max_norm);

  int64_t steps() const { return steps_; }
  const std::map<std::string, torch::Tensor>& params() const { return params_; }
  int64_t skipped() const { return skipped_; }  // steps step_if_finite left out
  const AdamWConfig& config() const { return config_; }
  // State as named tensors ("<param>.exp_avg", "<param>.exp_avg_sq") and back.
  std::map<std::string, torch::Tensor> state() const;
  void load_state(const std::map<std::string, torch::Tensor>& state, int64_t steps, const std::string& source);

 private:
  std::map<std::string, torch::Tensor> params_, exp_avg_, exp_avg_sq_;
  AdamWConfig config_;
  int64_t steps_ = 0;
  int64_t skipped_ = 0;
};

// What a trainer does with a non-finite gradient norm (NaN or infinity, from an overflow or a
// bad batch): the optimizer step is skipped, counted and warned about; after
// `max_consecutive` skips in a row the run stops with an error that says so. Call step()
// once per optimizer step, in place of AdamW::step.
class NonFiniteGradGuard {
 public:
  // max_consecutive >= 1 (the trainers' max_skipped_steps); `what` names the run in messages
  // ("policy", "reward model").
  NonFiniteGradGuard(int64_t max_consecutive, std::string what);

  // opt.step(lr) when grad_norm is finite (returns true). Otherwise leaves opt untouched,
  // warns on stderr naming `step` (the trainer's step number) and returns false; throws
  // rlhf::Error when this makes max_consecutive skips in a row.
  bool step(AdamW& opt, double lr, double grad_norm, int64_t step);

  int64_t skipped() const { return skipped_; }          // in this run (a metric)
  int64_t consecutive() const { return consecutive_; }  // skips since the last real step
  // A resumed run continues the count of its checkpoint, so it stops where the whole run would.
  void restore_consecutive(int64_t n) { consecutive_ = n; }

 private:
  int64_t max_consecutive_;
  std::string what_;
  int64_t skipped_ = 0, consecutive_ = 0;
};

// Learning rate at `step` (0-based) of `total`: linear warmup over warmup_steps to peak, then
// linear decay to 0 at `total`.
double warmup_linear_lr(double peak, int64_t step, int64_t warmup_steps, int64_t total);

}  // namespace rlhf
