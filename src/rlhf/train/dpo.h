// The arithmetic of direct preference optimisation: pure functions of per-pair summed
// log-probs, the place to read "the DPO loss". With π the policy's and ref the reference's
// summed log-prob of a completion,
//   chosen log-ratio   ρ_c = π_c − ref_c        rejected log-ratio   ρ_r = π_r − ref_r
//   logits             z = β·(ρ_c − ρ_r)
//   sigmoid (DPO)      −(1−ε)·log σ(z) − ε·log σ(−z)      ε = label smoothing (conservative DPO;
//                                                          ε = 0 is TRL 1.16's "sigmoid")
//   ipo                (ρ_c/n_c − ρ_r/n_r − 1/(2β))²      n = the completion's token count: TRL
//                                                          1.16's IPO, length-normalised
//   hinge              max(0, 1 − z)                      (SLiC)
// and the implicit rewards β·ρ_c and β·ρ_r behind TRL's metrics rewards/chosen, rewards/rejected,
// rewards/margins (their difference) and rewards/accuracies (chosen above rejected).
// tests/parity/dpo_expected.py computes the same in NumPy (tests/data/dpo_expected.json).
#pragma once
#include <torch/torch.h>

#include <string>

namespace rlhf::dpo {

enum class LossType { Sigmoid, Ipo, Hinge };
// "sigmoid", "ipo", "hinge"; anything else throws rlhf::Error naming `field`.
LossType parse_loss_type(const std::string& name, const std::string& field = "loss_type");
const char* loss_type_name(LossType type);

// Summed log-probs of each pair's completions, [B] each (float32 or float64), and the
// completions' token counts (used by ipo).
struct PairLogps {
  torch::Tensor chosen, rejected;            // the policy's (with gradients when training)
  torch::Tensor ref_chosen, ref_rejected;    // the reference's (constants)
  torch::Tensor chosen_tokens, rejected_tokens;
};

// The loss of each pair [B]; its mean over a batch is the training loss.
torch::Tensor pair_losses(const PairLogps& p, LossType type, double beta, double label_smoothing = 0.0);

// β·(π − ref) without gradient: the implicit reward of each completion [B].
torch::Tensor implicit_rewards(const torch::Tensor& logps, const torch::Tensor& ref_logps, double beta);

// Per-token log-probs summed per completion: logits [N, V] (float32) of the positions that
// predict `targets` [N], token k belonging to completion `segment[k]` in 0..segments-1.
// Returns [segments] float32 (log-softmax in float32).
torch::Tensor segment_logps(const torch::Tensor& logits, const torch::Tensor& targets, const torch::Tensor& segment,
                            int64_t segments);

}  // namespace rlhf::dpo
