// RL tuning on tiny models: the roles share one base, rollouts are independent of batch
// composition, PPO raises a reward model's score with the KL kept in check, a killed run
// resumes to the same result, the first minibatch of every step sees the rollout policy
// (ratio 1), the missing-EOS penalty modes, the KL measured (or not logged) at kl_coeff 0, and
// non-finite gradients skipped.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <numeric>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "rlhf/train/policy_trainer.h"
#include "rlhf/train/reward_trainer.h"
#include "rlhf/train/tensor_file.h"
#include "rlhf/util/error.h"
#include "test_util.h"
#include "tiny_model.h"
#include "model/policy_fixture.h"

namespace {

using rlhf::testing::Fixture;
using rlhf::testing::make_fixture;
using rlhf::testing::read_jsonl;
namespace fs = std::filesystem;
using nlohmann::json;

rlhf::PolicyTrainConfig policy_config(const Fixture& f, const std::string& out) {
  rlhf::PolicyTrainConfig c;
  c.prompt_dataset = f.prompts.string();
  c.reward_model = f.rm.string();
  c.output = (f.dir / out).string();
  c.prompt_sequence_length = 32;
  c.target_sequence_length = 8;
  c.batch_size = 16;
  c.micro_batch_size = 8;
  c.lora.rank = 4;
  c.learning_rate_multiplier = 50;  // 5e-3: a tiny model moves fast
  c.eos_penalty = false;            // a random tiny model rarely says EOS
  c.checkpoint_every = 1000;
  c.progress = false;
  return c;
}

std::vector<double> series(const fs::path& metrics, const std::string& tag) {
  std::vector<double> out;
  for (const auto& r : read_jsonl(metrics))
    if (r.contains(tag) && !r.contains("eval/reward")) out.push_back(r[tag].get<double>());
  return out;
}

double mean_of(const std::vector<double>& v, size_t from, size_t to) {
  double s = 0;
  for (size_t i = from; i < to; ++i) s += v[i];
  return s / static_cast<double>(to - from);
}

TEST(PolicyRoles, ShareOneCopyOfTheBase) {
  Fixture f = make_fixture(2);
  auto cfg = policy_config(f, "unused");
  rlhf::PolicyRoles roles = rlhf::load_policy_roles(cfg);
  ASSERT_TRUE(roles.shared_base());
  const rlhf::Transformer& reward_net = roles.rm->reward->net();
  const rlhf::Transformer& policy_net = roles.models->net();
  EXPECT_EQ(&reward_net, &policy_net);
  EXPECT_EQ(reward_net.base_storage(), policy_net.base_storage());
  EXPECT_TRUE(policy_net.has_adapter("policy") && policy_net.has_adapter("value") && policy_net.has_adapter("reward"));
  EXPECT_TRUE(roles.models->value_from_reward());

  // Reference = the base with no adapter. A new policy adapter changes nothing, so the policy's
  // log-probs equal the reference's; the value model starts as the reward model, so its value
  // at the last response token is the reward model's score of the whole sequence.
  std::vector<int32_t> prompt = {10, 20, 30, 40, 50}, response = {60, 70, 80, 256};
  auto rb = rlhf::pack_rollouts({&prompt}, {&response}, 257, torch::kCPU);
  torch::NoGradGuard no_grad;
  auto pol = roles.models->logprobs(rb, true, 0.7), ref = roles.models->logprobs(rb, false, 0.7);
  EXPECT_TRUE(torch::equal(pol, ref));
  EXPECT_LT(pol.max().item<double>(), 0.0);
  // Value t is read where response token t is predicted: with the reward model's adapter and
  // head it is the reward model's score of the prompt and the first t response tokens.
  auto values = roles.models->values(rb);
  ASSERT_EQ(values.sizes(), (std::vector<int64_t>{1, 4}));
  for (int t : {0, 3}) {
    std::vector<int32_t> seq = prompt;
    seq.insert(seq.end(), response.begin(), response.begin() + t);
    auto sb = rlhf::pack_sequences({seq}, 257, false, torch::kCPU);
    EXPECT_NEAR(values[0][t].item<double>(), roles.rm->reward->score(sb).item<double>(), 1e-4) << t;
  }

  // With another base, the policy is loaded as a second model: its weights are its own.
  rlhf::testing::write_tiny_hf_model(f.dir / "other", 11);
  cfg.large_model_reference = (f.dir / "other").string();
  rlhf::PolicyRoles other = rlhf::load_policy_roles(cfg);
  EXPECT_FALSE(other.shared_base());
  EXPECT_NE(other.rm->reward->net().base_storage(), other.models->net().base_storage());
  // The reward model's adapter was trained against other weights: the value model starts fresh.
  EXPECT_FALSE(other.models->value_from_reward());
}

TEST(PolicyRoles, LogprobsAndValuesDoNotDependOnTheBatch) {
  Fixture f = make_fixture(2);
  rlhf::PolicyRoles roles = rlhf::load_policy_roles(policy_config(f, "unused"));
  // Give the policy adapter weights, so the policy differs from the reference.
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, t] : roles.models->policy().named_parameters())
      if (name.find("lora_B") != std::string::npos) t.normal_(0.0, 0.05);
  }
  std::vector<int32_t> p1 = {11, 12, 13}, r1 = {14, 15}, p2 = {21, 22, 23, 24, 25, 26, 27}, r2 = {28, 29, 30, 31, 256};
  torch::NoGradGuard no_grad;
  auto alone = rlhf::pack_rollouts({&p1}, {&r1}, 257, torch::kCPU);
  auto mixed = rlhf::pack_rollouts({&p2, &p1}, {&r2, &r1}, 257, torch::kCPU);
  EXPECT_EQ(mixed.prompt_width, 7);
  EXPECT_TRUE(torch::equal(mixed.mask[1], torch::tensor({1.0f, 1.0f, 0.0f, 0.0f, 0.0f})));
  auto la = roles.models->logprobs(alone, true, 0.7), lm = roles.models->logprobs(mixed, true, 0.7);
  EXPECT_LT((la[0] - lm[1].narrow(0, 0, 2)).abs().max().item<double>(), 1e-5);
  auto va = roles.models->values(alone), vm = roles.models->values(mixed);
  EXPECT_LT((va[0] - vm[1].narrow(0, 0, 2)).abs().max().item<double>(), 1e-5);
  auto ra = roles.models->logprobs(alone, false, 0.7);
  EXPECT_GT((la - ra).abs().max().item<double>(), 1e-4);  // the adapter is active for the policy only
}

