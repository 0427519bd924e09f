#include "rlhf/train/policy_model.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "rlhf/train/adapter_io.h"
#include "rlhf/train/ppo.h"
#include "rlhf/train/tensor_file.h"
#include "rlhf/util/error.h"

namespace rlhf {

RolloutBatch pack_rollouts(const std::vector<const std::vector<int32_t>*>& prompts,
                           const std::vector<const std::vector<int32_t>*>& responses, int32_t pad_id,
                           torch::Device device) {
  const int64_t B = static_cast<int64_t>(prompts.size());
  if (B == 0 || responses.size() != prompts.size()) fail("pack_rollouts: {} prompts, {} responses", B, responses.size());
  int64_t P = 0, T = 0;
  for (int64_t b = 0; b < B; ++b) {
    if (prompts[b]->empty()) fail("pack_rollouts: sample {} has an empty prompt", b);
    P = std::max<int64_t>(P, prompts[b]->size());
    T = std::max<int64_t>(T, responses[b]->size());
  }
  T = std::max<int64_t>(T, 1);
  const int64_t L = P + T;
  std::vector<int64_t> tokens(B * L, pad_id), response(B * T, pad_id);
  std::vector<uint8_t> real(B * L, 0);
  std::vector<float> mask(B * T, 0.0f);
  for (int64_t b = 0; b < B; ++b) {
    const auto& p = *prompts[b];
    const auto& r = *responses[b];
    const int64_t off = P - static_cast<int64_t>(p.size());
    for (size_t i = 0; i < p.size(); ++i) tokens[b * L + off + i] = p[i], real[b * L + off + i] = 1;
    for (size_t i = 0; i < r.size(); ++i) {
      tokens[b * L + P + i] = r[i], real[b * L + P + i] = 1;
      response[b * T + i] = r[i], mask[b * T + i] = 1.0f;
    }
  }
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  auto key_mask = torch::from_blob(real.data(), {B, L}, torch::kUInt8).to(torch::kBool);
  RolloutBatch out;
  out.tokens = torch::from_blob(tokens.data(), {B, L}, i64).clone().to(device);
  out.positions = positions_from_mask(key_mask).to(device);
  out.attn_mask = make_attention_mask(key_mask, 0, L).to(device);
  out.response = torch::from_blob(response.data(), {B, T}, i64).clone().to(device);
  out.mask = torch::from_blob(mask.data(), {B, T}, torch::kFloat32).clone().to(device);
  out.prompt_width = P;
  return out;
}

ValueModel parse_value_model(const std::string& name, const std::string& field) {
  if (name == "separate") return ValueModel::kSeparate;
  if (name == "shared") return ValueModel::kShared;
  fail("{}: unknown value model '{}' (separate, shared)", field, name);
}

PolicyModels::PolicyModels(Transformer& net, const RewardModel& reward, const LoraConfig& policy_lora, uint64_t seed,
                           ValueInit value_init, ValueModel layout)
    : PolicyModels(net, &reward, policy_lora, seed, value_init, layout) {}

PolicyModels::PolicyModels(Transformer& net, const RewardModel* reward, const LoraConfig& policy_lora, uint64_t seed,
                           ValueInit value_init, ValueModel layout)
    : net_(net), reward_(reward), layout_(layout) {
  policy_ = &net.add_adapter(kPolicyAdapter, policy_lora, seed);
  if (layout_ == ValueModel::kNone) return;
  const int64_t H = net.config().hidden_size;
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(net.device());
  value_weight_ = torch::zeros({H}, f32);
  value_bias_ = torch::zeros({1}, f32);
  if (layout_ == ValueModel::kShared) {
    // The reward head was trained on the reward adapter's hidden states, not the policy's:
    // the shared head starts at zero (values 0: the mean of normalised rewards).
    std::fprintf(stderr, "[rlhf] value model: shared (a zero head on the policy's trunk)\n");
  } else if (!reward) {
    value_ = &net.add_adapter(kValueAdapter, policy_lora, seed ^ 0x7a1e5ULL);
    std::fprintf(stderr, "[rlhf] value model: fresh (a new adapter and a zero head; no reward model)\n");
  } else {
    const LoraAdapter& rm = reward->adapter();
    value_ = &net.add_adapter(kValueAdapter, rm.config, seed ^ 0x7a1e5ULL);
    // The reward adapter was trained against its own base: it means the same on this one only
    // when the weights are the same (one shared transformer, or the caller knows).
    const bool same_base = value_init == ValueInit::kFromReward ||
                           (value_init == ValueInit::kAuto && &reward->net() == &net);
    if (same_base) {
      const ModelConfig &a = reward->net().config(), &b = net.config();
      if (a.hidden_size != b.hidden_size || a.num_layers != b.num_layers || a.num_heads != b.num_heads ||
          a.num_kv_heads != b.num_kv_heads || a.head_dim != b.head_dim || a.intermediate_size != b.intermediate_size)
        fail("the value model cannot start from the reward model: their bases differ in shape");
      copy_adapter(rm, *value_);
      torch::NoGradGuard no_grad;
      value_weight_.copy_(reward->head_weight());
      value_bias_.copy_(reward->head_bias());
      value_from_reward_ = true;
    }
    std::fprintf(stderr, "[rlhf] value model: %s\n",
                 value_from_reward_ ? "initialised from the reward model (same base)"
                                    : (value_init == ValueInit::kFresh ? "fresh (a new adapter and a zero head)"
                                                                       : "fresh (the reward model is on another base)"));
  }
  value_weight_.set_requires_grad(true);
  value_bias_.set_requires_grad(true);
}

const RewardModel& PolicyModels::reward() const {
  if (!reward_) fail("the policy is tuned on rule rewards only: there is no reward model");
  return *reward_;
}

const LoraAdapter& PolicyModels::value_adapter() const {
  if (!value_) fail("the value model is shared with the policy: it has no adapter of its own");
  return *value_;
}

torch::Tensor PolicyModels::response_hidden(const RolloutBatch& batch, const LoraAdapter* adapter) const {
  ForwardArgs args;
  args.tokens = batch.tokens;
  args.positions = batch.positions;
  args.attn_mask = batch.attn_mask;
  if (adapter) args.adapters = {adapter};
  auto hidden = net_.hidden(args);  // [B, P + T, H]
  return hidden.narrow(1, batch.prompt_width - 1, batch.response.size(1));
}

torch::Tensor PolicyModels::logprobs_from_hidden(const torch::Tensor& hidden, const RolloutBatch& batch,
                                                 double temperature, torch::Tensor* entropy) const {
  auto logits = net_.logits(hidden);  // [B, T, V] float32
  if (temperature > 0) logits = logits / temperature;
  if (entropy) {
    torch::NoGradGuard no_grad;
    *entropy = ppo::entropy_from_logits(logits);
  }
  return ppo::token_logprobs(logits, batch.response);
}

torch::Tensor PolicyModels::value_from_hidden(const torch::Tensor& hidden) const {
  return torch::matmul(hidden.to(torch::kFloat32), value_weight_) + value_bias_;  // [B, T]
}

torch::Tensor PolicyModels::logprobs(const RolloutBatch& batch, bool policy, double temperature,
                                     torch::Tensor* entropy) const {
  return logprobs_from_hidden(response_hidden(batch, policy ? policy_ : nullptr), batch, temperature, entropy);
}

torch::Tensor PolicyModels::values(const RolloutBatch& batch) const {
  if (layout_ == ValueModel::kNone) return torch::zeros(batch.mask.sizes(), batch.mask.options());
  return value_from_hidden(response_hidden(batch, layout_ == ValueModel::kShared ? policy_ : value_));
}

PolicyForward PolicyModels::forward(const RolloutBatch& batch, double temperature, bool entropy) const {
  PolicyForward out;
  torch::Tensor* ent = entropy ? &out.entropy : nullptr;
  if (layout_ == ValueModel::kNone) {
    out.logp = logprobs(batch, true, temperature, ent);
    out.values = torch::zeros(batch.mask.sizes(), batch.mask.options());
  } else if (layout_ == ValueModel::kShared) {
    auto hidden = response_hidden(batch, policy_);  // [B, T, H]: one trunk for both heads
    out.logp = logprobs_from_hidden(hidden, batch, temperature, ent);
    out.values = value_from_hidden(hidden);
  } else {
    out.logp = logprobs(batch, true, temperature, ent);
    out.values = values(batch);
  }
  return out;
}

std::map<std::string, torch::Tensor> PolicyModels::parameters() const {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, t] : policy_->named_parameters()) out["policy/" + name] = t;
  if (value_)
    for (const auto& [name, t] : value_->named_parameters()) out["value/" + name] = t;
  if (layout_ == ValueModel::kNone) return out;
  out["value_head.weight"] = value_weight_;
  out["value_head.bias"] = value_bias_;
  return out;
}

void PolicyModels::save_value(const std::string& dir, const std::string& base_reference) const {
  if (layout_ == ValueModel::kNone) return;
  if (value_) {
    std::filesystem::create_directories(dir + "/value");
    save_adapter(dir + "/value", *value_,
                 {.base_reference = base_reference, .task_type = "TOKEN_CLS", .modules_to_save = {}});
  }
  save_tensors(dir + "/value_head.safetensors",
               {{"value_head.weight", value_weight_.view({1, -1})}, {"value_head.bias", value_bias_}},
               {{"format", "pt"}});
}

void PolicyModels::load_value(const std::string& dir) {
  if (layout_ == ValueModel::kNone) return;
  if (value_) load_adapter(dir + "/value", *value_);
  const std::string path = dir + "/value_head.safetensors";
  auto head = load_tensors(path, net_.device());
  for (const char* name : {"value_head.weight", "value_head.bias"})
    if (!head.count(name)) fail("{}: tensor '{}' is missing", path, name);
  auto w = value_weight_.view({1, -1});
  copy_checked(w, head["value_head.weight"], path + ": tensor 'value_head.weight'");
  copy_checked(value_bias_, head["value_head.bias"], path + ": tensor 'value_head.bias'");
}

}  // namespace rlhf
