// The rlhf binary as a careless or hostile user drives it: a folder it did not write survives
// byte for byte every command pointed at it; numeric flags refuse NaN, infinities, negative
// counts and absurd thread counts in plain numbers before any model is loaded; Ctrl-C and
// SIGTERM print one line saying what was kept and the command that continues, then exit with
// 130 / 143, and that command does continue.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <thread>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "tiny_model.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using rlhf::testing::capture;
using rlhf::testing::cli;
using rlhf::testing::read_text;

// Every file (path -> bytes) and folder ("path/" -> "") under `root`.
std::map<std::string, std::string> snapshot(const fs::path& root) {
  std::map<std::string, std::string> s;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    const std::string rel = fs::relative(e.path(), root).string();
    if (e.is_directory()) s[rel + "/"] = "";
    else s[rel] = read_text(e.path());
  }
  return s;
}

// A folder of someone else's files, some named like the files the commands write.
fs::path make_unrelated_folder(const fs::path& dir) {
  const fs::path u = dir / "unrelated";
  fs::create_directories(u / "sub");
  for (const char* name : {"report.html", "judgments.jsonl", "metrics.json", "summary.json", "sxs.jsonl",
                           "reward_model.json", "policy.json", "config.json", "plan.json", "notes.txt"})
    std::ofstream(u / name) << "someone else's " << name << "\n";
  std::ofstream(u / "sub" / "data.bin", std::ios::binary) << std::string("\0\1\2\3", 4);
  return u;
}

void write_prompts(const fs::path& p, int n) {
  std::ofstream f(p);
  for (int i = 0; i < n; ++i) f << json{{"input_text", "say: word " + std::to_string(i) + " ->"}}.dump() << "\n";
}

void write_pairs(const fs::path& p) {
  std::ofstream f(p);
  for (int i = 0; i < 3; ++i)
    f << json{{"input_text", "say: " + std::to_string(i)}, {"candidate_0", "a b"}, {"candidate_1", "a b c d"},
              {"response_a", "a b"}, {"response_b", "a b c d"}}
             .dump()
      << "\n";
}

std::string reward_cmd(const fs::path& dir, const std::string& out, int steps) {
  return cli() + " train-reward --preference-dataset " + (dir / "prefs.jsonl").string() + " --large-model-reference " +
         (dir / "model").string() + " --output " + out + " --reward-model-train-steps " + std::to_string(steps) +
         " --batch-size 8 --micro-batch-size 4 --reward-model-learning-rate-multiplier 20 --prompt-sequence-length 32"
         " --target-sequence-length 24 --validation-every 25 --checkpoint-every 5 --threads 1 --no-progress";
}

// Runs `cmd` and expects it to fail, leaving `folder` exactly as it was.
void expect_refused_untouched(const std::string& cmd, const fs::path& folder) {
  const auto before = snapshot(folder);
  int rc = 0;
  const std::string out = capture(cmd, &rc, true);
  EXPECT_NE(rc, 0) << cmd << "\n" << out;
  EXPECT_EQ(snapshot(folder), before) << cmd << "\n" << out;
}