TEST(PolicyTraining, RewardRisesWhileKlStaysBounded) {
  Fixture f = make_fixture(100);
  const int steps = 60;
  auto low = policy_config(f, "low_kl");
  low.train_steps = steps;
  low.kl_coeff = 0.02;
  low.eval_dataset = f.prompts.string();
  low.max_eval_prompts = 16;
  low.device = rlhf::testing::test_device();  // RLHF_TEST_DEVICE, the CPU when unset
  // fp32: bf16 rounding differs between AMX and AVX512-BF16 kernels, and a tiny model's
  // learning curve with it.
  if (low.device == "cpu") low.dtype = "fp32";
  auto s = rlhf::train_policy(low);
  EXPECT_EQ(s.steps, steps);
  const fs::path m = f.dir / "low_kl/logs/metrics.jsonl";
  auto reward = series(m, "reward"), kl = series(m, "objective/kl");
  ASSERT_EQ(reward.size(), static_cast<size_t>(steps));
  // Sampled rewards of 16 prompts a step are noisy: compare the first and last thirds. The
  // greedy evaluation on fixed prompts below is the sharper measure.
  const double first = mean_of(reward, 0, steps / 3), last = mean_of(reward, steps - steps / 3, steps);
  EXPECT_GT(last, first) << "reward " << first << " -> " << last;
  for (double k : kl) EXPECT_LT(k, 40.0);  // nats per sequence of 8 tokens

  // Every step logged the seed's names and the PPO diagnostics.
  auto rows = read_jsonl(m);
  while (!rows.empty() && !rows.back().contains("reward")) rows.pop_back();
  ASSERT_FALSE(rows.empty());
  for (const char* k : {"reward", "kl_loss", "rl_loss", "objective/kl", "objective/entropy", "objective/scores",
                        "policy/approxkl", "policy/clipfrac", "loss/policy", "loss/value", "val/clipfrac",
                        "response_length", "eos_fraction", "learning_rate", "time/generate", "time/score",
                        "time/train"})
    EXPECT_TRUE(rows.back().contains(k)) << k;
  // Evaluation before and after: greedy completions, scored, and better after.
  auto before = read_jsonl(f.dir / "low_kl/eval/step-0000000.jsonl");
  auto after = read_jsonl(f.dir / "low_kl/eval/step-0000060.jsonl");
  ASSERT_EQ(before.size(), 16u);
  ASSERT_EQ(after.size(), 16u);
  double rb = 0, ra = 0;
  for (size_t i = 0; i < 16; ++i) rb += before[i]["reward"].get<double>(), ra += after[i]["reward"].get<double>();
  EXPECT_GT((ra - rb) / 16, 0.3) << "greedy evaluation reward " << rb / 16 << " -> " << ra / 16;
  EXPECT_EQ(after[3]["input_text"], before[3]["input_text"]);
  for (const char* file : {"policy.json", "adapter_model.safetensors", "adapter_config.json", "value_head.safetensors",
                           "value/adapter_model.safetensors", "summary.json"})
    EXPECT_TRUE(fs::exists(f.dir / "low_kl" / file)) << file;

  // A stronger KL penalty keeps the policy closer to the reference.
  auto high = policy_config(f, "high_kl");
  high.train_steps = steps;
  high.kl_coeff = 1.0;
  high.device = low.device;
  high.dtype = low.dtype;
  rlhf::train_policy(high);
  auto kl_high = series(f.dir / "high_kl/logs/metrics.jsonl", "objective/kl");
  EXPECT_LT(mean_of(kl_high, steps - 10, steps), mean_of(kl, steps - 10, steps));
}

