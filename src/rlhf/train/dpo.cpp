#include "rlhf/train/dpo.h"

#include "rlhf/util/error.h"

namespace rlhf::dpo {

LossType parse_loss_type(const std::string& name, const std::string& field) {
  if (name == "sigmoid") return LossType::Sigmoid;
  if (name == "ipo") return LossType::Ipo;
  if (name == "hinge") return LossType::Hinge;
  fail("{}: \"{}\" is not a loss type (sigmoid, ipo, hinge)", field, name);
}

const char* loss_type_name(LossType type) {
  switch (type) {
    case LossType::Sigmoid: return "sigmoid";
    case LossType::Ipo: return "ipo";
    case LossType::Hinge: return "hinge";
  }
  return "?";
}

torch::Tensor pair_losses(const PairLogps& p, LossType type, double beta, double label_smoothing) {
  auto chosen_ratio = p.chosen - p.ref_chosen;
  auto rejected_ratio = p.rejected - p.ref_rejected;
  auto logits = beta * (chosen_ratio - rejected_ratio);
  switch (type) {
    case LossType::Sigmoid:
      return -(1.0 - label_smoothing) * torch::log_sigmoid(logits) - label_smoothing * torch::log_sigmoid(-logits);
    case LossType::Ipo: {
      auto per_token = [](const torch::Tensor& ratio, const torch::Tensor& n) {
        return ratio / n.to(ratio.scalar_type()).clamp_min(1.0);
      };
      auto delta = per_token(chosen_ratio, p.chosen_tokens) - per_token(rejected_ratio, p.rejected_tokens);
      return (delta - 1.0 / (2.0 * beta)).square();
    }
    case LossType::Hinge:
      return torch::relu(1.0 - logits);
  }
  fail("unknown loss type");
}

torch::Tensor implicit_rewards(const torch::Tensor& logps, const torch::Tensor& ref_logps, double beta) {
  return beta * (logps.detach() - ref_logps.detach());
}

torch::Tensor segment_logps(const torch::Tensor& logits, const torch::Tensor& targets, const torch::Tensor& segment,
                            int64_t segments) {
  auto logp = torch::log_softmax(logits.to(torch::kFloat32), -1).gather(1, targets.view({-1, 1})).squeeze(1);  // [N]
  return torch::zeros({segments}, logp.options()).index_add(0, segment, logp);
}

}  // namespace rlhf::dpo
