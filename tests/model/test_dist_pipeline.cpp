// `rlhf pipeline run` under a distributed launcher: every rank runs it, rank 0 owns the run
// directory. Two ranks leave the files one process leaves (one report, one set of manifests,
// the same bytes where one process is deterministic); a second run finds every stage cached,
// on two ranks or on one (the world size is in no key); a failure on either rank stops the
// other promptly, with the failing rank's message, also when no launcher stops it.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "model/pipeline_fixture.h"
#include "model/tensor_compare.h"
#include "rlhf/pipeline/run_dir.h"
#include "rlhf/train/tensor_file.h"
#include "test_util.h"
#include "tiny_model.h"

namespace rlhf::pipeline {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using rlhf::testing::capture;
using rlhf::testing::cli;
using rlhf::testing::read_text;
using rlhf::testing::run_cmd;

// A project of every stage: rank 0 alone runs validate, sxs and export; every rank runs the
// labeling, the trainers, inference and (with `autosxs`, the slowest stage, on 4 prompts) the judge.
fs::path write_project(const fs::path& dir, bool autosxs) {
  rlhf::testing::write_pipeline_model_and_prompts(dir);
  std::ofstream(dir / "spec.yaml") << (autosxs ? "autosxs:\n  explanation_tokens: 2\n" : "") << R"(rlaif:
  prompt_dataset: prompts.jsonl
  rule: prefer-shorter
  temperatures: [0.8, 1.3]
prompt_dataset: prompts.jsonl
eval_dataset: prompts.jsonl
large_model_reference: model
prompt_sequence_length: 32
target_sequence_length: 8
reward_model_epochs: 1
reinforcement_learning_train_steps: 4
reward_model_learning_rate_multiplier: 10
reinforcement_learning_rate_multiplier: 10
advanced:
  reward_model_batch_size: 4
  reward_model_micro_batch_size: 2
  reinforcement_learning_batch_size: 4
  reinforcement_learning_micro_batch_size: 2
  inference_batch_size: 4
  max_eval_prompts: 4
  export_format: hf
  seed: 3
  threads: 1
)";
  return dir / "spec.yaml";
}

// The log without the launcher's "[rank R] " in front of each line.
std::string without_rank_tags(const std::string& log) {
  std::istringstream in(log);
  std::string line, out;
  while (std::getline(in, line)) {
    if (line.starts_with("[rank ")) line = line.substr(line.find("] ") + 2);
    out += line + "\n";
  }
  return out;
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

// Every file under `dir`, relative to it (TensorBoard event files named by their folder).
std::set<std::string> files_under(const fs::path& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::string rel = fs::relative(e.path(), dir).string();
    if (e.path().filename().string().starts_with("events.out.tfevents."))
      rel = fs::relative(e.path().parent_path(), dir).string() + "/events.out.tfevents.*";
    out.insert(rel);
  }
  return out;
}

std::vector<std::string> predictions(const fs::path& file) {
  std::vector<std::string> out;
  for (const auto& j : rlhf::testing::read_jsonl(file)) out.push_back(j.at("prediction").get<std::string>());
  return out;
}