std::string train_cmd(const Fixture& f, const std::string& out) {
  return rlhf::testing::cli() + " train-policy --prompt-dataset " + f.prompts.string() + " --reward-model " +
         f.rm.string() + " --output " + out +
         " --reinforcement-learning-train-steps 12 --batch-size 8 --micro-batch-size 4 --prompt-sequence-length 32"
         " --target-sequence-length 8 --lora-rank 4 --reinforcement-learning-rate-multiplier 50 --no-eos-penalty"
         " --checkpoint-every 2 --threads 1 --no-progress";
}

TEST(PolicyTraining, ResumeAfterKillRepeatsTheRun) {
  Fixture f = make_fixture(4);
  ASSERT_EQ(rlhf::testing::run(train_cmd(f, (f.dir / "whole").string()) + " 2>/dev/null"), 0);
  const fs::path killed = f.dir / "killed";
  pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", ("exec " + train_cmd(f, killed.string()) + " 2>/dev/null").c_str(), (char*)nullptr);
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
  int rc = 0;
  std::string out = rlhf::testing::capture(train_cmd(f, killed.string()), &rc, true);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("holds an earlier"), std::string::npos) << out;
  ASSERT_EQ(rlhf::testing::run(train_cmd(f, killed.string()) + " --resume 2>/dev/null"), 0);

  for (const char* tag : {"reward", "objective/kl", "loss/policy", "loss/value", "policy/clipfrac"}) {
    auto a = series(f.dir / "whole/logs/metrics.jsonl", tag), b = series(killed / "logs/metrics.jsonl", tag);
    ASSERT_EQ(a.size(), 12u) << tag;
    ASSERT_EQ(b.size(), 12u) << tag;
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-6) << tag << " at step " << i + 1;
  }
  EXPECT_EQ(rlhf::testing::read_text(f.dir / "whole/adapter_model.safetensors"),
            rlhf::testing::read_text(killed / "adapter_model.safetensors"));
}

