// GRPO and RLOO: the arithmetic against values computed independently with NumPy loops
// (tests/parity/grpo_expected.py -> tests/data/grpo_expected.json), and train-policy with
// --method grpo / rloo on a tiny model with a rule reward.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <functional>

#include "rlhf/train/grpo.h"
#include "rlhf/util/error.h"
#include "test_util.h"

namespace {
using nlohmann::json;
namespace grpo = rlhf::grpo;

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
      flat.push_back(x.is_boolean() ? (x.get<bool>() ? 1.0 : 0.0) : x.get<double>());
  };
  walk(j);
  return torch::tensor(flat, torch::kFloat64).view(shape).to(dtype);
}

void expect_close(const torch::Tensor& got, const json& want, double tol = 1e-9) {
  auto w = tensor(want);
  ASSERT_EQ(got.sizes(), w.sizes());
  const double diff = (got.to(torch::kFloat64) - w).abs().max().item<double>();
  EXPECT_LT(diff, tol) << "got\n" << got << "\nwant\n" << w;
}

class GrpoMath : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ifstream f(rlhf::testing::source_dir() / "tests" / "data" / "grpo_expected.json");
    ASSERT_TRUE(f.good());
    const json data = json::parse(f);
    in = data["inputs"];
    want = data["expected"];
    mask = tensor(in["mask"]);
    logp = tensor(in["logp"]), old_logp = tensor(in["old_logp"]), ref_logp = tensor(in["ref_logp"]);
    rewards = tensor(in["rewards"]);
    G = in["group"].get<int64_t>();
  }
  json in, want;
  torch::Tensor mask, logp, old_logp, ref_logp, rewards;
  int64_t G = 0;
};

TEST_F(GrpoMath, GroupAdvantagesPerRewardScaling) {
  for (const char* name : {"group", "batch", "none"}) {
    SCOPED_TRACE(name);
    const auto a = grpo::group_advantages(rewards, G, grpo::parse_scale_rewards(name));
    expect_close(a.advantages, want["advantages"][name], 1e-8);
    expect_close(a.std_zero.to(torch::kFloat64), want["std_zero"][name]);
  }
  EXPECT_THROW(grpo::parse_scale_rewards("global"), rlhf::Error);
  EXPECT_THROW(grpo::group_advantages(rewards, 3, grpo::ScaleRewards::Group), rlhf::Error);  // 8 rows, groups of 3
}

TEST_F(GrpoMath, LossPerLossTypeWithK3) {
  const auto adv = tensor(want["advantages"]["group"]);
  const double lo = in["eps_low"], hi = in["eps_high"], beta = in["beta"];
  expect_close(grpo::grpo_token_loss(logp, old_logp, ref_logp, adv, mask, lo, hi, beta), want["token_loss"], 1e-9);
  for (const char* name : {"grpo", "dapo", "dr_grpo"}) {
    SCOPED_TRACE(name);
    const grpo::LossScale whole{.max_length = in["max_length"].get<int64_t>()};
    const auto l = grpo::grpo_loss(logp, old_logp, ref_logp, adv, mask, lo, hi, beta, grpo::parse_loss_type(name), whole);
    EXPECT_NEAR(l.loss.item<double>(), want["loss"][name].get<double>(), 1e-9);
    EXPECT_NEAR(l.clipfrac.item<double>(), want["clipfrac"].get<double>(), 1e-12);
    EXPECT_NEAR(l.kl_k3.item<double>(), want["kl_k3"].get<double>(), 1e-9);
    // Micro-batches of 3 and 5 rows, each its share of the batch's loss, add up to it.
    const grpo::LossScale scale{.sequences = 8, .tokens = mask.sum().item<double>(), .max_length = whole.max_length};
    double sum = 0;
    for (auto [r0, n] : {std::pair<int64_t, int64_t>{0, 3}, {3, 5}}) {
      auto rows = [&](const torch::Tensor& t) { return t.narrow(0, r0, n); };
      sum += grpo::grpo_loss(rows(logp), rows(old_logp), rows(ref_logp), rows(adv), rows(mask), lo, hi, beta,
                             grpo::parse_loss_type(name), scale)
                 .loss.item<double>();
    }
    EXPECT_NEAR(sum, want["loss"][name].get<double>(), 1e-9);
  }
  // beta 0: no KL term, and the reference is not needed.
  const auto no_kl = grpo::grpo_token_loss(logp, old_logp, torch::Tensor(), adv, mask, lo, hi, 0.0);
  const auto with_kl = grpo::grpo_token_loss(logp, old_logp, ref_logp, adv, mask, lo, hi, 0.0);
  EXPECT_TRUE(torch::allclose(no_kl, with_kl));
}