TEST(CliSafety, AnUnrelatedFolderSurvivesEveryCommandPointedAtIt) {
  const fs::path dir = rlhf::testing::scratch_dir();
  rlhf::testing::write_tiny_hf_model(dir / "model");
  write_prompts(dir / "prompts.jsonl", 4);
  write_pairs(dir / "pairs.jsonl");
  rlhf::testing::write_marker_preferences(dir / "prefs.jsonl", 16, 2);
  const std::string model = (dir / "model").string();
  const fs::path u = make_unrelated_folder(dir);
  const std::string U = u.string();

  // Inputs the commands need: two inference outputs and a trained reward model.
  for (const char* side : {"a", "b"})
    ASSERT_EQ(rlhf::testing::run(cli() + " infer --model " + model + " --input " + (dir / "prompts.jsonl").string() +
                                 " --output " + (dir / (std::string(side) + ".jsonl")).string() +
                                 " --max-new-tokens 4 --threads 1 --no-progress 2>/dev/null"),
              0);
  ASSERT_EQ(rlhf::testing::run(reward_cmd(dir, (dir / "rm").string(), 2) + " 2>/dev/null"), 0);

  const std::string pairs = (dir / "pairs.jsonl").string();
  const std::string prompts = (dir / "prompts.jsonl").string();
  const std::string a = (dir / "a.jsonl").string(), b = (dir / "b.jsonl").string();
  for (const std::string& out : {U, U + "/notes.txt"})
    expect_refused_untouched(cli() + " label --pairs " + pairs + " --rule prefer-shorter --output " + out, u);
  expect_refused_untouched(cli() + " label --prompt-dataset " + prompts + " --model " + model +
                               " --rule prefer-shorter --max-new-tokens 4 --output " + U + "/notes.txt",
                           u);
  expect_refused_untouched(cli() + " autosxs --input " + pairs + " --judge " + model + " --output " + U, u);
  expect_refused_untouched(cli() + " autosxs --input " + pairs + " --judge " + model + " --output " + U + "/notes.txt", u);
  for (const std::string& out : {U, U + "/notes.txt"})
    expect_refused_untouched(cli() + " infer --model " + model + " --input " + prompts + " --output " + out +
                                 " --max-new-tokens 4 --no-progress",
                             u);
  expect_refused_untouched(cli() + " sxs " + a + " " + b + " --output " + U, u);
  expect_refused_untouched(cli() + " export --adapter " + (dir / "rm").string() + " --output " + U, u);
  expect_refused_untouched(cli() + " export --adapter " + (dir / "rm").string() + " --format gguf --output " + U +
                               "/notes.txt",
                           u);

  // The same commands into a fresh folder work, and run again into their own output.
  const std::string fresh = (dir / "fresh").string();
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(rlhf::testing::run(cli() + " label --pairs " + pairs + " --rule prefer-shorter --output " + fresh +
                                 "/labels.jsonl > /dev/null"),
              0);
    EXPECT_EQ(rlhf::testing::run(cli() + " autosxs --input " + pairs + " --judge " + model +
                                 " --explanation-tokens 0 --max-prompt-tokens 512 --quiet --output " + fresh +
                                 "/autosxs > /dev/null 2>&1"),
              0);
  }
  EXPECT_TRUE(fs::exists(fs::path(fresh) / "autosxs" / "metrics.json"));
  // label's output and autosxs's folder are their own: neither takes the other's.
  expect_refused_untouched(cli() + " autosxs --input " + pairs + " --judge " + model + " --output " + fresh +
                               "/labels.jsonl",
                           fresh);
  expect_refused_untouched(cli() + " label --pairs " + pairs + " --rule prefer-shorter --output " + fresh +
                               "/autosxs/metrics.json",
                           fresh);
}

// A tiny pipeline project; the run directory check comes before any stage runs.
fs::path write_pipeline_project(const fs::path& dir) {
  rlhf::testing::write_tiny_hf_model(dir / "model", 5);
  write_prompts(dir / "prompts.jsonl", 8);
  std::ofstream(dir / "spec.yaml") << "rlaif:\n  prompt_dataset: prompts.jsonl\n  rule: prefer-shorter\n"
                                      "prompt_dataset: prompts.jsonl\neval_dataset: prompts.jsonl\n"
                                      "large_model_reference: model\nprompt_sequence_length: 32\n"
                                      "target_sequence_length: 8\nreward_model_train_steps: 1\n"
                                      "reinforcement_learning_train_steps: 1\nadvanced:\n  threads: 1\n";
  return dir / "spec.yaml";
}

TEST(CliSafety, PipelineRunRefusesAnUnrelatedFolder) {
  const fs::path dir = rlhf::testing::scratch_dir();
  write_pipeline_project(dir);
  const fs::path u = make_unrelated_folder(dir);
  const std::string cmd = cli() + " pipeline run " + (dir / "spec.yaml").string() + " --run-dir " + u.string() + " --quiet";
  expect_refused_untouched(cmd, u);
  int rc = 0;
  const std::string out = capture(cmd, &rc, true);
  EXPECT_NE(out.find(u.string() + ": the folder holds files rlhf did not write"), std::string::npos) << out;
}