TEST(PolicyTraining, BadInputFailsBeforeTraining) {
  auto dir = rlhf::testing::scratch_dir();
  std::ofstream(dir / "prompts.jsonl") << "{\"input_text\": \"hi\"}\n{\"input_text\": 3}\n";
  int rc = 0;
  std::string out = rlhf::testing::capture(rlhf::testing::cli() + " train-policy --prompt-dataset " +
                                               (dir / "prompts.jsonl").string() + " --reward-model " +
                                               (dir / "nothing").string() + " --output " + (dir / "out").string(),
                                           &rc, true);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("prompts.jsonl:2"), std::string::npos) << out;
  EXPECT_NE(out.find("input_text"), std::string::npos) << out;
  std::ofstream(dir / "prompts.jsonl") << "{\"input_text\": \"hi\"}\n";
  out = rlhf::testing::capture(rlhf::testing::cli() + " train-policy --prompt-dataset " +
                                   (dir / "prompts.jsonl").string() + " --reward-model " + (dir / "nothing").string() +
                                   " --output " + (dir / "out").string(),
                               &rc, true);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("nothing: no such folder"), std::string::npos) << out;
  out = rlhf::testing::capture(rlhf::testing::cli() + " train-policy --prompt-dataset x --reward-model y --output z"
                                                      " --reinforcement-learning-train-steps 3 --reinforcement-learning-epochs 1",
                               &rc, true);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("not both"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir / "out"));
}

// One row of metrics.jsonl per training step (evaluation rows left out).
std::vector<json> step_rows(const fs::path& metrics) {
  std::vector<json> out;
  for (auto& r : read_jsonl(metrics))
    if (r.contains("reward") && !r.contains("eval/reward")) out.push_back(std::move(r));
  return out;
}

// At the first minibatch of every step the policy is the one that sampled the rollouts, and
// its log-probs come from the same numeric path with and without gradients: the ratio is 1.
void expect_ratio_one_at_the_first_minibatch(const std::string& dtype) {
  Fixture f = make_fixture(4);
  auto c = policy_config(f, "ratio_" + dtype);
  c.dtype = dtype;
  c.train_steps = 3;
  c.batch_size = 8;
  c.micro_batch_size = 2;  // micro-batches differ between scoring (all 8 rollouts) and the update
  c.num_mini_batches = 2;
  c.ppo_epochs = 2;
  rlhf::train_policy(c);
  auto rows = step_rows(f.dir / ("ratio_" + dtype) / "logs/metrics.jsonl");
  ASSERT_EQ(rows.size(), 3u);
  for (const auto& r : rows) {
    ASSERT_TRUE(r.contains("policy/approxkl_first")) << r.dump();
    EXPECT_LT(r["policy/approxkl_first"].get<double>(), 1e-9) << dtype << " step " << r["step"];
    EXPECT_EQ(r["policy/clipfrac_first"].get<double>(), 0.0) << dtype << " step " << r["step"];
  }
  // Later minibatches see an updated policy: the mean over all of them is not 0.
  EXPECT_GT(rows.back()["policy/approxkl"].get<double>(), 0.0);
}

TEST(PolicyTraining, FirstMinibatchHasRatioOneInFp32) { expect_ratio_one_at_the_first_minibatch("fp32"); }