TEST(DistPipeline, TwoRanksLeaveTheFilesOfOneProcessThenFindEveryStageCached) {
  const std::vector<std::string>& kStages = rlhf::testing::kPipelineStages;
  const fs::path dir = rlhf::testing::scratch_dir();
  const fs::path spec = write_project(dir, /*autosxs=*/true);
  int rc = 0;
  std::string one_log = capture(run_cmd(spec, dir / "one"), &rc, true);
  ASSERT_EQ(rc, 0) << one_log;
  const std::string raw = capture(cli() + " --nproc-per-node 2" + run_cmd(spec, dir / "two").substr(cli().size()), &rc, true);
  ASSERT_EQ(rc, 0) << raw;
  std::string log = without_rank_tags(raw);
  auto ran = rlhf::testing::outcomes(log);
  for (const auto& s : kStages) EXPECT_EQ(ran[s], "running") << s << "\n" << raw;
  // Rank 0 alone says how the run went.
  EXPECT_EQ(count(raw, "pipeline done: 9 stages, 0 cached"), 1u) << raw;
  EXPECT_EQ(count(raw, "[rank 0] report: "), 1u) << raw;
  EXPECT_EQ(count(raw, "[rank 1] report: "), 0u) << raw;

  // The same files: one report, one manifest per stage, no rank's leftovers.
  const fs::path one = dir / "one", two = dir / "two";
  EXPECT_EQ(files_under(two), files_under(one));
  std::set<std::string> manifests;
  for (const auto& e : fs::directory_iterator(two))
    if (fs::exists(e.path() / "manifest.json")) manifests.insert(e.path().filename().string());
  EXPECT_EQ(manifests, std::set<std::string>(kStages.begin(), kStages.end()));
  for (const auto& s : kStages) {
    auto a = read_manifest(one.string(), s), b = read_manifest(two.string(), s);
    ASSERT_TRUE(a && b) << s;
    EXPECT_EQ(b->state, "done") << s;
    EXPECT_EQ(b->plan_key, a->plan_key) << s;
    EXPECT_EQ(b->attempts, 1) << s;
    EXPECT_EQ(b->outputs, a->outputs) << s;
  }
  EXPECT_EQ(json::parse(read_text(two / "plan.json"))["stages"], json::parse(read_text(one / "plan.json"))["stages"]);
  // Bytes where one process is deterministic (the run directory's own path aside); the trained
  // adapters to float tolerance (the ranks' gradients may be summed in another order), and
  // what reads them byte for byte when they came out the same.
  auto text = [](const fs::path& run, const std::string& file) {
    std::string t = read_text(run / file);
    for (size_t at; (at = t.find(run.string())) != std::string::npos;) t.replace(at, run.string().size(), "RUN");
    return t;
  };
  for (const char* f : {"validate/report.json", "label/preferences.jsonl", "infer_untuned/predictions.jsonl"})
    EXPECT_EQ(text(two, f), text(one, f)) << f;
  EXPECT_EQ(read_manifest(two.string(), "infer_untuned")->key, read_manifest(one.string(), "infer_untuned")->key);
  EXPECT_LT(testing::max_tensor_difference(one / "train_reward/model", two / "train_reward/model"), 1e-4);
  EXPECT_LT(testing::max_tensor_difference(one / "train_policy/model", two / "train_policy/model"), 1e-4);
  EXPECT_EQ(predictions(two / "infer_tuned/predictions.jsonl"), predictions(one / "infer_tuned/predictions.jsonl"));
  const bool same_adapters = text(one, "train_reward/model/adapter_model.safetensors") ==
                                 text(two, "train_reward/model/adapter_model.safetensors") &&
                             text(one, "train_policy/model/adapter_model.safetensors") ==
                                 text(two, "train_policy/model/adapter_model.safetensors");
  if (same_adapters)
    for (const char* f : {"infer_tuned/predictions.jsonl", "sxs/sxs.jsonl", "sxs/summary.json", "autosxs/judgments.jsonl",
                          "autosxs/metrics.json"})
      EXPECT_EQ(text(two, f), text(one, f)) << f;
  EXPECT_EQ(rlhf::testing::read_jsonl(two / "autosxs/judgments.jsonl").size(), 4u);
  EXPECT_TRUE(fs::exists(two / "export/model/model.safetensors"));
  EXPECT_NE(read_text(two / "report.html").find("data-tag=\"rank_loss\""), std::string::npos);

  // Again on 2 ranks, then in one process: every stage cached, nothing rewritten.
  const std::string policy = read_text(two / "train_policy/model/adapter_model.safetensors");
  for (const std::string launcher : {" --nproc-per-node 2", ""}) {
    const std::string again = capture(cli() + launcher + run_cmd(spec, two).substr(cli().size()), &rc, true);
    ASSERT_EQ(rc, 0) << again;
    auto cached = rlhf::testing::outcomes(without_rank_tags(again));
    for (const auto& s : kStages) EXPECT_EQ(cached[s], "cached") << s << launcher << "\n" << again;
    EXPECT_EQ(count(again, "pipeline done: 9 stages, 9 cached"), 1u) << again;
  }
  EXPECT_EQ(read_text(two / "train_policy/model/adapter_model.safetensors"), policy);
  EXPECT_EQ(files_under(two), files_under(one));
}

