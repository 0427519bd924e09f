// The PPO arithmetic against values computed independently with NumPy loops
// (tests/parity/ppo_expected.py -> tests/data/ppo_expected.json).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "rlhf/train/ppo.h"
#include "rlhf/util/error.h"
#include "test_util.h"

namespace {
using nlohmann::json;
namespace ppo = rlhf::ppo;

torch::Tensor tensor(const json& j, torch::Dtype dtype = torch::kFloat64) {
  std::vector<double> flat;
  std::vector<int64_t> shape;
  const json* cur = &j;
  while (cur->is_array()) {
    shape.push_back(static_cast<int64_t>(cur->size()));
    cur = &(*cur)[0];
  }
  std::function<void(const json&)> walk = [&](const json& x) {
    if (x.is_array())
      for (const auto& e : x) walk(e);
    else
      flat.push_back(x.get<double>());
  };
  walk(j);
  return torch::tensor(flat, torch::kFloat64).view(shape).to(dtype);
}

void expect_close(const torch::Tensor& got, const json& want, double tol = 1e-9) {
  auto w = tensor(want);
  ASSERT_EQ(got.sizes(), w.sizes());
  double diff = (got.to(torch::kFloat64) - w).abs().max().item<double>();
  EXPECT_LT(diff, tol) << "got\n" << got << "\nwant\n" << w;
}

class PpoMath : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ifstream f(rlhf::testing::source_dir() / "tests" / "data" / "ppo_expected.json");
    ASSERT_TRUE(f.good());
    data = json::parse(f);
    in = data["inputs"];
    want = data["expected"];
    mask = tensor(in["mask"]);
  }
  json data, in, want;
  torch::Tensor mask;
};

TEST_F(PpoMath, EosPenaltyReplacesScoresOfUnfinishedCompletions) {
  auto stopped = torch::tensor(std::vector<int64_t>{1, 0, 1}).to(torch::kBool);
  expect_close(ppo::apply_eos_penalty(tensor(in["scores"]), stopped, in["penalty"].get<double>()),
               want["penalized_scores"]);
}

TEST(PpoEosPenalty, ReplaceOrSubtractOnlyForCompletionsThatDidNotStop) {
  auto scores = torch::tensor(std::vector<float>{2.5f, -0.5f, 1.0f, 0.0f});
  auto stopped = torch::tensor(std::vector<int64_t>{1, 0, 0, 1}).to(torch::kBool);
  auto replaced = ppo::apply_eos_penalty(scores, stopped, -1.0, ppo::EosPenaltyMode::Replace);
  EXPECT_TRUE(torch::equal(replaced, torch::tensor(std::vector<float>{2.5f, -1.0f, -1.0f, 0.0f})));
  // TRL subtracts the magnitude whatever its sign is written with.
  for (double penalty : {-1.0, 1.0}) {
    auto subtracted = ppo::apply_eos_penalty(scores, stopped, penalty, ppo::EosPenaltyMode::Subtract);
    EXPECT_TRUE(torch::equal(subtracted, torch::tensor(std::vector<float>{2.5f, -1.5f, 0.0f, 0.0f}))) << subtracted;
  }
  // The default mode is replace.
  EXPECT_TRUE(torch::equal(ppo::apply_eos_penalty(scores, stopped, -1.0), replaced));
}

