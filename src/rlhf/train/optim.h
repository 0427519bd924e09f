// AdamW over named float32 parameters, with its state (moments, step count) exposed by name
// so checkpoints can save and restore it exactly; and the learning-rate schedule the
// trainers use (linear warmup, then linear decay to zero).
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>

namespace rlhf {

struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // decoupled, applied to every parameter
};

class AdamW {
 public:
  AdamW(std::map<std::string, torch::Tensor> params, AdamWConfig config);

  // One update with learning rate lr from the parameters' .grad() (missing grads are skipped).
  void step(double lr);
  void zero_grad();
  // Global L2 norm of the gradients, scaled down in place to max_norm when above it (0 = off).
  // Returns the norm before clipping.
  double clip_grad_norm(double max_norm);

  int64_t steps() const { return steps_; }
  // State as named tensors ("<param>.exp_avg", "<param>.exp_avg_sq") and back.
  std::map<std::string, torch::Tensor> state() const;
  void load_state(const std::map<std::string, torch::Tensor>& state, int64_t steps, const std::string& source);

 private:
  std::map<std::string, torch::Tensor> params_, exp_avg_, exp_avg_sq_;
  AdamWConfig config_;
  int64_t steps_ = 0;
};

// Learning rate at `step` (0-based) of `total`: linear warmup over warmup_steps to peak, then
// linear decay to 0 at `total`.
double warmup_linear_lr(double peak, int64_t step, int64_t warmup_steps, int64_t total);

}  // namespace rlhf
