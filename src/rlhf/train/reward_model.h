// RewardModel: the base transformer + its own LoRA adapter ("reward") + a scalar head on the
// final-norm hidden state of the last real token of the completion (its EOS). One copy of the
// base serves every adapter, so the policy can share it later.
//
// Pairs are packed: one row holds prompt ++ chosen ++ rejected, with positions restarting
// after the prompt and an attention mask that hides the chosen tokens from the rejected ones.
// Each completion then sees exactly what it would see alone, and the prompt is computed once
// for both (the pair costs P + C + R tokens instead of 2P + C + R).
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "rlhf/data/encode.h"
#include "rlhf/model/transformer.h"

namespace rlhf {

// A micro-batch of packed preference pairs. Rows are as wide as the longest pair; shorter
// pairs share rows (first-fit, longest first), each pair seeing only itself, so a
// micro-batch carries little padding.
struct PairBatch {
  torch::Tensor tokens;       // [R, L] int64: per pair prompt ++ chosen ++ rejected, pairs side by side
  torch::Tensor positions;    // [R, L] int64: 0.. over each prompt, restarting at P for each completion
  torch::Tensor attn_mask;    // [R, 1, L, L] bool
  torch::Tensor chosen_end;   // [B] int64: flat index (row·L + column) of pair b's chosen EOS
  torch::Tensor rejected_end; // [B] int64: flat index of pair b's rejected EOS
  // Every completion token, for per-token log-probs (pair by pair, the chosen's then the
  // rejected's): the flat index of the column whose output predicts it (a completion's first
  // token is predicted from the prompt's last column, so the rejected's too: not from the
  // chosen's last token), the token, and 2·b for pair b's chosen, 2·b + 1 for its rejected.
  // A pair with an empty prompt has no column predicting its completions' first tokens:
  // those are left out.
  torch::Tensor completion_from;   // [N] int64
  torch::Tensor completion_token;  // [N] int64
  torch::Tensor completion_of;     // [N] int64
  int64_t real_tokens = 0;    // tokens that are not padding
};
PairBatch pack_pairs(std::span<const data::PreferencePair* const> pairs, int32_t pad_id, torch::Device device);

// A batch of single sequences (prompt ++ completion), padded on either side.
struct SequenceBatch {
  torch::Tensor tokens;     // [B, L] int64
  torch::Tensor positions;  // [B, L] int64
  torch::Tensor attn_mask;  // [B, 1, L, L] bool
  torch::Tensor last;       // [B] int64: index of each sequence's last real token
};
SequenceBatch pack_sequences(const std::vector<std::vector<int32_t>>& seqs, int32_t pad_id, bool left_pad,
                             torch::Device device);

class RewardModel {
 public:
  static constexpr const char* kAdapterName = "reward";

  // A new reward model: a fresh adapter on `net` (seeded) and a head w ~ N(0, 0.02²), b = 0.
  RewardModel(Transformer& net, const LoraConfig& lora, uint64_t seed);

  // Rewards [B] float32 of the sequences at `last`.
  torch::Tensor score(const SequenceBatch& batch, bool train = false) const;
  // Rewards of the chosen and rejected completions of packed pairs, each [B] float32.
  std::pair<torch::Tensor, torch::Tensor> score_pairs(const PairBatch& batch, bool train = false) const;

  // Trainable tensors by name: the adapter's (peft names) and "score.weight", "score.bias".
  std::map<std::string, torch::Tensor> parameters() const;
  // Adds `delta` to the head's bias (used to centre the rewards after training).
  void shift_bias(double delta);

  // adapter_model.safetensors (peft names), adapter_config.json (peft), reward_head.safetensors.
  void save_weights(const std::string& dir, const std::string& base_reference) const;
  // Reads the files save_weights wrote into this model's tensors (shapes checked).
  void load_weights(const std::string& dir);

  const LoraAdapter& adapter() const { return *adapter_; }
  const Transformer& net() const { return net_; }
  const torch::Tensor& head_weight() const { return weight_; }  // [H] float32
  const torch::Tensor& head_bias() const { return bias_; }      // [1] float32

 private:
  // Final-norm hidden states [B, L, H] with the reward adapter active.
  torch::Tensor hidden(const torch::Tensor& tokens, const torch::Tensor& positions, const torch::Tensor& attn_mask,
                       bool train) const;
  // Rewards at `index` [B] of hidden states [B, L, H].
  torch::Tensor head(const torch::Tensor& hidden, const torch::Tensor& index) const;

  Transformer& net_;
  const LoraAdapter* adapter_;
  torch::Tensor weight_;  // [H] float32
  torch::Tensor bias_;    // [1] float32
};

// The pairwise (Bradley–Terry) loss of each pair [B]:
//   -log σ(r_chosen - r_rejected - margin) + centering · (r_chosen + r_rejected)²
// Its mean over a batch is the training loss (centering 0.01 is TRL's
// center_rewards_coefficient; 0 turns it off).
torch::Tensor reward_pair_losses(const torch::Tensor& chosen, const torch::Tensor& rejected, double margin = 0.0,
                                 double centering = 0.0);

}  // namespace rlhf