// With one minibatch of one micro-batch, the first update's own forward gives the old
// log-probs and values (no forward of their own): the first ratio is exactly 1, in both value
// layouts, and the run ends where the recomputing one (two micro-batches) does.
TEST(PolicyTraining, FirstUpdatesForwardGivesTheOldLogprobs) {
  Fixture f = make_fixture(4);
  for (const std::string layout : {"separate", "shared"}) {
    auto reuse = policy_config(f, "reuse_" + layout);
    reuse.train_steps = 3;
    reuse.batch_size = 8;
    reuse.micro_batch_size = 8;
    reuse.value_model = layout;
    reuse.dtype = "fp32";  // two micro-batch shapes give the same numbers only in fp32
    auto recompute = reuse;
    recompute.output = (f.dir / ("recompute_" + layout)).string();
    recompute.micro_batch_size = 4;
    rlhf::train_policy(reuse);
    rlhf::train_policy(recompute);
    auto a = step_rows(f.dir / ("reuse_" + layout) / "logs/metrics.jsonl");
    auto b = step_rows(f.dir / ("recompute_" + layout) / "logs/metrics.jsonl");
    ASSERT_EQ(a.size(), 3u);
    ASSERT_EQ(b.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(a[i]["policy/approxkl_first"].get<double>(), 0.0) << layout << " step " << i + 1;
      EXPECT_EQ(a[i]["policy/clipfrac_first"].get<double>(), 0.0) << layout << " step " << i + 1;
      for (const char* tag : {"reward", "loss/policy", "loss/value", "val/mean", "objective/entropy"})
        EXPECT_NEAR(a[i][tag].get<double>(), b[i][tag].get<double>(), 1e-4 * (1 + std::abs(b[i][tag].get<double>())))
            << layout << " " << tag << " step " << i + 1;
    }
    auto wa = rlhf::load_tensors((f.dir / ("reuse_" + layout) / "adapter_model.safetensors").string(), torch::kCPU);
    auto wb = rlhf::load_tensors((f.dir / ("recompute_" + layout) / "adapter_model.safetensors").string(), torch::kCPU);
    ASSERT_EQ(wa.size(), wb.size());
    for (const auto& [name, t] : wa) EXPECT_TRUE(torch::allclose(t, wb.at(name), 1e-3, 1e-5)) << layout << " " << name;
    // The shared layout keeps only a head for the value.
    EXPECT_EQ(fs::exists(f.dir / ("reuse_" + layout) / "value"), layout == "separate");
    EXPECT_TRUE(fs::exists(f.dir / ("reuse_" + layout) / "value_head.safetensors"));
  }
}

// Scores are standardised by the untuned policy's completions: each evaluation row's reward is
// (score - mean) / std with the mean and std the summary records (no EOS penalty here).
TEST(PolicyTraining, ScoresAreStandardisedByTheUntunedPolicysCompletions) {
  Fixture f = make_fixture(4);
  auto c = policy_config(f, "norm");
  c.train_steps = 1;
  c.batch_size = 8;
  c.reward_normalization_samples = 16;
  c.eval_dataset = f.prompts.string();
  c.max_eval_prompts = 8;
  rlhf::train_policy(c);
  auto summary = json::parse(rlhf::testing::read_text(f.dir / "norm/summary.json"));
  const double mean = summary["reward_normalization"]["mean"], sd = summary["reward_normalization"]["std"];
  EXPECT_EQ(summary["reward_normalization"]["samples"], 16);
  EXPECT_GT(sd, 0.0);
  EXPECT_NE(sd, 1.0);
  auto rows = read_jsonl(f.dir / "norm/eval/step-0000000.jsonl");
  ASSERT_EQ(rows.size(), 8u);
  for (const auto& r : rows)
    EXPECT_NEAR(r["reward"].get<double>(), (r["score"].get<double>() - mean) / sd, 1e-4) << r.dump();
  auto steps = step_rows(f.dir / "norm/logs/metrics.jsonl");
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_NEAR(steps[0]["objective/score_mean_reference"].get<double>(), mean, 1e-9);
  // On samples of the untuned policy, the standardised reward averages near 0.
  EXPECT_LT(std::abs(steps[0]["reward"].get<double>()), 2.0);
}
TEST(PolicyTraining, FirstMinibatchHasRatioOneInBf16) { expect_ratio_one_at_the_first_minibatch("bf16"); }

