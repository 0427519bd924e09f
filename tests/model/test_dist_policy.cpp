// `rlhf train-policy` data-parallel: 2 ranks (rollouts in contiguous shares, scoring and update
// micro-batches in turn, gradients and the batch's tensors summed) match 1 process with the
// same global batch and seed, step by step and in the final adapters; a run checkpointed on 2
// ranks resumes on 1 process to the same end.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "model/policy_fixture.h"
#include "model/tensor_compare.h"
#include "rlhf/train/tensor_file.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using rlhf::testing::capture;

// `launch` starts the binary: cli() alone, with --nproc-per-node, or under torchrun.
std::string policy_cmd(const rlhf::testing::Fixture& f, const std::string& launch, const std::string& out, int steps) {
  return launch + " train-policy --prompt-dataset " + f.prompts.string() +
         " --reward-model " + f.rm.string() + " --output " + (f.dir / out).string() +
         " --eval-dataset " + f.prompts.string() + " --max-eval-prompts 5 --eval-every 2" +
         " --reinforcement-learning-train-steps " + std::to_string(steps) +
         " --batch-size 8 --micro-batch-size 2 --num-mini-batches 2 --ppo-epochs 2 --prompt-sequence-length 32"
         " --target-sequence-length 8 --lora-rank 4 --reinforcement-learning-rate-multiplier 50 --no-eos-penalty"
         " --kl-coeff 0.1 --checkpoint-every 2 --threads 1 --no-progress";
}

std::string one_process() { return rlhf::testing::cli(); }
std::string two_ranks() { return rlhf::testing::cli() + " --nproc-per-node 2"; }

// tag -> step -> value, from a run's metrics.jsonl (training rows only).
std::map<std::string, std::map<int64_t, double>> metrics(const fs::path& out) {
  std::map<std::string, std::map<int64_t, double>> m;
  for (const auto& r : rlhf::testing::read_jsonl(out / "logs" / "metrics.jsonl"))
    for (const auto& [tag, v] : r.items())
      if (tag != "step" && v.is_number()) m[tag][r["step"].get<int64_t>()] = v.get<double>();
  return m;
}

void expect_same_run(const fs::path& a, const fs::path& b, int steps) {
  const auto ma = metrics(a), mb = metrics(b);
  for (const std::string tag : {"reward", "objective/kl", "objective/scores", "loss/policy", "loss/value",
                                "policy/approxkl", "policy/clipfrac", "grad_norm", "response_length"}) {
    ASSERT_TRUE(ma.count(tag) && mb.count(tag)) << tag;
    ASSERT_EQ(ma.at(tag).size(), static_cast<size_t>(steps)) << tag;
    ASSERT_EQ(mb.at(tag).size(), static_cast<size_t>(steps)) << tag;
    for (const auto& [step, v] : ma.at(tag)) EXPECT_NEAR(mb.at(tag).at(step), v, 1e-4) << tag << " at step " << step;
  }
  EXPECT_LT(rlhf::testing::max_tensor_difference(a, b, "adapter_model.safetensors"), 1e-4);
  EXPECT_LT(rlhf::testing::max_tensor_difference(a, b, "value/adapter_model.safetensors"), 1e-4);
  EXPECT_LT(rlhf::testing::max_tensor_difference(a, b, "value_head.safetensors"), 1e-4);
}

