// The four roles of RL tuning on one copy of the base weights:
//   policy     base + "policy" adapter (LoRA, rank 1 by default), trained
//   reference  the same base with no adapter active (no second copy of the weights)
//   value      two layouts (ValueModel):
//              separate  base + "value" adapter + a scalar value head, trained; initialised
//                        from the reward model's adapter and head only when the reward model
//                        sits on the same base weights (otherwise its adapter would be read
//                        against other weights), else fresh (a new adapter, a zero head).
//                        TRL's and the N+ paper's layout: the value has a trunk of its own.
//              shared    a scalar value head (zero at the start) on the policy's own final
//                        hidden states: one forward/backward serves the policy and the value,
//                        so an update costs about half; the value loss also trains the
//                        policy's adapter (weighted by vf_coef), and the value has only the
//                        policy adapter's capacity beyond its head.
//              none      no value model (grpo, rloo: their advantages need none); values are 0
//   reward     base + "reward" adapter + head from `rlhf train-reward`, frozen; none when the
//              rewards are rules only
// The reward model may sit on a different base (then it was loaded as a second model).
//
// A rollout batch lays each sample out as left-padded prompt ++ right-padded response, so every
// response starts at the same column P; response token t is predicted from column P + t - 1.
// Masks and positions come from the real tokens only, so a sample's log-probs and values do
// not depend on what else is in its batch. Log-probs and values run on the transformer's
// framework path, so scoring without gradients and the update with them give the same numbers.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "rlhf/model/transformer.h"
#include "rlhf/train/reward_model.h"

namespace rlhf {

struct RolloutBatch {
  torch::Tensor tokens;     // [B, P + T] int64: prompt (left-padded) ++ response (right-padded)
  torch::Tensor positions;  // [B, P + T] int64
  torch::Tensor attn_mask;  // [B, 1, P + T, P + T] bool
  torch::Tensor response;   // [B, T] int64 (pad after a response's end)
  torch::Tensor mask;       // [B, T] float32: 1 on real response tokens
  int64_t prompt_width = 0; // P
};
RolloutBatch pack_rollouts(const std::vector<const std::vector<int32_t>*>& prompts,
                           const std::vector<const std::vector<int32_t>*>& responses, int32_t pad_id,
                           torch::Device device);

// How the value model starts.
enum class ValueInit {
  kAuto,        // from the reward model when it lives on this same transformer, else fresh
  kFromReward,  // from the reward model: the caller knows both bases hold the same weights
  kFresh,       // a new adapter (seeded) and a zero head
};

// Where the value model lives (see the top of this file).
enum class ValueModel { kSeparate, kShared, kNone };
// "separate" or "shared"; anything else throws rlhf::Error naming `field`.
ValueModel parse_value_model(const std::string& name, const std::string& field = "value_model");

// The policy's log-probs and the values of one rollout batch, each [B, T] float32, and the
// policy's per-token entropy (no gradient; undefined unless asked for).
struct PolicyForward {
  torch::Tensor logp, values, entropy;
};

class PolicyModels {
 public:
  static constexpr const char* kPolicyAdapter = "policy";
  static constexpr const char* kValueAdapter = "value";

  // Adds the policy and value adapters to `net` (the policy's base). `reward` may live on `net`
  // or on another transformer. The value adapter takes the reward adapter's settings; its
  // start follows `value_init`, and one line on stderr says which it was (value_from_reward()).
  // With ValueModel::kShared there is no value adapter: the head reads the policy's trunk.
  PolicyModels(Transformer& net, const RewardModel& reward, const LoraConfig& policy_lora, uint64_t seed,
               ValueInit value_init = ValueInit::kAuto, ValueModel layout = ValueModel::kSeparate);
  // The same, `reward` null when the rewards are rules only: then a separate value adapter
  // takes the policy adapter's settings and starts fresh. With ValueModel::kNone: the policy
  // and the reference only (no value adapter, no value head, nothing saved for a value).
  PolicyModels(Transformer& net, const RewardModel* reward, const LoraConfig& policy_lora, uint64_t seed,
               ValueInit value_init, ValueModel layout);

  // Log-probs [B, T] float32 of the response tokens under softmax(logits / temperature),
  // with the policy adapter (policy = true) or none (the reference). `entropy`, when given,
  // receives the per-token entropy [B, T] of that distribution (no gradient).
  torch::Tensor logprobs(const RolloutBatch& batch, bool policy, double temperature,
                         torch::Tensor* entropy = nullptr) const;
  // Values [B, T] float32 at the positions that predict each response token (0 without a value model).
  torch::Tensor values(const RolloutBatch& batch) const;
  // The policy's log-probs and the values together: one forward of the trunk when the value
  // model is shared, two when separate.
  PolicyForward forward(const RolloutBatch& batch, double temperature, bool entropy = false) const;

  // Trainable tensors by name: "policy/<peft name>", "value/<peft name>", "value_head.weight",
  // "value_head.bias" (the policy's only without a value model).
  std::map<std::string, torch::Tensor> parameters() const;

  const LoraAdapter& policy() const { return *policy_; }
  // Only with a separate value model.
  const LoraAdapter& value_adapter() const;
  ValueModel layout() const { return layout_; }
  const RewardModel& reward() const;  // throws without a reward model
  Transformer& net() const { return net_; }
  bool value_from_reward() const { return value_from_reward_; }

  // The value adapter (separate only: value/ adapter files) and head (value_head.safetensors)
  // into dir and back; nothing without a value model.
  void save_value(const std::string& dir, const std::string& base_reference) const;
  void load_value(const std::string& dir);

 private:
  // Final-norm hidden states at the columns predicting the response: [B, T, H].
  torch::Tensor response_hidden(const RolloutBatch& batch, const LoraAdapter* adapter) const;
  torch::Tensor logprobs_from_hidden(const torch::Tensor& hidden, const RolloutBatch& batch, double temperature,
                                     torch::Tensor* entropy) const;
  torch::Tensor value_from_hidden(const torch::Tensor& hidden) const;

  Transformer& net_;
  const RewardModel* reward_;
  LoraAdapter* policy_;
  LoraAdapter* value_ = nullptr;  // null when shared
  ValueModel layout_ = ValueModel::kSeparate;
  torch::Tensor value_weight_;  // [H] float32
  torch::Tensor value_bias_;    // [1] float32
  bool value_from_reward_ = false;
};

}  // namespace rlhf