TEST_F(GrpoMath, RatioOneGivesMinusAdvantageAndGradient) {
  // With the old log-probs equal to the current (one iteration), every token's loss is -A and
  // the gradient of the loss w.r.t. logp is -A / count (dapo).
  const auto adv = tensor(want["advantages"]["group"]);
  auto lp = logp.clone().set_requires_grad(true);
  const auto l = grpo::grpo_loss(lp, logp, torch::Tensor(), adv, mask, 0.2, 0.2, 0.0, grpo::LossType::Dapo, {});
  l.loss.backward();
  const auto expected_grad = -adv.unsqueeze(1) * mask / mask.sum();
  EXPECT_TRUE(torch::allclose(lp.grad(), expected_grad, 1e-12, 1e-12));
  EXPECT_EQ(l.clipfrac.item<double>(), 0.0);
}

TEST_F(GrpoMath, RlooLeaveOneOutBaselineAndSequenceLoss) {
  const double beta = in["rloo_beta"], lo = in["eps_low"], hi = in["eps_high"];
  const auto r = grpo::rloo_rewards(rewards, old_logp, ref_logp, mask, beta);
  expect_close(r, want["rloo_rewards"], 1e-9);
  const auto a = grpo::rloo_advantages(r, G);
  expect_close(a, want["rloo_advantages"], 1e-9);
  const auto l = grpo::rloo_loss(logp, old_logp, a, mask, lo, hi);
  EXPECT_NEAR(l.loss.item<double>(), want["rloo_loss"].get<double>(), 1e-9);
  EXPECT_NEAR(l.clipfrac.item<double>(), want["rloo_clipfrac"].get<double>(), 1e-12);
  // Each group's advantages sum to 0 (the baseline is the others' mean).
  EXPECT_LT(a.view({-1, G}).sum(1).abs().max().item<double>(), 1e-9);
  EXPECT_THROW(grpo::rloo_advantages(r, 1), rlhf::Error);
}

}  // namespace

// ---------------------------------------------------------------------------------------
// train-policy --method grpo / rloo on a tiny byte-level model with a rule reward.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "model/policy_fixture.h"
#include "rlhf/train/policy_trainer.h"