TEST(DistPolicy, TwoRanksMatchOneProcess) {
  const auto f = rlhf::testing::make_fixture(4);
  const int steps = 4;
  int rc = 0;
  std::string log = capture(policy_cmd(f, one_process(), "one", steps), &rc, true);
  ASSERT_EQ(rc, 0) << log;
  log = capture(policy_cmd(f, two_ranks(), "two", steps), &rc, true);
  ASSERT_EQ(rc, 0) << log;
  EXPECT_NE(log.find("data-parallel over 2 ranks: 4 rollouts each, 2 micro-batch(es) per minibatch"),
            std::string::npos)
      << log;
  expect_same_run(f.dir / "one", f.dir / "two", steps);

  // Rank 0 alone wrote: one log, one set of checkpoints and evaluations, the same completions.
  const auto two = metrics(f.dir / "two");
  EXPECT_GT(two.at("time/collectives").size(), 0u);
  EXPECT_GT(two.at("dist/allreduce_bytes").begin()->second, 0);
  EXPECT_EQ(metrics(f.dir / "one").count("time/collectives"), 0u);
  for (const char* eval : {"step-0000000.jsonl", "step-0000002.jsonl", "step-0000004.jsonl"}) {
    const auto a = rlhf::testing::read_jsonl(f.dir / "one" / "eval" / eval);
    const auto b = rlhf::testing::read_jsonl(f.dir / "two" / "eval" / eval);
    ASSERT_EQ(a.size(), 5u) << eval;
    ASSERT_EQ(b.size(), a.size()) << eval;
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(b[i]["prediction"], a[i]["prediction"]) << eval << " row " << i;
      EXPECT_NEAR(b[i]["reward"].get<double>(), a[i]["reward"].get<double>(), 1e-4) << eval << " row " << i;
    }
  }
  EXPECT_TRUE(fs::exists(f.dir / "two" / "policy.json"));

  const fs::path torchrun = rlhf::testing::source_dir() / ".venv/bin/torchrun";
  if (!fs::exists(torchrun)) GTEST_SKIP() << "torchrun absent (scripts/setup --dev): the torchrun launch is not checked";
  log = capture(policy_cmd(f, torchrun.string() + " --nproc-per-node 2 --master-port 29711 --no-python " +
                                  rlhf::testing::cli(), "torchrun", steps),
                &rc, true);
  ASSERT_EQ(rc, 0) << log;
  expect_same_run(f.dir / "one", f.dir / "torchrun", steps);
}

// A 2-rank run's checkpoint at step 2 (the later files removed, as if killed right after it)
// resumes on 1 process: the data order and the rollout seeds depend on the global step and
// sample only, so it ends where the uninterrupted 1-process run ends.
TEST(DistPolicy, CheckpointOfTwoRanksResumesOnOneProcess) {
  const auto f = rlhf::testing::make_fixture(4);
  const int steps = 4;
  int rc = 0;
  std::string log = capture(policy_cmd(f, one_process(), "whole", steps), &rc, true);
  ASSERT_EQ(rc, 0) << log;
  log = capture(policy_cmd(f, two_ranks(), "cut", steps), &rc, true);
  ASSERT_EQ(rc, 0) << log;
  const fs::path cut = f.dir / "cut";
  for (const char* later : {"policy.json", "summary.json", "adapter_model.safetensors", "adapter_config.json",
                            "value_head.safetensors", "value", "checkpoints/step-0000004", "eval/step-0000004.jsonl"})
    fs::remove_all(cut / later);
  ASSERT_TRUE(fs::exists(cut / "checkpoints" / "step-0000002" / "trainer_state.json"));
  log = capture(policy_cmd(f, one_process(), "cut", steps) + " --resume", &rc, true);
  ASSERT_EQ(rc, 0) << log;
  EXPECT_NE(log.find("resuming from"), std::string::npos) << log;
  expect_same_run(f.dir / "whole", cut, steps);
}

}  // namespace

#include <thread>

#include "rlhf/model/model.h"
#include "rlhf/util/error.h"

namespace {

// Where a rank runs: "cuda" is the rank's own GPU; threads default to the cores shared among
// the machine's ranks.
TEST(DistPlacement, CudaIsTheLocalRanksGpuAndCoresAreShared) {
  rlhf::DistEnv alone;
  rlhf::DistEnv job;
  job.world_size = 4, job.rank = 3, job.local_rank = 1, job.local_world_size = 2;
  ASSERT_TRUE(job.distributed());
  EXPECT_EQ(rlhf::rank_device_name("cuda", alone), "cuda");
  EXPECT_EQ(rlhf::rank_device_name("cuda", job), "cuda:1");
  EXPECT_EQ(rlhf::rank_device_name("cuda:0", job), "cuda:0");  // asked by number: as it is
  EXPECT_EQ(rlhf::rank_device_name("cpu", job), "cpu");
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  EXPECT_EQ(rlhf::default_threads(job), std::max(1, cores / 2));
  job.local_world_size = 4 * cores;  // more ranks than cores: one thread each
  EXPECT_EQ(rlhf::default_threads(job), 1);
#ifndef RLHF_CUDA
  try {
    rlhf::parse_device("cuda");
    FAIL() << "a CPU build took --device cuda";
  } catch (const rlhf::Error& e) {
    EXPECT_NE(std::string(e.what()).find("this is a CPU build"), std::string::npos) << e.what();
  }
#endif
}

}  // namespace

