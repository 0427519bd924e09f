// The value model starts from the reward model only when the reward model sits on the policy's
// own base weights; on another base (even one of the same shape) it starts fresh, and the log
// says which. The shared layout puts a value head on the policy's own trunk.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <memory>

#include "rlhf/model/transformer.h"
#include "rlhf/train/policy_model.h"
#include "rlhf/train/reward_model.h"
#include "rlhf/util/error.h"
#include "tiny_model.h"

namespace rlhf {
namespace {

LoraConfig lora() {
  LoraConfig lc;
  lc.rank = 2;
  lc.targets = {"q_proj", "v_proj"};
  return lc;
}

// A reward model with a trained-looking (non-zero) adapter and head.
std::unique_ptr<RewardModel> make_reward(Transformer& net) {
  auto rm = std::make_unique<RewardModel>(net, lora(), 3);
  torch::NoGradGuard ng;
  torch::manual_seed(4);
  for (const auto& [name, t] : rm->parameters()) t.normal_(0, 0.5);
  return rm;
}

bool value_equals_reward(const PolicyModels& m) {
  const auto value = m.value_adapter().named_parameters(), reward = m.reward().adapter().named_parameters();
  for (const auto& [name, t] : reward)
    if (!torch::equal(t, value.at(name))) return false;
  const auto params = m.parameters();
  return torch::equal(params.at("value_head.weight"), m.reward().head_weight()) &&
         torch::equal(params.at("value_head.bias"), m.reward().head_bias());
}

struct Made {
  std::unique_ptr<PolicyModels> models;
  std::string log;
};

Made make(Transformer& net, const RewardModel& rm, ValueInit init) {
  ::testing::internal::CaptureStderr();
  Made out;
  out.models = std::make_unique<PolicyModels>(net, rm, lora(), 11, init);
  out.log = ::testing::internal::GetCapturedStderr();
  return out;
}

TEST(PolicyModels, ValueStartsFromTheRewardModelOnTheSameBase) {
  auto c = testing::tiny_config();
  Transformer net(c, testing::tiny_weights(c, 5), torch::kFloat32, torch::kCPU);
  auto rm = make_reward(net);
  Made m = make(net, *rm, ValueInit::kAuto);
  EXPECT_TRUE(m.models->value_from_reward());
  EXPECT_TRUE(value_equals_reward(*m.models));
  EXPECT_NE(m.log.find("value model: initialised from the reward model"), std::string::npos) << m.log;
  // The copy is the value model's own: training it leaves the reward model alone.
  EXPECT_NE(m.models->parameters().at("value_head.weight").data_ptr(), rm->head_weight().data_ptr());
}

TEST(PolicyModels, ValueStartsFreshWhenTheRewardModelIsOnAnotherBaseOfTheSameShape) {
  auto c = testing::tiny_config();
  Transformer reward_base(c, testing::tiny_weights(c, 5), torch::kFloat32, torch::kCPU);
  Transformer policy_base(c, testing::tiny_weights(c, 6), torch::kFloat32, torch::kCPU);  // other weights
  auto rm = make_reward(reward_base);
  Made m = make(policy_base, *rm, ValueInit::kAuto);
  EXPECT_FALSE(m.models->value_from_reward());
  EXPECT_FALSE(value_equals_reward(*m.models));
  const auto params = m.models->parameters();
  EXPECT_EQ(params.at("value_head.weight").abs().sum().item<double>(), 0.0);
  EXPECT_EQ(params.at("value_head.bias").abs().sum().item<double>(), 0.0);
  for (const auto& [name, t] : m.models->value_adapter().named_parameters())
    if (name.find("lora_B") != std::string::npos) EXPECT_EQ(t.abs().sum().item<double>(), 0.0) << name;
  EXPECT_NE(m.log.find("value model: fresh (the reward model is on another base)"), std::string::npos) << m.log;
}

TEST(PolicyModels, TheCallerMaySaySoExplicitly) {
  auto c = testing::tiny_config();
  Transformer reward_base(c, testing::tiny_weights(c, 5), torch::kFloat32, torch::kCPU);
  Transformer copy(c, testing::tiny_weights(c, 5), torch::kFloat32, torch::kCPU);  // the same weights loaded twice
  auto rm = make_reward(reward_base);
  Made from = make(copy, *rm, ValueInit::kFromReward);
  EXPECT_TRUE(from.models->value_from_reward());
  EXPECT_TRUE(value_equals_reward(*from.models));

  Made fresh = make(reward_base, *rm, ValueInit::kFresh);  // shared, but fresh asked for
  EXPECT_FALSE(fresh.models->value_from_reward());
  EXPECT_NE(fresh.log.find("value model: fresh"), std::string::npos) << fresh.log;

  // Asking to start from a reward model of another shape is an error, not a crash.
  auto other = testing::tiny_config();
  other.hidden_size = 48;
  other.head_dim = 12;
  Transformer wide(other, testing::tiny_weights(other, 5), torch::kFloat32, torch::kCPU);
  ::testing::internal::CaptureStderr();
  EXPECT_THROW(PolicyModels(wide, *rm, lora(), 11, ValueInit::kFromReward), Error);
  ::testing::internal::GetCapturedStderr();
}

// Two rollouts of different prompt and response lengths (left-padded prompts).
RolloutBatch two_rollouts() {
  const std::vector<int32_t> p0 = {5, 9, 14, 3}, p1 = {7, 2}, r0 = {11, 12, 13}, r1 = {20};
  return pack_rollouts({&p0, &p1}, {&r0, &r1}, /*pad_id=*/0, torch::kCPU);
}

TEST(PolicyModels, SharedValueHeadReadsThePolicysTrunk) {
  auto c = testing::tiny_config();
  Transformer net(c, testing::tiny_weights(c, 5), torch::kFloat32, torch::kCPU);
  auto rm = make_reward(net);
  ::testing::internal::CaptureStderr();
  PolicyModels m(net, *rm, lora(), 11, ValueInit::kAuto, ValueModel::kShared);
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("value model: shared"), std::string::npos) << log;
  EXPECT_EQ(m.layout(), ValueModel::kShared);
  EXPECT_THROW(m.value_adapter(), Error);
  auto params = m.parameters();
  for (const auto& [name, t] : params) EXPECT_NE(name.rfind("value/", 0), 0u) << name;  // no value adapter
  EXPECT_EQ(params.at("value_head.weight").abs().sum().item<double>(), 0.0);            // starts at zero
  {  // a trained-looking policy adapter and head, so both matter below
    torch::NoGradGuard ng;
    torch::manual_seed(7);
    for (auto& [name, t] : params) t.normal_(0, 0.3);
  }
  const RolloutBatch b = two_rollouts();
  const PolicyForward f = m.forward(b, 0.7);