// The missing-EOS penalty goes through ppo::apply_eos_penalty in both modes: the evaluation
// rows of a completion cut by the length hold the penalised reward next to the raw score.
TEST(PolicyTraining, MissingEosPenaltyReplacesOrSubtracts) {
  Fixture f = make_fixture(4);
  for (const std::string mode : {"replace", "subtract"}) {
    auto c = policy_config(f, "eos_" + mode);
    c.train_steps = 1;
    c.batch_size = 8;
    c.eos_penalty = true;
    c.missing_eos_penalty = -2.5;
    c.eos_penalty_mode = mode;
    c.reward_normalization_samples = 0;  // raw scores: the penalty alone changes them
    c.eval_dataset = f.prompts.string();
    c.max_eval_prompts = 16;
    rlhf::train_policy(c);
    auto rows = read_jsonl(f.dir / ("eos_" + mode) / "eval/step-0000000.jsonl");
    ASSERT_EQ(rows.size(), 16u);
    int cut = 0;
    for (const auto& r : rows) {
      const double reward = r["reward"], score = r["score"];
      if (r["stopped"].get<bool>()) {
        EXPECT_EQ(reward, score);
      } else {
        ++cut;
        EXPECT_NEAR(reward, mode == "replace" ? -2.5 : score - 2.5, 1e-5) << mode << ": " << r.dump();
      }
    }
    EXPECT_GT(cut, 0) << "a random tiny model is expected to run past the length";
  }
  auto bad = policy_config(f, "eos_bad");
  bad.eos_penalty_mode = "halve";
  try {
    rlhf::train_policy(bad);
    ADD_FAILURE() << "an unknown mode was accepted";
  } catch (const rlhf::Error& e) {
    EXPECT_NE(std::string(e.what()).find("--eos-penalty-mode"), std::string::npos) << e.what();
  }
}

// With kl_coeff 0 the reference runs only when the KL is measured; unmeasured, objective/kl is
// not logged at all (never a 0 that reads as "no drift"). Measuring changes no result.
TEST(PolicyTraining, KlIsMeasuredOrNotLoggedAtZeroCoefficient) {
  Fixture f = make_fixture(4);
  auto plain = policy_config(f, "kl_off");
  plain.train_steps = 4;
  plain.batch_size = 8;
  plain.kl_coeff = 0;
  auto measured = plain;
  measured.output = (f.dir / "kl_measured").string();
  measured.measure_kl = true;
  auto s_plain = rlhf::train_policy(plain);
  auto s_measured = rlhf::train_policy(measured);

  auto off = step_rows(f.dir / "kl_off/logs/metrics.jsonl"), on = step_rows(f.dir / "kl_measured/logs/metrics.jsonl");
  ASSERT_EQ(off.size(), 4u);
  ASSERT_EQ(on.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_FALSE(off[i].contains("objective/kl")) << off[i].dump();
    ASSERT_TRUE(on[i].contains("objective/kl"));
    EXPECT_EQ(off[i]["reward"], on[i]["reward"]) << "step " << i + 1;
    EXPECT_EQ(off[i]["loss/policy"], on[i]["loss/policy"]) << "step " << i + 1;
  }
  // The first step's rollouts come from the untuned policy (KL 0); later ones have drifted.
  EXPECT_NEAR(on[0]["objective/kl"].get<double>(), 0.0, 1e-6);
  EXPECT_GT(std::abs(on[3]["objective/kl"].get<double>()), 1e-4);
  // k3 is never negative and is 0 where k1 is; the headline (final_kl_k3) is the last step's.
  for (size_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(on[i].contains("objective/kl_k3"));
    EXPECT_GE(on[i]["objective/kl_k3"].get<double>(), 0.0) << "step " << i + 1;
    EXPECT_FALSE(off[i].contains("objective/kl_k3"));
  }
  EXPECT_NEAR(on[0]["objective/kl_k3"].get<double>(), 0.0, 1e-6);
  EXPECT_GT(on[3]["objective/kl_k3"].get<double>(), 0.0);
  EXPECT_TRUE(std::isnan(s_plain.final_kl_k1));
  EXPECT_TRUE(std::isnan(s_plain.final_kl_k3));
  EXPECT_EQ(s_measured.final_kl_k1, on[3]["objective/kl"].get<double>());
  EXPECT_EQ(s_measured.final_kl_k3, on[3]["objective/kl_k3"].get<double>());
  auto summary = json::parse(rlhf::testing::read_text(f.dir / "kl_off/summary.json"));
  EXPECT_TRUE(summary["final/kl_k3"].is_null());
  EXPECT_TRUE(summary["final/kl_k1"].is_null());
  EXPECT_EQ(rlhf::testing::read_text(f.dir / "kl_off/adapter_model.safetensors"),
            rlhf::testing::read_text(f.dir / "kl_measured/adapter_model.safetensors"));
}

