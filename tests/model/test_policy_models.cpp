// The value model starts from the reward model only when the reward model sits on the policy's
// own base weights; on another base (even one of the same shape) it starts fresh, and the log
// says which.
#include <gtest/gtest.h>
#include <torch/torch.h>

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

}  // namespace
}  // namespace rlhf