// Two ranks started by plain environment variables (no launcher to stop the other): the one
// that fails names its error, the other stops promptly naming that rank.
struct TwoRanks {
  int rc0 = -1, rc1 = -1;
  std::string log0, log1;
  double seconds = 0;
};

TwoRanks run_two_ranks(const fs::path& dir, int port, const std::string& args0, const std::string& args1,
                       int timeout = 300) {
  const std::string env = "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) +
                          " RLHF_DIST_TIMEOUT=" + std::to_string(timeout) + " ";
  auto rank = [&](int r, const std::string& args) {
    const std::string tag = (dir / ("rank" + std::to_string(r))).string();
    return "(RANK=" + std::to_string(r) + " " + env + "timeout 240 " + cli() + args + " > " + tag + ".log 2>&1; echo $? > " +
           tag + ".rc)";
  };
  const auto t0 = std::chrono::steady_clock::now();
  capture(rank(1, args1) + " & " + rank(0, args0) + "; wait");
  TwoRanks t;
  t.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  t.rc0 = std::stoi(read_text(dir / "rank0.rc"));
  t.rc1 = std::stoi(read_text(dir / "rank1.rc"));
  t.log0 = read_text(dir / "rank0.log");
  t.log1 = read_text(dir / "rank1.log");
  return t;
}

TEST(DistPipeline, AFailureOnEitherRankStopsTheOtherPromptly) {
  const fs::path dir = rlhf::testing::scratch_dir();
  const fs::path spec = write_project(dir, /*autosxs=*/false);
  const fs::path run = dir / "run";
  const std::string args = " pipeline run " + spec.string() + " --run-dir " + run.string() + " --quiet";

  // Rank 1 cannot read its spec: both stop before anything is written.
  TwoRanks t = run_two_ranks(dir, 29711, args, " pipeline run " + (dir / "missing.yaml").string() + " --run-dir " +
                                                   run.string() + " --quiet");
  EXPECT_NE(t.rc0, 0) << t.log0;
  EXPECT_NE(t.rc1, 0) << t.log1;
  EXPECT_LT(t.seconds, 120);
  EXPECT_NE(t.log1.find("missing.yaml"), std::string::npos) << t.log1;
  EXPECT_NE(t.log0.find("error: rank 1 of 2 could not start the pipeline: "), std::string::npos) << t.log0;
  EXPECT_FALSE(fs::exists(run / "plan.json"));

  // A run, then an eval output spoiled by hand and kept (--accept-edited-outputs): the
  // side-by-side stage, rank 0's alone, fails while rank 1 waits; rank 1 stops with its message.
  int rc = 0;
  const std::string log = capture(cli() + " --nproc-per-node 2" + args, &rc, true);
  ASSERT_EQ(rc, 0) << log;
  std::ofstream(run / "infer_untuned/predictions.jsonl", std::ios::app) << "not json\n";
  t = run_two_ranks(dir, 29712, args + " --accept-edited-outputs", args + " --accept-edited-outputs");
  EXPECT_NE(t.rc0, 0) << t.log0;
  EXPECT_NE(t.rc1, 0) << t.log1;
  EXPECT_NE(t.rc0, 124) << "rank 0 timed out:\n" << t.log0;
  EXPECT_NE(t.rc1, 124) << "rank 1 timed out:\n" << t.log1;
  EXPECT_LT(t.seconds, 120);
  EXPECT_NE(t.log0.find("error: stage sxs failed: "), std::string::npos) << t.log0;
  EXPECT_NE(t.log1.find("error: rank 0 stopped the pipeline: stage sxs failed: "), std::string::npos) << t.log1;
  auto m = read_manifest(run.string(), "sxs");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->state, "failed");
  EXPECT_EQ(read_manifest(run.string(), "export")->state, "done");

  // compile and status run in one process: under a launcher they refuse rather than print once per rank.
  const std::string st = capture(cli() + " --nproc-per-node 2 pipeline status " + run.string(), &rc, true);
  EXPECT_NE(rc, 0) << st;
  EXPECT_NE(st.find("rlhf pipeline status runs in one process"), std::string::npos) << st;
}