TEST(CliSafety, TrainersRefuseAnUnrelatedFolder) {
  const fs::path dir = rlhf::testing::scratch_dir();
  rlhf::testing::write_tiny_hf_model(dir / "model");
  rlhf::testing::write_marker_preferences(dir / "prefs.jsonl", 16, 2);
  write_prompts(dir / "prompts.jsonl", 8);
  ASSERT_EQ(rlhf::testing::run(reward_cmd(dir, (dir / "rm").string(), 2) + " 2>/dev/null"), 0);
  const fs::path u = make_unrelated_folder(dir);
  expect_refused_untouched(reward_cmd(dir, u.string(), 2), u);
  expect_refused_untouched(reward_cmd(dir, u.string(), 2) + " --resume", u);
  // A system folder is someone else's too.
  int rc = 0;
  const std::string msg = capture(reward_cmd(dir, "/usr/lib", 2), &rc, true);
  EXPECT_NE(rc, 0) << msg;
  EXPECT_NE(msg.find("/usr/lib: the folder holds files rlhf did not write"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists("/usr/lib/.rlhf"));
  EXPECT_FALSE(fs::exists("/usr/lib/checkpoints"));
  const std::string policy = cli() + " train-policy --prompt-dataset " + (dir / "prompts.jsonl").string() +
                             " --reward-model " + (dir / "rm").string() + " --output " + u.string() +
                             " --reinforcement-learning-train-steps 1 --batch-size 4 --micro-batch-size 4"
                             " --prompt-sequence-length 32 --target-sequence-length 4 --threads 1 --no-progress";
  expect_refused_untouched(policy, u);
  expect_refused_untouched(policy + " --resume", u);
}

// Each flag value is refused by the flag's own check: the message names the flag and the
// accepted range, and no model is loaded (the model path does not exist).
TEST(CliSafety, NumericFlagsAreRefusedInPlainNumbersBeforeLoadingAModel) {
  const std::string nomodel = "/nonexistent/model.gguf";
  const std::string generate = cli() + " generate --prompt hi --model " + nomodel;
  const std::string infer = cli() + " infer --input in.jsonl --output out.jsonl --model " + nomodel;
  const std::string label = cli() + " label --pairs in.jsonl --judge " + nomodel + " --output out.jsonl";
  const std::string autosxs = cli() + " autosxs --input in.jsonl --judge " + nomodel + " --output out";
  const std::string sxs = cli() + " sxs a.jsonl b.jsonl --reward-model /nonexistent/rm --output out";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {generate, "--temperature nan"},   {generate, "--temperature inf"},     {generate, "--top-p nan"},
      {generate, "--top-p -inf"},        {generate, "--seed -1"},             {generate, "--top-k -1"},
      {generate, "--max-new-tokens -5"}, {generate, "--threads 100000"},      {generate, "--threads -1"},
      {infer, "--temperature nan"},      {infer, "--top-p NaN"},              {infer, "--seed -1"},
      {infer, "--batch-size -1"},        {infer, "--top-k -3"},               {infer, "--threads 5000"},
      {label, "--top-p nan"},            {label, "--min-confidence nan"},     {label, "--seed -1"},
      {label, "--temperatures nan,1"},   {label, "--temperatures 0.7,inf"},   {label, "--max-rows -1"},
      {label, "--threads 2000"},         {autosxs, "--batch-size -1"},        {autosxs, "--max-rows -1"},
      {autosxs, "--threads 9999"},       {autosxs, "--explanation-tokens -1"}, {sxs, "--max-words -1"},
      {sxs, "--batch-size 0"},           {sxs, "--threads 99999"},
      {cli() + " pipeline run spec.yaml --run-dir run", "--threads 99999"},
  };
  for (const auto& [cmd, flag] : cases) {
    int rc = 0;
    const std::string out = capture(cmd + " " + flag, &rc, true);
    const std::string name = flag.substr(0, flag.find(' '));
    EXPECT_NE(rc, 0) << flag << ": " << out;
    EXPECT_NE(out.find(name), std::string::npos) << flag << ": " << out;
    EXPECT_NE(out.find("must be"), std::string::npos) << flag << ": " << out;
    EXPECT_EQ(out.find("nonexistent"), std::string::npos) << flag << ": the model was loaded first: " << out;
    EXPECT_EQ(out.find("torch"), std::string::npos) << flag << ": " << out;
    EXPECT_EQ(out.find("e+"), std::string::npos) << flag << ": not in plain numbers: " << out;
  }
}

