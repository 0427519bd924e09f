// `rlhf pipeline run` end to end on a tiny model made here: every stage runs and writes its
// manifest; a second run is fully cached; a changed parameter re-runs only what is downstream
// of it; a run killed in the middle of RL tuning resumes and ends where an uninterrupted run
// ends; status tells each stage's state.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "rlhf/pipeline/run_dir.h"
#include "test_util.h"
#include "model/pipeline_fixture.h"
#include "tiny_model.h"

namespace rlhf::pipeline {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using rlhf::testing::capture;
using rlhf::testing::cli;
using rlhf::testing::outcomes;
using rlhf::testing::run_cmd;
using rlhf::testing::read_text;

const std::vector<std::string>& kStages = rlhf::testing::kPipelineStages;

// A tiny model, prompts, and a spec with every stage (RLAIF by rule, AutoSxS by the model).
fs::path write_project(const fs::path& dir, const std::string& extra = "") {
  rlhf::testing::write_pipeline_model_and_prompts(dir);
  std::ofstream(dir / "spec.yaml") << R"(rlaif:
  prompt_dataset: prompts.jsonl
  rule: prefer-shorter
  temperatures: [0.8, 1.3]
prompt_dataset: prompts.jsonl
eval_dataset: prompts.jsonl
large_model_reference: model
prompt_sequence_length: 32
target_sequence_length: 8
reward_model_epochs: 1
reinforcement_learning_train_steps: 6
reward_model_learning_rate_multiplier: 10
reinforcement_learning_rate_multiplier: 10
autosxs:
  explanation_tokens: 2
advanced:
  reward_model_batch_size: 4
  reward_model_micro_batch_size: 4
  reinforcement_learning_batch_size: 4
  reinforcement_learning_micro_batch_size: 2
  checkpoint_every: 2
  inference_batch_size: 4
  seed: 3
  threads: 1
)" << extra;
  return dir / "spec.yaml";
}


TEST(Pipeline, RunsEveryStageThenCachesThenRerunsDownstreamOfAChange) {
  auto dir = rlhf::testing::scratch_dir();
  fs::path spec = write_project(dir);
  const fs::path run = dir / "run";
  int status = 0;
  std::string log = capture(run_cmd(spec, run), &status, true);
  ASSERT_EQ(status, 0) << log;
  auto first = outcomes(log);
  for (const auto& s : kStages) {
    EXPECT_EQ(first[s], "running") << s << "\n" << log;
    auto m = read_manifest(run.string(), s);
    ASSERT_TRUE(m.has_value()) << s;
    EXPECT_EQ(m->state, "done") << s;
    EXPECT_FALSE(m->key.empty());
    EXPECT_GT(m->wall_seconds, 0.0);
    EXPECT_EQ(m->versions["rlhf"], RLHF_VERSION);
    for (const auto& o : m->outputs) EXPECT_TRUE(fs::exists(run / o)) << o;
  }
  // What the stages made: labeled pairs, both models, completions, the table, the verdicts.
  EXPECT_TRUE(fs::exists(run / "train_reward" / "model" / "reward_model.json"));
  EXPECT_TRUE(fs::exists(run / "train_policy" / "model" / "policy.json"));
  EXPECT_TRUE(fs::exists(run / "export" / "model" / "model.safetensors"));
  EXPECT_TRUE(fs::exists(run / "tensorboard" / "train_reward"));
  EXPECT_TRUE(fs::exists(run / "tensorboard" / "train_policy"));
  const json sxs = json::parse(read_text(run / "sxs" / "summary.json"));
  EXPECT_EQ(sxs["rows"], 12);
  const std::string report = read_text(run / "report.html");
  EXPECT_NE(report.find("data-tag=\"reward\""), std::string::npos);
  EXPECT_NE(report.find("data-tag=\"rank_loss\""), std::string::npos);
  EXPECT_NE(log.find("report: "), std::string::npos);
  EXPECT_NE(log.find("mean reward"), std::string::npos);

  const std::string policy = read_text(run / "train_policy" / "model" / "adapter_model.safetensors");
  // Second run: nothing re-executes, nothing changes.
  log = capture(run_cmd(spec, run), &status, true);
  ASSERT_EQ(status, 0) << log;
  auto second = outcomes(log);
  for (const auto& s : kStages) EXPECT_EQ(second[s], "cached") << s << "\n" << log;
  EXPECT_EQ(read_text(run / "train_policy" / "model" / "adapter_model.safetensors"), policy);

  // kl_coeff changed: RL and what reads its result run again; the rest is cached.
  std::string text = read_text(spec);
  std::ofstream(spec) << text << "kl_coeff: 0.3\n";
  log = capture(run_cmd(spec, run), &status, true);
  ASSERT_EQ(status, 0) << log;
  auto third = outcomes(log);
  for (const char* s : {"validate", "label", "train_reward", "infer_untuned"}) EXPECT_EQ(third[s], "cached") << s;
  for (const char* s : {"train_policy", "infer_tuned", "sxs", "autosxs", "export"}) EXPECT_EQ(third[s], "running") << s;
  EXPECT_NE(read_text(run / "train_policy" / "model" / "adapter_model.safetensors"), policy);

  // status: every stage done.
  std::string st = capture(cli() + " pipeline status " + run.string(), &status);
  EXPECT_EQ(status, 0);
  for (const auto& s : kStages) EXPECT_NE(st.find(s), std::string::npos);
  EXPECT_EQ(st.find("pending"), std::string::npos) << st;
}