TEST(PpoEosPenalty, ModeNamesParseAndBadOnesAreRefusedByField) {
  EXPECT_EQ(ppo::parse_eos_penalty_mode("replace"), ppo::EosPenaltyMode::Replace);
  EXPECT_EQ(ppo::parse_eos_penalty_mode("subtract"), ppo::EosPenaltyMode::Subtract);
  EXPECT_STREQ(ppo::eos_penalty_mode_name(ppo::EosPenaltyMode::Subtract), "subtract");
  try {
    ppo::parse_eos_penalty_mode("minus", "advanced.eos_penalty_mode");
    FAIL() << "no error";
  } catch (const rlhf::Error& e) {
    EXPECT_NE(std::string(e.what()).find("advanced.eos_penalty_mode"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("subtract"), std::string::npos) << e.what();
  }
}

TEST_F(PpoMath, KlPerTokenAndRewards) {
  auto kl = ppo::kl_per_token(tensor(in["logp"]), tensor(in["ref_logp"]), mask);
  expect_close(kl, want["kl"]);
  auto scores = tensor(want["penalized_scores"]);
  expect_close(ppo::token_rewards(scores, kl, mask, in["kl_coeff"].get<double>()), want["rewards"]);
}

TEST_F(PpoMath, GaeAndWhitening) {
  auto [adv, ret] = ppo::gae(tensor(want["rewards"]), tensor(in["values"]), mask, in["gamma"].get<double>(),
                             in["lam"].get<double>());
  expect_close(adv, want["advantages"]);
  expect_close(ret, want["returns"]);
  expect_close(ppo::masked_whiten(adv, mask), want["whitened"], 1e-7);
}

TEST_F(PpoMath, ClippedPolicyLoss) {
  auto l = ppo::policy_loss(tensor(in["new_logp"]), tensor(in["logp"]), tensor(want["whitened"]), mask,
                            in["cliprange"].get<double>());
  EXPECT_NEAR(l.loss.item<double>(), want["pg_loss"].get<double>(), 1e-9);
  EXPECT_NEAR(l.clipfrac.item<double>(), want["pg_clipfrac"].get<double>(), 1e-12);
  EXPECT_NEAR(l.approxkl.item<double>(), want["approxkl"].get<double>(), 1e-9);
  // The gradient flows only through the new log-probs, and not at all where clipping is active
  // in the pessimistic direction.
  auto logp = tensor(in["new_logp"]).set_requires_grad(true);
  ppo::policy_loss(logp, tensor(in["logp"]), tensor(want["whitened"]), mask, 0.2).loss.backward();
  EXPECT_EQ((logp.grad() * (1 - mask)).abs().sum().item<double>(), 0.0);
  EXPECT_GT(logp.grad().abs().sum().item<double>(), 0.0);
}

TEST_F(PpoMath, ClippedValueLoss) {
  auto l = ppo::value_loss(tensor(in["new_values"]), tensor(in["values"]), tensor(want["returns"]), mask,
                           in["cliprange_value"].get<double>());
  EXPECT_NEAR(l.loss.item<double>(), want["vf_loss"].get<double>(), 1e-9);
  EXPECT_NEAR(l.clipfrac.item<double>(), want["vf_clipfrac"].get<double>(), 1e-12);
}

TEST_F(PpoMath, EntropyAndTokenLogprobs) {
  auto logits = tensor(in["logits"]);
  expect_close(ppo::entropy_from_logits(logits), want["entropy"], 1e-9);
  auto tokens = tensor(in["tokens"]).to(torch::kInt64);
  expect_close(ppo::token_logprobs(logits, tokens), want["token_logprobs"], 1e-9);
}

TEST_F(PpoMath, AdaptiveKlController) {
  const auto& a = in["adaptive_kl"];
  ppo::AdaptiveKl ctl{a["init"].get<double>(), a["target"].get<double>(), a["horizon"].get<double>()};
  for (size_t i = 0; i < a["updates"].size(); ++i) {
    ctl.update(a["updates"][i][0].get<double>(), a["updates"][i][1].get<int64_t>());
    EXPECT_NEAR(ctl.value, want["adaptive_kl"][i].get<double>(), 1e-12);
  }
}

TEST(PpoMathEdges, RowsWithoutTokensGetNoRewardAndNoAdvantage) {
  auto mask = torch::tensor({{1.0, 1.0}, {0.0, 0.0}}, torch::kFloat64);
  auto scores = torch::tensor({2.0, 5.0}, torch::kFloat64);
  auto kl = torch::zeros({2, 2}, torch::kFloat64);
  auto r = ppo::token_rewards(scores, kl, mask, 0.1);
  EXPECT_EQ(r[1].abs().sum().item<double>(), 0.0);
  EXPECT_EQ(r[0][1].item<double>(), 2.0);
  auto [adv, ret] = ppo::gae(r, torch::ones({2, 2}, torch::kFloat64), mask, 1.0, 0.95);
  EXPECT_EQ(adv[1].abs().sum().item<double>(), 0.0);
  EXPECT_EQ(ret[1].abs().sum().item<double>(), 0.0);
}

}  // namespace