namespace {

using rlhf::testing::Fixture;
using rlhf::testing::make_rule_fixture;
using rlhf::testing::read_jsonl;
namespace fs = std::filesystem;

// The rule: the completion holds a lowercase letter (about half of the untuned model's
// completions of 8 random bytes do).
const char* kRule = "regex=[a-z]";

rlhf::PolicyTrainConfig rule_config(const Fixture& f, const std::string& out, const std::string& method) {
  rlhf::PolicyTrainConfig c;
  c.prompt_dataset = f.prompts.string();
  c.large_model_reference = f.model.string();
  c.output = (f.dir / out).string();
  c.method = method;
  c.reward_rule = {kRule};
  c.dtype = "fp32";
  c.prompt_sequence_length = 32;
  c.target_sequence_length = 8;
  c.batch_size = 4;
  c.num_generations = 8;
  c.micro_batch_size = 32;
  c.lora.rank = 4;
  c.lora.targets = {"all-linear"};
  c.learning_rate_multiplier = 50;  // 5e-3: a tiny model moves fast
  c.eos_penalty = false;            // a random tiny model rarely says EOS
  c.checkpoint_every = 1000;
  c.threads = 1;  // tiny tensors: one thread is fastest
  c.progress = false;
  rlhf::apply_method_defaults(c, {});
  return c;
}

std::vector<json> step_rows(const fs::path& metrics) {
  std::vector<json> out;
  for (auto& r : read_jsonl(metrics))
    if (r.contains("reward") && !r.contains("eval/reward")) out.push_back(std::move(r));
  return out;
}

double mean_of(const std::vector<json>& rows, const std::string& tag, size_t from, size_t to) {
  double s = 0;
  for (size_t i = from; i < to; ++i) s += rows[i][tag].get<double>();
  return s / static_cast<double>(to - from);
}

void expect_rule_reward_rises(const std::string& method, double kl_coeff) {
  Fixture f = make_rule_fixture();
  auto c = rule_config(f, method, method);
  const int steps = 60;
  c.train_steps = steps;
  c.num_iterations = 2;
  c.kl_coeff = kl_coeff;
  const auto s = rlhf::train_policy(c);
  EXPECT_EQ(s.steps, steps);
  const auto rows = step_rows(f.dir / method / "logs/metrics.jsonl");
  ASSERT_EQ(rows.size(), static_cast<size_t>(steps));
  const double first = mean_of(rows, "reward", 0, 10), last = mean_of(rows, "reward", steps - 10, steps);
  EXPECT_GT(last - first, 0.15) << method << " reward " << first << " -> " << last;
  for (const auto& r : rows) EXPECT_LT(r["objective/kl_k3"].get<double>(), 20.0) << r.dump();  // nats per 8 tokens
  for (const std::string& k : std::vector<std::string>{"reward", "reward_std", "frac_reward_zero_std", std::string("rewards/") + kRule + "/mean",
                              "objective/kl_k3", "policy/clipfrac", "completions/mean_length", "loss/policy"})
    EXPECT_TRUE(rows.back().contains(k)) << k;
  EXPECT_FALSE(rows.back().contains("loss/value"));
  // The reward is the rule's (weight 1, no EOS penalty).
  EXPECT_DOUBLE_EQ(rows.back()["reward"].get<double>(), rows.back()[std::string("rewards/") + kRule + "/mean"].get<double>());
  // No value model: nothing saved for it.
  const fs::path out = f.dir / method;
  EXPECT_TRUE(fs::exists(out / "adapter_model.safetensors"));
  EXPECT_FALSE(fs::exists(out / "value_head.safetensors"));
  EXPECT_FALSE(fs::exists(out / "value"));
  const json policy = json::parse(rlhf::testing::read_text(out / "policy.json"));
  EXPECT_EQ(policy["training"]["method"], method) << policy.dump();
}

TEST(GrpoTraining, RuleRewardRisesWithKlBounded) { expect_rule_reward_rises("grpo", 0.04); }
TEST(RlooTraining, RuleRewardRisesWithKlBounded) { expect_rule_reward_rises("rloo", 0.05); }

TEST(PpoTraining, RuleRewardsWithoutARewardModel) {
  Fixture f = make_rule_fixture();
  auto c = rule_config(f, "ppo", "ppo");
  c.num_generations = 0;  // the method's
  c.train_steps = 2;
  c.micro_batch_size = 4;
  EXPECT_EQ(c.generations(), 1);
  EXPECT_EQ(c.kl_coeff, 0.1);  // ppo's beta
  rlhf::train_policy(c);
  const auto rows = step_rows(f.dir / "ppo/logs/metrics.jsonl");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_TRUE(rows[0].contains("loss/value"));
  EXPECT_FALSE(rows[0].contains("frac_reward_zero_std"));  // one completion per prompt: no groups
  EXPECT_TRUE(fs::exists(f.dir / "ppo/value_head.safetensors"));  // a fresh value model
  EXPECT_TRUE(fs::exists(f.dir / "ppo/value/adapter_model.safetensors"));
}

TEST(GrpoTraining, MethodDefaultsApplyUnlessGiven) {
  rlhf::PolicyTrainConfig c;
  c.method = "grpo";
  rlhf::apply_method_defaults(c, {});
  EXPECT_EQ(c.kl_coeff, 0.0);
  EXPECT_EQ(c.generations(), 8);
  c.method = "rloo";
  c.kl_coeff = 0.3;
  rlhf::apply_method_defaults(c, {"kl_coeff"});
  EXPECT_EQ(c.kl_coeff, 0.3);
  EXPECT_EQ(c.generations(), 2);
  rlhf::apply_method_defaults(c, {});
  EXPECT_EQ(c.kl_coeff, 0.05);
  c.epsilon_high = 0;
  EXPECT_EQ(c.clip_high(), c.cliprange);
}

TEST(GrpoTraining, OneIterationReusesTheFirstForwardWithRatioOne) {
  Fixture f = make_rule_fixture();
  auto c = rule_config(f, "ratio", "grpo");
  c.train_steps = 2;
  c.num_iterations = 2;  // the second pass sees an updated policy
  rlhf::train_policy(c);
  const auto rows = step_rows(f.dir / "ratio/logs/metrics.jsonl");
  ASSERT_EQ(rows.size(), 2u);
  for (const auto& r : rows) {
    EXPECT_LT(r["policy/approxkl_first"].get<double>(), 1e-12) << r.dump();
    EXPECT_EQ(r["policy/clipfrac_first"].get<double>(), 0.0);
  }
  EXPECT_GT(rows.back()["policy/approxkl"].get<double>(), 0.0);
}

// With several micro-batches and one pass, each micro-batch's update forward gives its own old
// log-probs: the ratio is 1 everywhere (nothing clipped), the same numbers as one micro-batch,
// and the KL and entropy are still measured.
TEST(GrpoTraining, OneIterationInMicroBatchesTakesTheOldLogprobsFromEachForward) {
  Fixture f = make_rule_fixture();
  auto whole = rule_config(f, "whole", "grpo");
  whole.train_steps = 3;
  whole.kl_coeff = 0.05;
  auto parts = whole;
  parts.output = (f.dir / "parts").string();
  parts.micro_batch_size = 8;  // 4 micro-batches of the 32 rollouts
  rlhf::train_policy(whole);
  rlhf::train_policy(parts);
  const auto a = step_rows(f.dir / "whole/logs/metrics.jsonl"), b = step_rows(f.dir / "parts/logs/metrics.jsonl");
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u);
  for (size_t i = 0; i < b.size(); ++i) {
    EXPECT_LT(b[i]["policy/approxkl"].get<double>(), 1e-12) << b[i].dump();
    EXPECT_EQ(b[i]["policy/clipfrac"].get<double>(), 0.0);
    for (const char* k : {"reward", "objective/kl", "objective/kl_k3", "objective/entropy", "policy/entropy", "grad_norm"})
      EXPECT_NEAR(b[i][k].get<double>(), a[i][k].get<double>(), 1e-4) << k << " at step " << i + 1;
  }
  EXPECT_GT(b.back()["objective/kl_k3"].get<double>(), 0.0);
}