// Starts `cmd` (its stderr into `err`), waits until ready() or it exits, then sends `sig`.
// Returns the exit status (-1 when it had finished before the signal).
int interrupt_when(const std::string& cmd, const fs::path& err, const std::function<bool()>& ready, int sig) {
  pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", ("exec " + cmd + " > /dev/null 2> " + err.string()).c_str(), (char*)nullptr);
    _exit(127);
  }
  int status = 0;
  for (int i = 0; i < 12000; ++i) {
    if (waitpid(pid, &status, WNOHANG) == pid) return -1;
    if (ready()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  kill(pid, sig);
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

std::string last_line(const std::string& text) {
  std::string t = text;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  return t.substr(t.find_last_of('\n') == std::string::npos ? 0 : t.find_last_of('\n') + 1);
}

size_t count_lines(const fs::path& p) {
  std::error_code ec;
  if (!fs::exists(p, ec)) return 0;
  const std::string s = read_text(p);
  return static_cast<size_t>(std::count(s.begin(), s.end(), '\n'));
}

TEST(CliSafety, InterruptedInferenceSaysWhatWasKeptAndTheCommandContinues) {
  const fs::path dir = rlhf::testing::scratch_dir();
  rlhf::testing::write_tiny_hf_model(dir / "model");
  const int n = 400;
  write_prompts(dir / "prompts.jsonl", n);
  const fs::path out = dir / "out.jsonl";
  const std::string cmd = cli() + " infer --model " + (dir / "model").string() + " --input " +
                          (dir / "prompts.jsonl").string() + " --output " + out.string() +
                          " --max-new-tokens 16 --batch-size 1 --threads 1 --no-progress --restart";
  const fs::path partial = dir / "out.jsonl.partial";
  const int rc = interrupt_when(cmd, dir / "err.txt", [&] { return count_lines(partial) >= 3; }, SIGINT);
  ASSERT_NE(rc, -1) << "the inference finished before it could be interrupted";
  EXPECT_EQ(rc, 130);
  const std::string err = read_text(dir / "err.txt");
  const std::string line = last_line(err);
  const std::string expected_prefix =
      "rlhf: interrupted; the prompts completed so far are kept in " + partial.string() + "; continue with: ";
  ASSERT_TRUE(line.starts_with(expected_prefix)) << err;
  const std::string again = line.substr(expected_prefix.size());
  EXPECT_EQ(again.find("--restart"), std::string::npos) << again;  // it would discard what was kept
  const size_t kept = count_lines(partial);
  EXPECT_GE(kept, 3u);

  int rc2 = 0;
  const std::string log = capture(again, &rc2, true);
  EXPECT_EQ(rc2, 0) << log;
  EXPECT_NE(log.find(std::to_string(kept) + " of " + std::to_string(n) + " prompts done"), std::string::npos) << log;
  EXPECT_EQ(count_lines(out), static_cast<size_t>(n));
}

TEST(CliSafety, InterruptedTrainingNamesItsCheckpointAndTheCommandResumes) {
  const fs::path dir = rlhf::testing::scratch_dir();
  rlhf::testing::write_tiny_hf_model(dir / "model");
  rlhf::testing::write_marker_preferences(dir / "prefs.jsonl", 120, 2);
  const fs::path out = dir / "rm";
  const std::string cmd = reward_cmd(dir, out.string(), 150);
  const int rc = interrupt_when(cmd, dir / "err.txt", [&] { return fs::exists(out / "checkpoints/step-0000010"); },
                                SIGTERM);
  ASSERT_NE(rc, -1) << "the training finished before it could be interrupted";
  EXPECT_EQ(rc, 143);
  const std::string err = read_text(dir / "err.txt");
  const std::string line = last_line(err);
  const std::regex expected("rlhf: interrupted; checkpoint step-00000(05|10) kept in " + out.string() +
                            "; continue with: (.*) --resume");
  std::smatch m;
  ASSERT_TRUE(std::regex_match(line, m, expected)) << err;
  EXPECT_EQ(err.find("rlhf: interrupted"), err.rfind("rlhf: interrupted")) << "one line: " << err;

  int rc2 = 0;
  const std::string log = capture(line.substr(line.find("continue with: ") + 15), &rc2, true);
  EXPECT_EQ(rc2, 0) << log;
  EXPECT_TRUE(fs::exists(out / "reward_model.json")) << log;
}

TEST(CliSafety, InterruptedPipelineSaysTheSameCommandContinues) {
  const fs::path dir = rlhf::testing::scratch_dir();
  const fs::path spec = write_pipeline_project(dir);
  const fs::path run = dir / "run";
  const std::string cmd = cli() + " pipeline run " + spec.string() + " --run-dir " + run.string() + " --quiet";
  const int rc = interrupt_when(cmd, dir / "err.txt", [&] { return fs::exists(run / "validate" / "manifest.json"); },
                                SIGINT);
  ASSERT_NE(rc, -1) << "the pipeline finished before it could be interrupted";
  EXPECT_EQ(rc, 130);
  const std::string err = read_text(dir / "err.txt");
  const std::string line = last_line(err);
  EXPECT_TRUE(line.starts_with("rlhf: interrupted; ")) << err;
  EXPECT_TRUE(line.ends_with("; continue with: " + cmd)) << err;
  EXPECT_EQ(err.find("rlhf: interrupted"), err.rfind("rlhf: interrupted")) << "one line: " << err;
}

}  // namespace