TEST(Pipeline, KilledInTheMiddleOfRlResumesToTheSameResult) {
  auto dir = rlhf::testing::scratch_dir();
  fs::path spec = write_project(dir);
  // The uninterrupted run.
  int status = 0;
  std::string log = capture(run_cmd(spec, dir / "whole"), &status, true);
  ASSERT_EQ(status, 0) << log;

  // The same run, killed once the RL stage has written a checkpoint (of 3).
  const fs::path run = dir / "killed";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", (run_cmd(spec, run) + " > /dev/null 2>&1").c_str(), (char*)nullptr);
    _exit(127);
  }
  const fs::path ckpt = run / "train_policy" / "model" / "checkpoints";
  bool seen = false;
  for (int i = 0; i < 6000 && !seen; ++i) {  // at most 2 minutes
    std::error_code ec;
    if (fs::exists(ckpt, ec))
      for (const auto& e : fs::directory_iterator(ckpt, ec))
        if (e.path().filename().string().starts_with("step-")) seen = true;
    if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // The whole process group: the shell and rlhf.
  kill(pid, SIGKILL);
  system(("pkill -9 -f -- '--run-dir " + run.string() + " ' ; true").c_str());
  waitpid(pid, nullptr, 0);
  ASSERT_TRUE(seen) << "the RL stage wrote no checkpoint";
  auto m = read_manifest(run.string(), "train_policy");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->state, "running");
  std::string st = capture(cli() + " pipeline status " + run.string(), &status);
  EXPECT_NE(st.find("interrupted"), std::string::npos) << st;

  log = capture(run_cmd(spec, run), &status, true);
  ASSERT_EQ(status, 0) << log;
  auto out = outcomes(log);
  EXPECT_EQ(out["train_reward"], "cached");
  EXPECT_EQ(out["train_policy"], "resuming") << log;
  // The same final policy and metrics as the uninterrupted run.
  EXPECT_EQ(read_text(run / "train_policy" / "model" / "adapter_model.safetensors"),
            read_text(dir / "whole" / "train_policy" / "model" / "adapter_model.safetensors"));
  auto a = read_manifest(run.string(), "train_policy"), b = read_manifest((dir / "whole").string(), "train_policy");
  ASSERT_TRUE(a && b);
  for (const char* k : {"final_reward", "final_kl_k3", "final_kl_k1", "steps"})
    EXPECT_NEAR(a->metrics[k].get<double>(), b->metrics[k].get<double>(), 1e-9) << k;
  EXPECT_EQ(a->attempts, 2);
  EXPECT_EQ(read_text(run / "sxs" / "sxs.jsonl"), read_text(dir / "whole" / "sxs" / "sxs.jsonl"));
}

TEST(Pipeline, CompileNamesTheBadKeyAndWritesNothing) {
  auto dir = rlhf::testing::scratch_dir();
  fs::path spec = write_project(dir, "kl_coef: 0.2\n");
  int status = 0;
  std::string err = capture(cli() + " pipeline compile " + spec.string(), &status, true);
  EXPECT_NE(status, 0);
  EXPECT_NE(err.find("key 'kl_coef' is unknown (did you mean 'kl_coeff'?)"), std::string::npos) << err;
  err = capture(run_cmd(spec, dir / "run"), &status, true);
  EXPECT_NE(status, 0);
  EXPECT_FALSE(fs::exists(dir / "run" / "plan.json"));
  // A good spec compiles and prints the plan with its keys.
  spec = write_project(dir);
  std::string out = capture(cli() + " pipeline compile " + spec.string(), &status, true);
  EXPECT_EQ(status, 0) << out;
  for (const auto& s : kStages) EXPECT_NE(out.find(". " + s + ": "), std::string::npos) << s << "\n" << out;
  EXPECT_NE(out.find("key:"), std::string::npos);
}

// A value a trainer refuses is refused at compile, naming its key (the advanced block is last
// in the project's spec, so these lines land in it).
TEST(Pipeline, CompileAppliesTheTrainersChecks) {
  auto dir = rlhf::testing::scratch_dir();
  for (const auto& [extra, needle] : std::vector<std::pair<std::string, std::string>>{
           {"  dtype: fp16\n", "key 'advanced.dtype': is \"fp16\"; it must be one of fp32, bf16"},
           {"  num_mini_batches: 3\n", "key 'advanced.num_mini_batches': must divide the batch size (3 does not divide 4)"},
           {"  keep_checkpoints: 0\n", "key 'advanced.keep_checkpoints': must be an integer in [1, 1000] (it is 0)"},
           {"  reward_model_max_grad_norm: .inf\n", "key 'advanced.reward_model_max_grad_norm': must be a number"}}) {
    fs::path spec = write_project(dir, extra);
    int status = 0;
    std::string err = capture(cli() + " pipeline compile " + spec.string(), &status, true);
    EXPECT_NE(status, 0) << extra;
    EXPECT_NE(err.find(needle), std::string::npos) << extra << err;
  }
}

// advanced.max_eval_prompts limits the evaluation prompts of the infer stages too.
TEST(Pipeline, MaxEvalPromptsLimitsInference) {
  auto dir = rlhf::testing::scratch_dir();
  fs::path spec = write_project(dir, "  max_eval_prompts: 5\n  export_format: none\n");
  std::string log = capture(run_cmd(spec, dir / "run"), nullptr, true);
  for (const char* stage : {"infer_untuned", "infer_tuned"}) {
    std::ifstream in(dir / "run" / stage / "predictions.jsonl");
    int lines = 0;
    for (std::string l; std::getline(in, l);) ++lines;
    EXPECT_EQ(lines, 5) << stage << "\n" << log;
  }
  std::ifstream sxs(dir / "run" / "sxs" / "sxs.jsonl");
  int rows = 0;
  for (std::string l; std::getline(sxs, l);) ++rows;
  EXPECT_EQ(rows, 5);
}

}  // namespace
}  // namespace rlhf::pipeline