// A reward model whose head scores NaN makes every gradient NaN: each optimizer step is
// skipped (the adapter and the optimizer's moments stay as they started), counted in
// train/skipped_steps, and max_skipped_steps skips in a row stop the run with an error.
TEST(PolicyTraining, NonFiniteGradientsAreSkippedThenStopTheRun) {
  Fixture f = make_fixture(4);
  const std::string head = (f.rm / "reward_head.safetensors").string();
  auto tensors = rlhf::load_tensors(head);
  tensors.at("score.bias").fill_(std::numeric_limits<float>::quiet_NaN());
  rlhf::save_tensors(head, tensors);

  auto c = policy_config(f, "nan_tolerated");
  c.train_steps = 2;
  c.batch_size = 8;
  c.ppo_epochs = 2;
  c.num_mini_batches = 2;  // 4 optimizer steps per PPO step, all skipped
  c.max_skipped_steps = 100;
  rlhf::train_policy(c);
  auto rows = step_rows(f.dir / "nan_tolerated/logs/metrics.jsonl");
  ASSERT_EQ(rows.size(), 2u);
  for (const auto& r : rows) {
    EXPECT_EQ(r["train/skipped_steps"].get<double>(), 4.0);
    EXPECT_FALSE(r.contains("grad_norm")) << r.dump();
  }
  const fs::path ckpt = f.dir / "nan_tolerated/checkpoints/step-0000002";
  auto state = json::parse(rlhf::testing::read_text(ckpt / "trainer_state.json"));
  EXPECT_EQ(state["optimizer_steps"], 0);
  for (const auto& [name, t] : rlhf::load_tensors((ckpt / "optimizer.safetensors").string()))
    EXPECT_EQ(t.abs().max().item<float>(), 0.0f) << name;
  for (const auto& [name, t] : rlhf::load_tensors((f.dir / "nan_tolerated/adapter_model.safetensors").string())) {
    EXPECT_TRUE(torch::isfinite(t).all().item<bool>()) << name;
    if (name.find("lora_B") != std::string::npos) EXPECT_EQ(t.abs().max().item<float>(), 0.0f) << name;
  }

  auto strict = policy_config(f, "nan_stopped");
  strict.train_steps = 3;
  strict.batch_size = 8;
  strict.ppo_epochs = 2;
  strict.num_mini_batches = 2;
  strict.max_skipped_steps = 5;  // the 5th skip falls in step 2
  try {
    rlhf::train_policy(strict);
    ADD_FAILURE() << "the run went on with non-finite gradients";
  } catch (const rlhf::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("5 consecutive optimizer steps had a non-finite gradient norm"), std::string::npos) << what;
    EXPECT_NE(what.find("step 2"), std::string::npos) << what;
  }
  EXPECT_FALSE(fs::exists(f.dir / "nan_stopped/policy.json"));
}

}  // namespace