std::string rule_cmd(const Fixture& f, const std::string& out, const std::string& method) {
  return rlhf::testing::cli() + " train-policy --method " + method + " --prompt-dataset " + f.prompts.string() +
         " --model " + f.model.string() + " --reward-rule '" + kRule + "' --output " + out +
         " --reinforcement-learning-train-steps 8 --batch-size 2 --num-generations 4 --micro-batch-size 4"
         " --prompt-sequence-length 32 --target-sequence-length 8 --lora-rank 4 --dtype fp32"
         " --reinforcement-learning-rate-multiplier 50 --kl-coeff 0.05 --no-eos-penalty --checkpoint-every 2 --threads 1"
         " --no-progress";
}

void expect_resume_after_kill_repeats(const std::string& method) {
  Fixture f = make_rule_fixture();
  ASSERT_EQ(rlhf::testing::run(rule_cmd(f, (f.dir / "whole").string(), method) + " 2>/dev/null"), 0);
  const fs::path killed = f.dir / "killed";
  pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", ("exec " + rule_cmd(f, killed.string(), method) + " 2>/dev/null").c_str(),
          (char*)nullptr);
    _exit(127);
  }
  bool killed_early = false;
  for (int i = 0; i < 20000; ++i) {
    if (fs::exists(killed / "checkpoints/step-0000004")) {
      killed_early = !fs::exists(killed / "policy.json");
      kill(pid, SIGKILL);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(killed_early) << "the run finished before it could be killed";
  ASSERT_EQ(rlhf::testing::run(rule_cmd(f, killed.string(), method) + " --resume 2>/dev/null"), 0);
  const auto a = step_rows(f.dir / "whole/logs/metrics.jsonl"), b = step_rows(killed / "logs/metrics.jsonl");
  ASSERT_EQ(a.size(), 8u);
  ASSERT_EQ(b.size(), 8u);
  for (const char* tag : {"reward", "objective/kl_k3", "loss/policy", "policy/clipfrac"})
    for (size_t i = 0; i < a.size(); ++i)
      EXPECT_NEAR(a[i][tag].get<double>(), b[i][tag].get<double>(), 1e-6) << method << " " << tag << " at step " << i + 1;
  EXPECT_EQ(rlhf::testing::read_text(f.dir / "whole/adapter_model.safetensors"),
            rlhf::testing::read_text(killed / "adapter_model.safetensors"));
}

TEST(GrpoTraining, ResumeAfterKillRepeatsTheRun) { expect_resume_after_kill_repeats("grpo"); }
TEST(RlooTraining, ResumeAfterKillRepeatsTheRun) { expect_resume_after_kill_repeats("rloo"); }

TEST(GrpoTraining, BadFlagsFailBeforeWorkNamingTheFlag) {
  Fixture f = make_rule_fixture();
  const std::string base = rlhf::testing::cli() + " train-policy --prompt-dataset " + f.prompts.string() +
                           " --model " + f.model.string() + " --output " + (f.dir / "out").string();
  auto fails_with = [&](const std::string& args, const std::vector<std::string>& words) {
    int rc = 0;
    const std::string out = rlhf::testing::capture(base + " " + args, &rc, true);
    EXPECT_NE(rc, 0) << args;
    for (const auto& w : words) EXPECT_NE(out.find(w), std::string::npos) << args << "\n" << out;
  };
  fails_with("--method grpo", {"no reward", "--reward-rule"});
  fails_with("--method sgd --reward-rule max-words=5", {"--method"});
  fails_with("--method grpo --num-generations 1 --reward-rule max-words=5", {"--num-generations"});
  fails_with("--method rloo --loss-type mean --reward-rule max-words=5", {"--loss-type"});
  fails_with("--method grpo --scale-rewards global --reward-rule max-words=5", {"--scale-rewards"});
  fails_with("--method grpo --epsilon-high -1 --reward-rule max-words=5", {"--epsilon-high"});
  fails_with("--method grpo --reward-rule max-words=5 --reward-weights 1,2,3", {"--reward-weights"});
  fails_with("--method grpo --reward-rule max-words=5 --reward-weights 1,x", {"--reward-weights"});
  fails_with("--method grpo --reward-rule max-words=5 --reward-weights 1,2", {"--reward-weights"});  // no reward model
  fails_with("--method grpo --reward-rule nonsense=1", {"--reward-rule", "nonsense"});
  // Every row is checked by every rule before any model is loaded (the model path is wrong).
  int rc = 0;
  const std::string out = rlhf::testing::capture(
      rlhf::testing::cli() + " train-policy --method grpo --reward-rule exact-match=solution --prompt-dataset " +
          f.prompts.string() + " --model " + (f.dir / "nothing").string() + " --output " + (f.dir / "out").string(),
      &rc, true);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("prompts.jsonl:1"), std::string::npos) << out;
  EXPECT_NE(out.find("solution"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(f.dir / "out"));
}

TEST(GrpoTraining, DefaultModelOnTheCourseSample) {
  const fs::path sample = rlhf::testing::source_dir() / "../shared/data/course/sample_prompt.jsonl";
  if (!fs::exists(sample)) GTEST_SKIP() << "../shared (the course data) is absent";
  if (!rlhf::testing::default_model_gguf()) GTEST_SKIP() << "default model absent: run scripts/setup";
  const fs::path out = rlhf::testing::scratch_dir() / "grpo";
  int rc = 0;
  const std::string log = rlhf::testing::capture(
      rlhf::testing::cli() + " train-policy --method grpo --reward-rule max-words=50 --prompt-dataset " +
          sample.string() + " --output " + out.string() +
          " --reinforcement-learning-train-steps 1 --batch-size 2 --num-generations 4 --micro-batch-size 8"
          " --prompt-sequence-length 64 --target-sequence-length 16 --threads 2 --no-progress",
      &rc, true);
  ASSERT_EQ(rc, 0) << log;
  const auto rows = step_rows(out / "logs/metrics.jsonl");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_TRUE(rows[0].contains("rewards/max-words=50/mean")) << rows[0].dump();
  EXPECT_TRUE(fs::exists(out / "policy.json"));
}

}  // namespace