// A finished 2-rank run in DIR/run whose export holds a sparse file of `bytes` (kept as edited):
// rank 0 hashes it alone, for seconds, while the other ranks wait. Returns the run's arguments.
std::string run_with_a_long_rank_zero_check(const fs::path& dir, uintmax_t bytes) {
  const fs::path spec = write_project(dir, /*autosxs=*/false);
  const fs::path run = dir / "run";
  const std::string args = " pipeline run " + spec.string() + " --run-dir " + run.string() + " --quiet";
  int rc = 0;
  const std::string log = capture(cli() + " --nproc-per-node 2" + args, &rc, true);
  EXPECT_EQ(rc, 0) << log;
  const fs::path big = run / "export/model/big.bin";
  std::ofstream{big};
  fs::resize_file(big, bytes);  // sparse: nothing on disk
  return args + " --accept-edited-outputs";
}

// Rank 0 working alone for longer than the collective timeout (here: hashing a large output
// of a done stage, kept as edited) leaves the other rank waiting, not failing.
TEST(DistPipeline, RankZeroAloneLongerThanTheCollectiveTimeoutKeepsTheOthersWaiting) {
  const fs::path dir = rlhf::testing::scratch_dir();
  const std::string args = run_with_a_long_rank_zero_check(dir, uintmax_t(1) << 30);
  TwoRanks t = run_two_ranks(dir, 29713, args, args, 1);
  EXPECT_EQ(t.rc0, 0) << t.log0;
  EXPECT_EQ(t.rc1, 0) << t.log1;
  EXPECT_NE(t.log0.find("export: cached (key"), std::string::npos) << t.log0;
  EXPECT_NE(t.log0.find("with export/model as edited by hand"), std::string::npos) << t.log0;
}

// Rank 0 stopped (SIGSTOP) while the other rank waits for it: the other does not wait forever
// but exits non-zero within the timeout (the store rank 0 serves falls silent), naming rank 0.
TEST(DistPipeline, RankZeroStoppedWhileTheOtherWaitsIsNamedWithinTheTimeout) {
  const fs::path dir = rlhf::testing::scratch_dir();
  const std::string args = run_with_a_long_rank_zero_check(dir, uintmax_t(1) << 32);
  const std::string env = "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29714 RLHF_DIST_TIMEOUT=2 ";
  const std::string rank1 = (dir / "rank1").string();
  const int pid0 = std::stoi(capture("sh -c 'exec env RANK=0 " + env + cli() + args + "' > " +
                                     (dir / "rank0.log").string() + " 2>&1 & echo $!"));
  const auto t0 = std::chrono::steady_clock::now();
  capture("(RANK=1 " + env + "timeout 120 " + cli() + args + " > " + rank1 +
          ".log 2>&1; echo $? > " + rank1 + ".rc) > /dev/null 2>&1 &");
  std::this_thread::sleep_for(std::chrono::seconds(3));
  ::kill(pid0, SIGSTOP);
  bool ended = false;
  for (int i = 0; i < 900 && !ended; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ended = fs::exists(rank1 + ".rc") && !read_text(rank1 + ".rc").empty();
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ::kill(pid0, SIGKILL);
  ASSERT_TRUE(ended) << "rank 1 still waits for a stopped rank 0";
  const std::string log1 = read_text(rank1 + ".log");
  EXPECT_NE(std::stoi(read_text(rank1 + ".rc")), 0) << log1;
  EXPECT_NE(std::stoi(read_text(rank1 + ".rc")), 124) << "ended by timeout(1), not by itself:\n" << log1;
  EXPECT_LT(seconds, 60) << log1;
  EXPECT_NE(log1.find("rank 0"), std::string::npos) << log1;
}

}  // namespace
}  // namespace rlhf::pipeline