  // The reference computation: the policy's final hidden states at the columns that predict
  // each response token, times the head, plus the bias.
  ForwardArgs args;
  args.tokens = b.tokens;
  args.positions = b.positions;
  args.attn_mask = b.attn_mask;
  args.adapters = {&m.policy()};
  torch::Tensor expected_values, expected_logp;
  {
    torch::NoGradGuard ng;
    auto h = net.hidden(args).narrow(1, b.prompt_width - 1, b.response.size(1));  // [B, T, H]
    expected_values = torch::matmul(h, params.at("value_head.weight")) + params.at("value_head.bias");
    auto logits = net.logits(h) / 0.7;
    expected_logp = torch::log_softmax(logits, -1).gather(-1, b.response.unsqueeze(-1)).squeeze(-1);
  }
  ASSERT_EQ(f.values.sizes(), expected_values.sizes());
  EXPECT_LT((f.values - expected_values).abs().max().item<double>(), 1e-5);
  EXPECT_LT(((f.logp - expected_logp) * b.mask).abs().max().item<double>(), 1e-5);
  // values() and logprobs() alone give the same numbers as the one forward.
  EXPECT_TRUE(torch::allclose(m.values(b), f.values, 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(m.logprobs(b, true, 0.7) * b.mask, f.logp * b.mask, 1e-6, 1e-6));

  // One backward from the value alone reaches the head and the policy's adapter.
  ((f.values * b.mask).sum()).backward();
  for (const auto& [name, t] : params) {
    ASSERT_TRUE(t.grad().defined()) << name;
    EXPECT_GT(t.grad().abs().sum().item<double>(), 0.0) << name;
  }
}

TEST(PolicyModels, SharedValueHeadSavesAndLoadsWithoutAnAdapter) {
  auto c = testing::tiny_config();
  Transformer net(c, testing::tiny_weights(c, 5), torch::kFloat32, torch::kCPU);
  auto rm = make_reward(net);
  ::testing::internal::CaptureStderr();
  PolicyModels a(net, *rm, lora(), 11, ValueInit::kAuto, ValueModel::kShared);
  Transformer net2(c, testing::tiny_weights(c, 5), torch::kFloat32, torch::kCPU);
  auto rm2 = make_reward(net2);
  PolicyModels b(net2, *rm2, lora(), 12, ValueInit::kAuto, ValueModel::kShared);
  ::testing::internal::GetCapturedStderr();
  {
    torch::NoGradGuard ng;
    a.parameters().at("value_head.weight").normal_(0, 1);
  }
  const auto dir = std::filesystem::temp_directory_path() / ("rlhf_shared_value_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  a.save_value(dir.string(), "tiny");
  EXPECT_FALSE(std::filesystem::exists(dir / "value"));
  b.load_value(dir.string());
  EXPECT_TRUE(torch::equal(a.parameters().at("value_head.weight"), b.parameters().at("value_head.weight")));
  std::filesystem::remove_all(dir);
  EXPECT_EQ(parse_value_model("shared"), ValueModel::kShared);
  EXPECT_EQ(parse_value_model("separate"), ValueModel::kSeparate);
  EXPECT_THROW(parse_value_model("both", "advanced.value_model"), Error);
}

}  // namespace
}  // namespace rlhf
