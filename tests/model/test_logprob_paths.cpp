// The PPO ratio starts at exactly 1: the old and reference log-probs (scored without gradients)
// and the update's log-probs (with gradients) come from one numeric path, in fp32 and bf16, for
// any micro-batch size. A sample's log-probs also stay the same, up to float noise, whatever
// neighbours it is packed with (the scoring pass and the update pass may group samples
// differently). They run on RLHF_TEST_DEVICE (the CPU when unset).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>
#include <random>

#include "rlhf/model/transformer.h"
#include "rlhf/train/policy_model.h"
#include "rlhf/train/ppo.h"
#include "rlhf/train/reward_model.h"
#include "tiny_model.h"

namespace rlhf {
namespace {

constexpr int32_t kPad = 0;

struct Roles {
  std::unique_ptr<Transformer> net;
  std::unique_ptr<RewardModel> reward;
  std::unique_ptr<PolicyModels> models;
};

// Policy, value and reward on one tiny base; adapters on every projection, made non-zero so
// that the policy differs from the reference.
Roles make_roles(torch::Dtype dtype) {
  auto c = testing::tiny_config(/*tied=*/false, /*bias=*/true);
  Roles r;
  r.net = std::make_unique<Transformer>(c, testing::tiny_weights(c, 5), dtype, torch::Device(testing::test_device()));
  LoraConfig lc;
  lc.rank = 2;
  lc.targets = {"all-linear"};
  r.reward = std::make_unique<RewardModel>(*r.net, lc, 3);
  r.models = std::make_unique<PolicyModels>(*r.net, *r.reward, lc, 11);
  torch::NoGradGuard ng;
  torch::manual_seed(2);
  for (const auto& [name, t] : r.models->parameters()) t.normal_(0, 0.2);
  return r;
}

struct Sample {
  std::vector<int32_t> prompt, response;
};

std::vector<Sample> make_samples(int n, int64_t vocab) {
  std::mt19937 rng(17);
  std::vector<Sample> out(n);
  for (auto& s : out) {
    s.prompt.resize(2 + rng() % 6);
    s.response.resize(1 + rng() % 7);
    for (auto& t : s.prompt) t = 1 + static_cast<int32_t>(rng() % (vocab - 1));
    for (auto& t : s.response) t = 1 + static_cast<int32_t>(rng() % (vocab - 1));
  }
  return out;
}

RolloutBatch pack(const std::vector<Sample>& s, size_t begin, size_t end) {
  std::vector<const std::vector<int32_t>*> prompts, responses;
  for (size_t i = begin; i < end; ++i) prompts.push_back(&s[i].prompt), responses.push_back(&s[i].response);
  return pack_rollouts(prompts, responses, kPad, torch::Device(testing::test_device()));
}

// The largest difference between a and b on the real tokens.
double max_diff(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& mask) {
  return ((a.detach() - b.detach()).abs() * mask).max().item<double>();
}

class LogprobPaths : public ::testing::TestWithParam<torch::Dtype> {};

TEST_P(LogprobPaths, NoGradScoringEqualsTheUpdatePass) {
  Roles r = make_roles(GetParam());
  const auto samples = make_samples(8, r.net->config().vocab_size);
  for (size_t mb : {1, 2, 3, 8}) {
    for (size_t begin = 0; begin < samples.size(); begin += mb) {
      SCOPED_TRACE(::testing::Message() << "micro-batch " << mb << " from sample " << begin);
      const RolloutBatch batch = pack(samples, begin, std::min(samples.size(), begin + mb));
      torch::Tensor old_logp, ref_logp, old_values;
      {
        torch::NoGradGuard ng;  // as the trainer scores a rollout
        old_logp = r.models->logprobs(batch, /*policy=*/true, 0.7);
        ref_logp = r.models->logprobs(batch, /*policy=*/false, 0.7);
        old_values = r.models->values(batch);
      }
      auto new_logp = r.models->logprobs(batch, /*policy=*/true, 0.7);  // as the update computes them
      auto new_values = r.models->values(batch);
      ASSERT_TRUE(new_logp.requires_grad());
      EXPECT_LE(max_diff(old_logp, new_logp, batch.mask), 1e-6);
      EXPECT_LE(max_diff(old_values, new_values, batch.mask), 1e-6);
      auto ref_grad = r.models->logprobs(batch, /*policy=*/false, 0.7);
      EXPECT_LE(max_diff(ref_logp, ref_grad, batch.mask), 1e-6);

      // The first minibatch of a PPO step: ratio 1 everywhere.
      auto adv = torch::randn(batch.mask.sizes()).to(batch.mask.device()) * batch.mask;
      auto pl = ppo::policy_loss(new_logp, old_logp, adv, batch.mask, 0.2);
      EXPECT_LT(pl.approxkl.item<double>(), 1e-12);
      EXPECT_EQ(pl.clipfrac.item<double>(), 0.0);
    }
  }
}

// A sample's log-probs and values do not depend on its neighbours (the padding they bring) beyond
// float noise: fp32 to 1e-5 (1e-4 on a GPU, whose kernels choose their reduction order by
// shape); bf16 rounds every activation to 8 bits of mantissa, so a different matrix shape may
// round one activation the other way (at most a few bf16 ulps of the logits).
TEST_P(LogprobPaths, NeighboursChangeARowOnlyByFloatNoise) {
  Roles r = make_roles(GetParam());
  const auto samples = make_samples(8, r.net->config().vocab_size);
  const bool bf16 = GetParam() == torch::kBFloat16;
  torch::NoGradGuard ng;
  const RolloutBatch all = pack(samples, 0, samples.size());
  auto logp_all = r.models->logprobs(all, true, 1.0);
  auto values_all = r.models->values(all);
  double worst_logp = 0, worst_value = 0;
  for (size_t mb : {1, 3}) {
    for (size_t begin = 0; begin < samples.size(); begin += mb) {
      const size_t end = std::min(samples.size(), begin + mb);
      const RolloutBatch part = pack(samples, begin, end);
      auto logp = r.models->logprobs(part, true, 1.0);
      auto values = r.models->values(part);
      for (size_t i = begin; i < end; ++i) {
        const int64_t T = static_cast<int64_t>(samples[i].response.size());
        const int64_t k = static_cast<int64_t>(i - begin);
        auto a = logp[k].narrow(0, 0, T), b = logp_all[static_cast<int64_t>(i)].narrow(0, 0, T);
        worst_logp = std::max(worst_logp, (a - b).abs().max().item<double>());
        auto va = values[k].narrow(0, 0, T), vb = values_all[static_cast<int64_t>(i)].narrow(0, 0, T);
        worst_value = std::max(worst_value, (va - vb).abs().max().item<double>());
      }
    }
  }
  std::printf("[ measured ] %s: a row's log-probs move by %.3g, its values by %.3g with other neighbours\n",
              bf16 ? "bf16" : "fp32", worst_logp, worst_value);
  const double fp32_tol = testing::test_device_is_cpu() ? 1e-5 : 1e-4;
  EXPECT_LE(worst_logp, bf16 ? 0.02 : fp32_tol);
  EXPECT_LE(worst_value, bf16 ? 0.02 : fp32_tol);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, LogprobPaths, ::testing::Values(torch::kFloat32, torch::kBFloat16),
                         [](const auto& info) { return info.param == torch::kFloat32 ? "fp32" : "bf16"; });

}  // namespace
}  // namespace rlhf
