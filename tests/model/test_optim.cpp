// AdamW: the update torch.optim.AdamW makes (epsilon a setting), gradient clipping, and the
// guard that skips optimizer steps with a non-finite gradient norm and stops a run that keeps
// producing them.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "rlhf/train/optim.h"
#include "rlhf/util/error.h"

namespace rlhf {
namespace {

std::map<std::string, torch::Tensor> make_params() {
  torch::manual_seed(1);
  return {{"a", torch::randn({3, 4}).set_requires_grad(true)}, {"b", torch::randn({5}).set_requires_grad(true)}};
}

// Gradients of step k, small enough that epsilon matters next to sqrt(v).
void set_grads(std::map<std::string, torch::Tensor>& params, int k) {
  torch::manual_seed(100 + k);
  for (auto& [name, p] : params) p.mutable_grad() = torch::randn(p.sizes()) * 1e-5;
}

std::map<std::string, torch::Tensor> clone_all(const std::map<std::string, torch::Tensor>& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [k, v] : m) out[k] = v.detach().clone();
  return out;
}

TEST(AdamW, MatchesTorchAdamWForEachEpsilon) {
  std::map<std::string, torch::Tensor> final_a;
  for (double eps : {1e-8, 1e-5}) {
    SCOPED_TRACE(eps);
    auto ours = make_params();
    auto theirs_map = clone_all(ours);
    std::vector<torch::Tensor> theirs;
    for (auto& [name, p] : theirs_map) theirs.push_back(p.set_requires_grad(true));
    AdamWConfig cfg;
    cfg.eps = eps;
    cfg.weight_decay = 0.01;
    AdamW opt(ours, cfg);
    torch::optim::AdamW ref(theirs, torch::optim::AdamWOptions(1e-3).betas({0.9, 0.999}).eps(eps).weight_decay(0.01));
    for (int k = 0; k < 4; ++k) {
      set_grads(ours, k);
      set_grads(theirs_map, k);
      opt.step(1e-3);
      ref.step();
    }
    EXPECT_EQ(opt.steps(), 4);
    for (const auto& [name, p] : ours)
      EXPECT_TRUE(torch::allclose(p, theirs_map.at(name), 1e-6, 1e-7)) << name << "\n" << p << "\n" << theirs_map.at(name);
    final_a[std::to_string(eps)] = ours.at("a").detach().clone();
  }
  // The setting is used: with gradients this small the two epsilons give visibly different updates.
  EXPECT_GT((final_a[std::to_string(1e-8)] - final_a[std::to_string(1e-5)]).abs().max().item<double>(), 1e-5);
}

TEST(AdamW, NonFiniteGradNormLeavesParametersAndMomentsBitIdentical) {
  auto params = make_params();
  AdamW opt(params, AdamWConfig{});
  set_grads(params, 0);
  ASSERT_TRUE(opt.step_if_finite(1e-3, opt.clip_grad_norm(1.0)));
  const auto before = clone_all(params);
  const auto moments = clone_all(opt.state());
  for (double bad : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    set_grads(params, 1);
    params.at("b").mutable_grad()[2] = bad;
    const double norm = opt.clip_grad_norm(1.0);
    EXPECT_FALSE(std::isfinite(norm));
    EXPECT_FALSE(opt.step_if_finite(1e-3, norm));
  }
  EXPECT_EQ(opt.steps(), 1);
  EXPECT_EQ(opt.skipped(), 2);
  for (const auto& [name, p] : params) EXPECT_TRUE(torch::equal(p, before.at(name))) << name;
  for (const auto& [name, m] : opt.state()) EXPECT_TRUE(torch::equal(m, moments.at(name))) << name;
}

TEST(NonFiniteGradGuard, SkipsCountsAndStopsAfterConsecutiveSkips) {
  auto params = make_params();
  AdamW opt(params, AdamWConfig{});
  NonFiniteGradGuard guard(3, "policy");
  const double nan = std::numeric_limits<double>::quiet_NaN();
  set_grads(params, 0);
  EXPECT_TRUE(guard.step(opt, 1e-3, 0.5, 1));
  EXPECT_FALSE(guard.step(opt, 1e-3, nan, 2));
  EXPECT_FALSE(guard.step(opt, 1e-3, std::numeric_limits<double>::infinity(), 3));
  EXPECT_EQ(guard.consecutive(), 2);
  EXPECT_TRUE(guard.step(opt, 1e-3, 0.5, 4));  // a finite step ends the run of skips
  EXPECT_EQ(guard.consecutive(), 0);
  EXPECT_EQ(guard.skipped(), 2);
  EXPECT_EQ(opt.steps(), 2);
  EXPECT_FALSE(guard.step(opt, 1e-3, nan, 5));
  EXPECT_FALSE(guard.step(opt, 1e-3, nan, 6));
  try {
    guard.step(opt, 1e-3, nan, 7);
    FAIL() << "no error after 3 consecutive skips";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("3 consecutive optimizer steps had a non-finite gradient norm (last: nan)"), std::string::npos)
        << msg;
    EXPECT_NE(msg.find("policy"), std::string::npos) << msg;
    EXPECT_NE(msg.find("step 7"), std::string::npos) << msg;
  }
  EXPECT_EQ(opt.steps(), 2);
  EXPECT_EQ(guard.skipped(), 5);
  EXPECT_THROW(NonFiniteGradGuard(0, "policy"), Error);
}

// A resumed run continues its checkpoint's run of skips: it stops where the whole run would.
TEST(NonFiniteGradGuard, ARestoredCountStopsWhereTheWholeRunWould) {
  auto params = make_params();
  AdamW opt(params, AdamWConfig{});
  NonFiniteGradGuard guard(3, "reward model");
  guard.restore_consecutive(2);
  set_grads(params, 0);
  EXPECT_THROW(guard.step(opt, 1e-3, std::numeric_limits<double>::quiet_NaN(), 9), Error);
  EXPECT_EQ(opt.steps(), 0);
}

TEST(AdamW, ClipGradNormReturnsTheNormBeforeClipping) {
  auto params = make_params();
  AdamW opt(params, AdamWConfig{});
  params.at("a").mutable_grad() = torch::full({3, 4}, 1.0f);
  params.at("b").mutable_grad() = torch::full({5}, 2.0f);
  const double norm = std::sqrt(12.0 + 5 * 4.0);
  EXPECT_NEAR(opt.clip_grad_norm(0.0), norm, 1e-9);  // off: returned, nothing scaled
  EXPECT_NEAR(opt.clip_grad_norm(100.0), norm, 1e-9);
  EXPECT_NEAR(opt.clip_grad_norm(1.0), norm, 1e-9);
  EXPECT_NEAR(opt.clip_grad_norm(0.0), 1.0, 1e-5);  // now clipped to max_norm
}

}  // namespace
}  // namespace rlhf
