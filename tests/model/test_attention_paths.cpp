// Attention in the form the fused kernels take (is_causal without a mask, or an additive mask
// in the query's dtype) against the formula softmax(q kᵀ / sqrt(d) + mask) v and against the
// boolean mask handed to every layer, for left and right padding, the reward model's packed
// pairs and batches without padding; and gradient checkpointing against plain backprop.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "rlhf/model/transformer.h"
#include "rlhf/train/policy_model.h"
#include "rlhf/train/reward_model.h"
#include "rlhf/train/tensor_file.h"
#include "test_util.h"
#include "tiny_model.h"

namespace rlhf {
namespace {

constexpr double kTol = 1e-5;

double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

struct Qkv {
  torch::Tensor q, k, v;  // q [B, 4, T, 8]; k, v [B, 2, T, 8] (grouped)
};

Qkv random_qkv(int64_t B, int64_t T) {
  torch::manual_seed(3);
  return {torch::randn({B, 4, T, 8}), torch::randn({B, 2, T, 8}), torch::randn({B, 2, T, 8})};
}

// key_mask [B, L] with n[b] real tokens on the left or the right of each row.
torch::Tensor padded_key_mask(const std::vector<int64_t>& n, int64_t L, bool left) {
  auto m = torch::zeros({static_cast<int64_t>(n.size()), L}, torch::kBool);
  for (size_t b = 0; b < n.size(); ++b) m[b].narrow(0, left ? L - n[b] : 0, n[b]).fill_(true);
  return m;
}

// The new form, the boolean form and the formula agree on `mask` [B, 1, T, T].
void expect_paths_agree(const torch::Tensor& mask, bool expect_causal) {
  const int64_t B = mask.size(0), T = mask.size(2);
  auto [q, k, v] = random_qkv(B, T);
  const auto fast = attention_bias(mask, 0, torch::kFloat32, AttentionMaskForm::kFastKernels);
  EXPECT_EQ(fast.causal, expect_causal);
  if (!expect_causal) EXPECT_EQ(fast.mask.scalar_type(), torch::kFloat32);
  const auto boolean = attention_bias(mask, 0, torch::kFloat32, AttentionMaskForm::kBoolean);
  auto reference = reference_attention(q, k, v, mask);
  EXPECT_LT(max_diff(attention(q, k, v, fast), reference), kTol);
  EXPECT_LT(max_diff(attention(q, k, v, boolean), reference), kTol);
}

TEST(AttentionPaths, LeftPaddingEqualsTheFormula) {
  expect_paths_agree(make_attention_mask(padded_key_mask({9, 4, 1}, 9, /*left=*/true), 0, 9), false);
}

TEST(AttentionPaths, RightPaddingEqualsTheFormula) {
  expect_paths_agree(make_attention_mask(padded_key_mask({9, 6, 2}, 9, /*left=*/false), 0, 9), false);
}

std::vector<data::PreferencePair> some_pairs() {
  std::vector<data::PreferencePair> pairs = {
      {{5, 6, 7}, {8, 9}, {10, 11, 12}, "a"},  // 8 tokens
      {{5, 6}, {13}, {14, 15}, "b"},           // 5: shares a row with the next one
      {{7}, {16}, {17}, "c"},                  // 3
      {{3, 4}, {18, 19, 20}, {21}, "d"},       // 6
  };
  return pairs;
}

TEST(AttentionPaths, PackedPairsEqualTheFormula) {
  auto pairs = some_pairs();
  std::vector<const data::PreferencePair*> ptrs;
  for (const auto& p : pairs) ptrs.push_back(&p);
  auto packed = pack_pairs(ptrs, 0, torch::kCPU);
  ASSERT_LT(packed.tokens.size(0), 4);  // pairs share rows
  expect_paths_agree(packed.attn_mask, false);
}

TEST(AttentionPaths, NoPaddingTakesTheCausalKernel) {
  expect_paths_agree(make_attention_mask(torch::ones({3, 7}, torch::kBool), 0, 7), true);
  // After cached keys, is_causal (aligned top left) would be wrong: an additive mask instead.
  auto after_cache = make_attention_mask(torch::ones({2, 7}, torch::kBool), 4, 3);  // [2, 1, 3, 7]
  const auto bias = attention_bias(after_cache, 4, torch::kBFloat16, AttentionMaskForm::kFastKernels);
  EXPECT_FALSE(bias.causal);
  EXPECT_EQ(bias.mask.scalar_type(), torch::kBFloat16);
  torch::manual_seed(4);
  auto q = torch::randn({2, 4, 3, 8}), k = torch::randn({2, 2, 7, 8}), v = torch::randn({2, 2, 7, 8});
  const auto f32 = attention_bias(after_cache, 4, torch::kFloat32, AttentionMaskForm::kFastKernels);
  EXPECT_LT(max_diff(attention(q, k, v, f32), reference_attention(q, k, v, after_cache)), kTol);
}

// Policy, value and reward on one tiny base, adapters on every projection made non-zero.
struct Roles {
  std::unique_ptr<Transformer> net;
  std::unique_ptr<RewardModel> reward;
  std::unique_ptr<PolicyModels> models;
};

Roles make_roles(double dropout = 0.0) {
  auto c = testing::tiny_config(/*tied=*/false, /*bias=*/true);
  Roles r;
  r.net = std::make_unique<Transformer>(c, testing::tiny_weights(c, 5), torch::kFloat32, torch::kCPU);
  LoraConfig lc;
  lc.rank = 2;
  lc.dropout = dropout;
  lc.targets = {"all-linear"};
  r.reward = std::make_unique<RewardModel>(*r.net, lc, 3);
  r.models = std::make_unique<PolicyModels>(*r.net, *r.reward, lc, 11);
  torch::NoGradGuard ng;
  torch::manual_seed(2);
  for (const auto& [name, t] : r.reward->parameters()) t.normal_(0, 0.2);
  for (const auto& [name, t] : r.models->parameters()) t.normal_(0, 0.2);
  return r;
}

RolloutBatch some_rollouts(int64_t vocab, bool pad) {
  std::mt19937 rng(17);
  std::vector<std::vector<int32_t>> prompts(3), responses(3);
  for (size_t i = 0; i < 3; ++i) {
    prompts[i].resize(pad ? 2 + i * 2 : 5);
    responses[i].resize(pad ? 5 - i * 2 : 4);
    for (auto& t : prompts[i]) t = 1 + static_cast<int32_t>(rng() % (vocab - 1));
    for (auto& t : responses[i]) t = 1 + static_cast<int32_t>(rng() % (vocab - 1));
  }
  std::vector<const std::vector<int32_t>*> p, r;
  for (size_t i = 0; i < 3; ++i) p.push_back(&prompts[i]), r.push_back(&responses[i]);
  return pack_rollouts(p, r, 0, torch::kCPU);
}

TEST(AttentionPaths, WholeModelLogitsAreUnchanged) {
  auto roles = make_roles();
  Transformer& net = *roles.net;
  auto pairs = some_pairs();
  std::vector<const data::PreferencePair*> ptrs;
  for (const auto& p : pairs) ptrs.push_back(&p);
  auto packed = pack_pairs(ptrs, 0, torch::kCPU);
  auto padded = some_rollouts(net.config().vocab_size, true);
  auto unpadded = some_rollouts(net.config().vocab_size, false);
  ASSERT_TRUE(attention_bias(unpadded.attn_mask, 0, torch::kFloat32, AttentionMaskForm::kFastKernels).causal);
  auto outputs = [&](AttentionMaskForm form) {
    net.set_attention_mask_form(form);
    torch::NoGradGuard ng;
    auto [chosen, rejected] = roles.reward->score_pairs(packed);
    return std::vector<torch::Tensor>{chosen, rejected, roles.models->logprobs(padded, true, 0.7),
                                      roles.models->logprobs(unpadded, true, 0.7), roles.models->values(padded)};
  };
  auto before = outputs(AttentionMaskForm::kBoolean), after = outputs(AttentionMaskForm::kFastKernels);
  for (size_t i = 0; i < before.size(); ++i) EXPECT_LT(max_diff(before[i], after[i]), kTol) << "output " << i;
  // And the logits themselves, over the whole padded batch.
  ForwardArgs args;
  args.tokens = padded.tokens;
  args.positions = padded.positions;
  args.attn_mask = padded.attn_mask;
  args.adapters = {&roles.models->policy()};
  torch::NoGradGuard ng;
  net.set_attention_mask_form(AttentionMaskForm::kBoolean);
  auto logits_before = net.logits(net.hidden(args));
  net.set_attention_mask_form(AttentionMaskForm::kFastKernels);
  EXPECT_LT(max_diff(logits_before, net.logits(net.hidden(args))), kTol);
}

// ---- Gradient checkpointing ---------------------------------------------------------------

struct LossAndGrads {
  double loss = 0;
  std::map<std::string, torch::Tensor> grads;
};

// Whether the autograd graph behind t holds a node whose name contains `name`.
bool graph_has(const torch::Tensor& t, const std::string& name) {
  std::vector<torch::autograd::Node*> todo = {t.grad_fn().get()};
  std::set<torch::autograd::Node*> seen;
  while (!todo.empty()) {
    auto* n = todo.back();
    todo.pop_back();
    if (!n || !seen.insert(n).second) continue;
    if (n->name().find(name) != std::string::npos) return true;
    for (const auto& e : n->next_edges()) todo.push_back(e.function.get());
  }
  return false;
}

// The loss and the gradients of `params`; the graph holds checkpointed layers when `checkpointing`.
LossAndGrads run_backward(const std::map<std::string, torch::Tensor>& params,
                          const std::function<torch::Tensor()>& loss_fn, bool checkpointing) {
  for (const auto& [name, t] : params)
    if (t.grad().defined()) t.mutable_grad().zero_();
  torch::manual_seed(9);  // the same dropout masks in both runs
  auto loss = loss_fn();
  EXPECT_EQ(graph_has(loss, "CheckpointBackward"), checkpointing);
  loss.backward();
  LossAndGrads out;
  out.loss = loss.item<double>();
  for (const auto& [name, t] : params) out.grads[name] = t.grad().defined() ? t.grad().clone() : torch::Tensor();
  return out;
}

void expect_same(const LossAndGrads& a, const LossAndGrads& b) {
  EXPECT_NEAR(a.loss, b.loss, kTol);
  for (const auto& [name, g] : a.grads) {
    ASSERT_TRUE(g.defined()) << name;
    ASSERT_TRUE(b.grads.at(name).defined()) << name;
    EXPECT_LT(max_diff(g, b.grads.at(name)), kTol) << name;
  }
}

void check_reward_model(double dropout) {
  auto roles = make_roles(dropout);
  auto pairs = some_pairs();
  std::vector<const data::PreferencePair*> ptrs;
  for (const auto& p : pairs) ptrs.push_back(&p);
  auto packed = pack_pairs(ptrs, 0, torch::kCPU);
  auto loss = [&] {
    auto [chosen, rejected] = roles.reward->score_pairs(packed, /*train=*/true);
    return reward_pair_losses(chosen, rejected, 0.0, 0.01).mean();
  };
  auto params = roles.reward->parameters();
  auto plain = run_backward(params, loss, false);
  roles.net->set_gradient_checkpointing(true);
  auto checkpointed = run_backward(params, loss, true);
  expect_same(plain, checkpointed);
  EXPECT_GT(plain.grads.at("model.layers.0.self_attn.q_proj.lora_A.weight").abs().sum().item<double>(), 0.0);
}

TEST(GradientCheckpointing, RewardModelGradientsAreUnchanged) { check_reward_model(0.0); }

TEST(GradientCheckpointing, RewardModelGradientsAreUnchangedWithLoraDropout) { check_reward_model(0.1); }

TEST(GradientCheckpointing, PolicyLogprobAndValueGradientsAreUnchanged) {
  auto roles = make_roles();
  auto batch = some_rollouts(roles.net->config().vocab_size, true);
  auto loss = [&] {
    auto logp = roles.models->logprobs(batch, true, 0.7);
    auto values = roles.models->values(batch);
    return -(logp * batch.mask).sum() + (values * batch.mask).pow(2).sum();
  };
  auto params = roles.models->parameters();
  auto plain = run_backward(params, loss, false);
  roles.net->set_gradient_checkpointing(true);
  auto checkpointed = run_backward(params, loss, true);
  expect_same(plain, checkpointed);
  // Without gradients (scoring) nothing changes either.
  torch::NoGradGuard ng;
  auto ref = roles.models->logprobs(batch, false, 0.7);
  roles.net->set_gradient_checkpointing(false);
  EXPECT_LT(max_diff(ref, roles.models->logprobs(batch, false, 0.7)), kTol);
}

TEST(GradientCheckpointing, TrainRewardEndsAtTheSameAdapter) {
  namespace fs = std::filesystem;
  auto dir = testing::scratch_dir();
  testing::write_tiny_hf_model(dir / "model");
  testing::write_marker_preferences(dir / "prefs.jsonl", 24, 1);
  auto cmd = [&](const std::string& out, const std::string& extra) {
    return testing::cli() + " train-reward --preference-dataset " + (dir / "prefs.jsonl").string() +
           " --large-model-reference " + (dir / "model").string() + " --output " + (dir / out).string() +
           " --reward-model-train-steps 3 --batch-size 8 --micro-batch-size 4"
           " --reward-model-learning-rate-multiplier 20 --prompt-sequence-length 32 --target-sequence-length 24"
           " --validation-every 0 --threads 1 --no-progress" + extra;
  };
  ASSERT_EQ(testing::run(cmd("plain", "")), 0);
  ASSERT_EQ(testing::run(cmd("checkpointed", " --gradient-checkpointing")), 0);
  for (const char* file : {"adapter_model.safetensors", "reward_head.safetensors"}) {
    auto a = load_tensors((dir / "plain" / file).string()), b = load_tensors((dir / "checkpointed" / file).string());
    ASSERT_EQ(a.size(), b.size()) << file;
    for (const auto& [name, t] : a) EXPECT_LT(max_diff(t, b.at(name)), kTol) << file << " " << name;
  }
}

}  // namespace
}  // namespace rlhf