#include "rlhf/train/trainer_run.h"

namespace {

// Work units go to the ranks largest first, each to the least-loaded rank: the loads end close.
TEST(DistPlacement, MicroBatchesAreSharedOutBySize) {
  const std::vector<double> costs = {1, 2, 3, 4, 5, 6, 7, 8};  // sorted by length, as micro-batches are
  const std::vector<int> owner = rlhf::balance_ranks(costs, 2);
  double load[2] = {0, 0};
  for (size_t k = 0; k < costs.size(); ++k) load[owner[k]] += costs[k];
  EXPECT_EQ(load[0], 18);  // 8 + 5 + 4 + 1, against 7 + 6 + 3 + 2 (k mod 2 would give 16 and 20)
  EXPECT_EQ(load[1], 18);
  EXPECT_EQ(rlhf::balance_ranks(costs, 2), owner);  // a pure function: every rank agrees
  EXPECT_EQ(rlhf::balance_ranks({3, 3, 3}, 4), (std::vector<int>{0, 1, 2}));  // ties: lower rank, earlier unit
  EXPECT_EQ(rlhf::balance_ranks({5, 1}, 1), (std::vector<int>{0, 0}));
}

}  // namespace

namespace {

// GRPO and RLOO on 2 ranks take the one-process run's steps: a prompt's group of completions
// is shared out like any rollouts, and the group statistics are the global batch's.
TEST(DistPolicy, GrpoAndRlooOnTwoRanksMatchOneProcess) {
  const auto f = rlhf::testing::make_fixture(4);
  const int steps = 3;
  // grpo with one iteration: each micro-batch's update forward gives its old log-probs.
  for (const auto& [method, iterations] : std::vector<std::pair<std::string, std::string>>{
           {"grpo", "2"}, {"grpo", "1"}, {"rloo", "2"}}) {
    const std::string run = method + iterations;
    auto cmd = [&](const std::string& launch, const std::string& out) {
      return launch + " train-policy --method " + method + " --prompt-dataset " + f.prompts.string() +
             " --reward-model " + f.rm.string() + " --reward-rule prefer-shorter --reward-weights 1,0.5 --output " +
             (f.dir / out).string() + " --reinforcement-learning-train-steps " + std::to_string(steps) +
             " --batch-size 4 --num-generations 4 --micro-batch-size 4 --num-iterations " + iterations + " --kl-coeff 0.1"
             " --prompt-sequence-length 32 --target-sequence-length 8 --lora-rank 4"
             " --reinforcement-learning-rate-multiplier 50 --no-eos-penalty --checkpoint-every 2 --threads 1"
             " --no-progress";
    };
    int rc = 0;
    std::string log = capture(cmd(one_process(), run + "-one"), &rc, true);
    ASSERT_EQ(rc, 0) << log;
    log = capture(cmd(two_ranks(), run + "-two"), &rc, true);
    ASSERT_EQ(rc, 0) << log;
    EXPECT_NE(log.find("data-parallel over 2 ranks"), std::string::npos) << log;
    const auto a = metrics(f.dir / (run + "-one")), b = metrics(f.dir / (run + "-two"));
    for (const std::string tag : {"reward", "objective/kl", "loss/policy", "policy/clipfrac", "grad_norm",
                                  "response_length"}) {
      ASSERT_TRUE(a.count(tag) && b.count(tag)) << run << " " << tag;
      ASSERT_EQ(a.at(tag).size(), static_cast<size_t>(steps)) << run << " " << tag;
      for (const auto& [step, v] : a.at(tag))
        EXPECT_NEAR(b.at(tag).at(step), v, 1e-4) << run << " " << tag << " at step " << step;
    }
    EXPECT_LT(rlhf::testing::max_tensor_difference(f.dir / (run + "-one"), f.dir / (run + "-two"),
                                                   "adapter_model.safetensors"),
              1e-4)
        << run;
  }
}

}  // namespace
