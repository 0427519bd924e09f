// Distributed jobs on this machine, started by the tests themselves: --nproc-per-node, plain
// environment variables and torchrun --no-python (when the dev venv has it) all form a c10d
// job (TCPStore + Gloo on the loopback) whose all-reduce is right; a rank that never comes or
// a launcher stopped by SIGTERM leaves no process behind; a rank killed or stopped mid-job
// makes the others exit within --dist-timeout, naming it.
#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <sstream>
#include <thread>
#include <tuple>

#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using rlhf::testing::capture;
using rlhf::testing::cli;

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

TEST(DistLaunch, NprocPerNodeStartsRanksThatAllReduce) {
  int rc = 0;
  const std::string out = capture(cli() + " --nproc-per-node 2 dist-check --megabytes 1 --iterations 2", &rc, true);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("[rank 0] rank 0 of 2 (local 0 of 2, launcher torchrun"), std::string::npos) << out;
  EXPECT_NE(out.find("[rank 1] rank 1 of 2 (local 1 of 2, launcher torchrun"), std::string::npos) << out;
  EXPECT_EQ(count(out, "all-reduce sum 3 (expected 3) ok"), 2u) << out;
}

TEST(DistLaunch, PlainEnvironmentVariables) {
  const std::string env = "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29631 ";
  int rc = 0;
  const std::string out = capture("(RANK=1 " + env + cli() + " dist-check --megabytes 1 --iterations 2 & RANK=0 " + env +
                                      cli() + " dist-check --megabytes 1 --iterations 2; wait)",
                                  &rc, true);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(count(out, "all-reduce sum 3 (expected 3) ok"), 2u) << out;
}

TEST(DistLaunch, TorchrunNoPython) {
  const fs::path torchrun = rlhf::testing::source_dir() / ".venv/bin/torchrun";
  if (!fs::exists(torchrun)) GTEST_SKIP() << "torchrun absent: run scripts/setup --dev";
  int rc = 0;
  const std::string out = capture(torchrun.string() + " --nproc-per-node 2 --master-port 29637 --no-python " + cli() +
                                      " dist-check --megabytes 1 --iterations 2",
                                  &rc, true);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(count(out, "all-reduce sum 3 (expected 3) ok"), 2u) << out;
}

TEST(DistLaunch, ARankThatNeverComesFailsTheOthersWithinTheTimeout) {
  int rc = 0;
  const auto t0 = std::chrono::steady_clock::now();
  const std::string out = capture("RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29641 " + cli() +
                                      " dist-check --timeout 2",
                                  &rc, true);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(rc, 0) << out;
  EXPECT_LT(s, 30) << out;
  EXPECT_NE(out.find("rank 0 of 2: cannot join the job at 127.0.0.1:29641"), std::string::npos) << out;
  EXPECT_EQ(out.find("frame #"), std::string::npos) << "no backtrace: " << out;
}

TEST(DistLaunch, SigtermToTheLauncherStopsEveryRank) {
  const fs::path dir = rlhf::testing::scratch_dir();
  const std::string tag = "--megabytes 64 --iterations 100000";  // runs until stopped
  const std::string pattern = "dist-check [-]-megabytes 64";     // matches the ranks, not the shell asking
  const std::string pid = capture(cli() + " --nproc-per-node 2 dist-check " + tag + " > " + (dir / "log").string() +
                                  " 2>&1 & echo $!");
  std::this_thread::sleep_for(std::chrono::seconds(2));
  ASSERT_EQ(::kill(std::stoi(pid), SIGTERM), 0);
  bool gone = false;
  for (int i = 0; i < 150 && !gone; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    gone = capture("pgrep -f -- '" + pattern + "' || true").empty();
  }
  EXPECT_TRUE(gone) << "ranks still running: " << capture("pgrep -a -f -- '" + pattern + "'");
  EXPECT_NE(rlhf::testing::read_text(dir / "log").find("[rank 1] rlhf: interrupted"), std::string::npos);
}

}  // namespace

namespace {

// A command that does its whole work in every process refuses to run under a launcher.
TEST(DistLaunch, OneProcessCommandsRefuseToRunOnEveryRank) {
  int rc = 0;
  const std::string out = capture(cli() + " --nproc-per-node 2 tokenize --text hi", &rc, true);
  EXPECT_NE(rc, 0) << out;
  EXPECT_NE(out.find("rlhf tokenize runs in one process"), std::string::npos) << out;
  EXPECT_NE(out.find(" of 2 exited with code 1; stopping the other ranks"), std::string::npos) << out;
}

}  // namespace

#include <fstream>

#include <nlohmann/json.hpp>

#include "model/tensor_compare.h"
#include "model/tiny_model.h"

namespace {

// `rlhf infer` with 2 ranks (each generating every other batch, rank 0 writing) writes the
// same bytes as 1 process, sampled or greedy, with a last round that only rank 0 fills.
TEST(DistInfer, TwoRanksWriteTheBytesOfOneProcess) {
  const fs::path dir = rlhf::testing::scratch_dir();
  rlhf::testing::write_tiny_hf_model(dir / "model");
  {
    std::ofstream p(dir / "prompts.jsonl");
    for (int i = 0; i < 9; ++i) p << nlohmann::json{{"input_text", "say: " + std::to_string(i) + " ->"}, {"id", i}}.dump() << "\n";
  }
  for (const char* temperature : {"0", "0.9"}) {
    SCOPED_TRACE(temperature);
    const std::string args = " infer --model " + (dir / "model").string() + " --input " + (dir / "prompts.jsonl").string() +
                             " --max-new-tokens 6 --batch-size 2 --seed 4 --no-progress --temperature " + temperature +
                             " --output ";
    int rc = 0;
    std::string log = capture(cli() + args + (dir / "one.jsonl").string(), &rc, true);
    ASSERT_EQ(rc, 0) << log;
    log = capture(cli() + " --nproc-per-node 2" + args + (dir / "two.jsonl").string(), &rc, true);
    ASSERT_EQ(rc, 0) << log;
    EXPECT_EQ(rlhf::testing::read_text(dir / "two.jsonl"), rlhf::testing::read_text(dir / "one.jsonl"));
    EXPECT_FALSE(fs::exists(dir / "two.jsonl.partial"));
    // Run again: rank 0 finds it complete and every rank stops.
    log = capture(cli() + " --nproc-per-node 2" + args + (dir / "two.jsonl").string(), &rc, true);
    EXPECT_EQ(rc, 0) << log;
    EXPECT_NE(log.find("already complete"), std::string::npos) << log;
    // Other settings onto that output: rank 0 refuses, and the other rank stops with it.
    log = capture(cli() + " --nproc-per-node 2" + args + (dir / "two.jsonl").string() + " --top-k 5", &rc, true);
    EXPECT_NE(rc, 0) << log;
    EXPECT_NE(log.find("[rank 0] error: " + (dir / "two.jsonl").string() + " exists and was not written by this command"),
              std::string::npos)
        << log;
    // A .partial cut in the middle of a batch (3 of 9 lines) is continued by 2 ranks to the
    // same bytes.
    {
      const std::string whole = rlhf::testing::read_text(dir / "one.jsonl");
      size_t at = 0;
      for (int k = 0; k < 3; ++k) at = whole.find('\n', at) + 1;
      std::ofstream(dir / "three.jsonl.partial", std::ios::binary) << whole.substr(0, at);
      log = capture(cli() + " --nproc-per-node 2" + args + (dir / "three.jsonl").string(), &rc, true);
      ASSERT_EQ(rc, 0) << log;
      EXPECT_NE(log.find("3 of 9 prompts done"), std::string::npos) << log;
      EXPECT_EQ(rlhf::testing::read_text(dir / "three.jsonl"), whole);
    }
    fs::remove(dir / "one.jsonl");
    fs::remove(dir / "two.jsonl");
    fs::remove(dir / "three.jsonl");
  }
}

}  // namespace

#include "rlhf/train/tensor_file.h"

namespace {

// train-reward on 2 ranks (each a micro-batch of every step, gradients summed over the ranks)
// gives the one-process run's per-step rank_loss and final adapter, to float tolerance; rank 0
// alone writes the folder.
std::string reward_cmd(const fs::path& dir, const std::string& launcher, const std::string& out, int steps) {
  return cli() + launcher + " train-reward --preference-dataset " + (dir / "prefs.jsonl").string() +
         " --large-model-reference " + (dir / "model").string() + " --output " + (dir / out).string() +
         " --reward-model-train-steps " + std::to_string(steps) +
         " --batch-size 8 --micro-batch-size 4"
         " --reward-model-learning-rate-multiplier 20 --prompt-sequence-length 32 --target-sequence-length 24"
         " --validation-every 3 --checkpoint-every 3 --threads 1 --no-progress";
}

TEST(DistTrain, RewardModelOnTwoRanksMatchesOneProcess) {
  const fs::path dir = rlhf::testing::scratch_dir();
  rlhf::testing::write_tiny_hf_model(dir / "model");
  rlhf::testing::write_marker_preferences(dir / "prefs.jsonl", 40, 3);
  auto train = [&](const std::string& launcher, const std::string& out) {
    int rc = 0;
    const std::string log = capture(reward_cmd(dir, launcher, out, 6), &rc, true);
    EXPECT_EQ(rc, 0) << log;
  };
  train("", "one");
  train(" --nproc-per-node 2", "two");
  auto losses = [&](const std::string& out) {
    std::map<int64_t, double> m;
    for (const auto& r : rlhf::testing::read_jsonl(dir / out / "logs" / "metrics.jsonl"))
      if (r.contains("rank_loss")) m[r["step"].get<int64_t>()] = r["rank_loss"].get<double>();
    return m;
  };
  const auto a = losses("one"), b = losses("two");
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), 6u);
  for (const auto& [step, loss] : a) EXPECT_NEAR(b.at(step), loss, 1e-5) << "step " << step;
  EXPECT_LT(rlhf::testing::max_tensor_difference(dir / "one", dir / "two"), 1e-5);
}

// A rank SIGKILLed mid-training stops the job (the launcher names it, every rank exits); the
// job resumed on 2 ranks from rank 0's last checkpoint ends where an uninterrupted run ends.
TEST(DistTrain, ARankKilledMidTrainingThenResumedOnTwoRanksEndsTheSame) {
  const fs::path dir = rlhf::testing::scratch_dir();
  rlhf::testing::write_tiny_hf_model(dir / "model");
  rlhf::testing::write_marker_preferences(dir / "prefs.jsonl", 40, 3);
  const int steps = 600;  // a few seconds: time to kill it in the middle
  int rc = 0;
  std::string log = capture(reward_cmd(dir, "", "whole", steps), &rc, true);
  ASSERT_EQ(rc, 0) << log;

  const std::string launcher = capture(reward_cmd(dir, " --nproc-per-node 2", "killed", steps) + " > " +
                                       (dir / "killed.log").string() + " 2>&1 & echo $!");
  // Wait for a checkpoint, then SIGKILL rank 1 (the launcher's second child).
  bool checkpointed = false;
  for (int i = 0; i < 3000 && !checkpointed; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    checkpointed = fs::exists(dir / "killed" / "checkpoints" / "step-0000030" / "trainer_state.json");
  }
  ASSERT_TRUE(checkpointed) << rlhf::testing::read_text(dir / "killed.log");
  const std::string children = capture("pgrep -P " + launcher);
  std::istringstream in(children);
  std::string first, second;
  in >> first >> second;
  ASSERT_FALSE(second.empty()) << children;
  ::kill(std::stoi(std::max(first, second, [](const std::string& a, const std::string& b) {
           return std::stoi(a) < std::stoi(b);
         })),
         SIGKILL);
  bool gone = false;
  for (int i = 0; i < 300 && !gone; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    gone = ::kill(std::stoi(launcher), 0) != 0;
  }
  ASSERT_TRUE(gone) << "the job is still running";
  const std::string killed_log = rlhf::testing::read_text(dir / "killed.log");
  EXPECT_NE(killed_log.find("exited with signal 9; stopping the other ranks"), std::string::npos) << killed_log;
  EXPECT_FALSE(fs::exists(dir / "killed" / "reward_model.json")) << "the run did not finish";

  log = capture(reward_cmd(dir, " --nproc-per-node 2", "killed", steps) + " --resume", &rc, true);
  ASSERT_EQ(rc, 0) << log;
  EXPECT_NE(log.find("resuming from"), std::string::npos) << log;
  EXPECT_LT(rlhf::testing::max_tensor_difference(dir / "whole", dir / "killed"), 1e-5);
}

}  // namespace

namespace {

// `rlhf score` on 2 ranks (batch j on rank j mod 2, rewards summed) writes the bytes of 1 process.
TEST(DistScore, TwoRanksWriteTheBytesOfOneProcess) {
  const fs::path dir = rlhf::testing::scratch_dir();
  rlhf::testing::write_tiny_hf_model(dir / "model");
  rlhf::testing::write_marker_preferences(dir / "prefs.jsonl", 16, 5);
  int rc = 0;
  std::string log = capture(reward_cmd(dir, "", "rm", 2), &rc, true);
  ASSERT_EQ(rc, 0) << log;
  {
    std::ofstream f(dir / "rows.jsonl");
    for (int i = 0; i < 13; ++i)
      f << nlohmann::json{{"input_text", "say: " + std::to_string(i) + " ->"},
                          {"completion", std::string(static_cast<size_t>(i % 5 + 1), 'a') + " # b"}}
               .dump()
        << "\n";
  }
  const std::string args = " score --reward-model " + (dir / "rm").string() + " --input " +
                           (dir / "rows.jsonl").string() + " --batch-size 4 --output ";
  log = capture(cli() + args + (dir / "one.jsonl").string(), &rc, true);
  ASSERT_EQ(rc, 0) << log;
  log = capture(cli() + " --nproc-per-node 2" + args + (dir / "two.jsonl").string(), &rc, true);
  ASSERT_EQ(rc, 0) << log;
  EXPECT_EQ(rlhf::testing::read_text(dir / "two.jsonl"), rlhf::testing::read_text(dir / "one.jsonl"));
  EXPECT_EQ(rlhf::testing::read_jsonl(dir / "two.jsonl").size(), 13u);
}

}  // namespace

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

namespace {

// A long dist-check (until stopped) with a 5 s collective timeout; the port in its size makes
// its command line its own, for pgrep.
std::string long_check(int port) {
  return " --dist-timeout 5 dist-check --iterations 100000 --megabytes 8." + std::to_string(port);
}
std::string long_check_pattern(int port) {
  return "dist-check [-]-iterations 100000 --megabytes 8[.]" + std::to_string(port);
}

// Starts `command` in the background: its output into `log`, its pid into `log`.pid, its exit
// status into `log`.rc when it ends. Returns the pid.
int start_in_background(const std::string& command, const fs::path& log) {
  const std::string l = log.string();
  capture("(" + command + " > " + l + " 2>&1 & echo $! > " + l + ".pid.tmp; mv " + l + ".pid.tmp " + l +
          ".pid; wait $!; echo $? > " + l + ".rc.tmp; mv " + l + ".rc.tmp " + l + ".rc) > /dev/null 2>&1 &");
  for (int i = 0; i < 500; ++i) {
    if (fs::exists(l + ".pid")) return std::stoi(rlhf::testing::read_text(l + ".pid"));
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ADD_FAILURE() << "did not start: " << command;
  return -1;
}

// The exit status `log`.rc holds once the command ends, and the seconds waited for it; -1 when
// it did not end within `limit`.
std::pair<int, double> wait_for_exit(const fs::path& log, std::chrono::seconds limit) {
  const auto t0 = std::chrono::steady_clock::now();
  const fs::path rc = log.string() + ".rc";
  while (std::chrono::steady_clock::now() - t0 < limit) {
    if (fs::exists(rc))
      return {std::stoi(rlhf::testing::read_text(rc)),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()};
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return {-1, std::chrono::duration<double>(limit).count()};
}

// Waits until both ranks of the job whose store is at 127.0.0.1:`port` are in the middle of
// their all-reduces: their heartbeats in the store ("<unix ms> <collectives entered>") count
// more than the warm-up's.
bool both_ranks_all_reduce(int port) {
  const auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60)) {
    try {
      c10d::TCPStoreOptions o;
      o.port = static_cast<std::uint16_t>(port);
      o.waitWorkers = false;
      o.timeout = std::chrono::seconds(2);
      c10d::TCPStore store("127.0.0.1", o);
      while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60)) {
        if (store.check({"heartbeat/0", "heartbeat/1"})) {
          bool busy = true;
          for (const auto& v : store.multiGet({"heartbeat/0", "heartbeat/1"})) {
            unsigned long long ms = 0, n = 0;
            busy = busy && std::sscanf(std::string(v.begin(), v.end()).c_str(), "%llu %llu", &ms, &n) == 2 && n > 60;
          }
          if (busy) return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    } catch (const std::exception&) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));  // not served yet
    }
  }
  return false;
}

bool gone(const std::string& pattern) {
  for (int i = 0; i < 150; ++i) {
    if (capture("pgrep -f -- '" + pattern + "' || true").empty()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

// Two ranks of a long dist-check started with plain variables; whatever the test did, both
// are gone (continued and killed) when it ends.
struct TwoRanks {
  fs::path dir;
  int port;
  int pid[2] = {-1, -1};
  TwoRanks(const fs::path& d, int p) : dir(d), port(p) {
    fs::create_directories(dir);
    for (int r : {0, 1})
      pid[r] = start_in_background("RANK=" + std::to_string(r) + " WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
                                       std::to_string(port) + " " + cli() + long_check(port),
                                   log(r));
  }
  ~TwoRanks() {
    for (int p : pid)
      if (p > 0) {
        ::kill(p, SIGCONT);
        ::kill(p, SIGKILL);
      }
    EXPECT_TRUE(gone(long_check_pattern(port))) << capture("pgrep -a -f -- '" + long_check_pattern(port) + "'");
  }
  fs::path log(int r) const { return dir / ("rank" + std::to_string(r) + ".log"); }
  std::string logs() const {
    return "rank 0: " + rlhf::testing::read_text(log(0)) + "\nrank 1: " + rlhf::testing::read_text(log(1));
  }
};

// Rank `victim` of a 2-rank job started with plain variables (no launcher to name it) gets
// `sig` while both all-reduce; what the other rank then does: its exit code, seconds, output.
struct Survivor {
  int rc = -1;
  double seconds = 0;
  std::string out;
};
Survivor survivor_of(const fs::path& dir, int port, int victim, int sig) {
  TwoRanks job(dir, port);
  EXPECT_TRUE(both_ranks_all_reduce(port)) << job.logs();
  EXPECT_EQ(::kill(job.pid[victim], sig), 0);
  const int survivor = 1 - victim;
  Survivor s;
  std::tie(s.rc, s.seconds) = wait_for_exit(job.log(survivor), std::chrono::seconds(60));
  s.out = rlhf::testing::read_text(job.log(survivor));
  EXPECT_EQ(s.rc, 1) << s.out;
  EXPECT_LT(s.seconds, 5 + 15) << s.out;
  EXPECT_EQ(s.out.find("frame #"), std::string::npos) << "no backtrace: " << s.out;
  return s;
}

// A rank SIGKILLed mid-job: the other exits non-zero within the timeout, naming it, whether it
// is rank 1 or rank 0 (which served the store).
TEST(DistFailure, AKilledRankIsNamedByTheOtherWithinTheTimeout) {
  const fs::path dir = rlhf::testing::scratch_dir();
  for (int victim : {1, 0}) {
    SCOPED_TRACE("rank " + std::to_string(victim) + " killed");
    const Survivor s = survivor_of(dir / std::to_string(victim), 29701 + victim, victim, SIGKILL);
    const std::string named = victim == 1 ? "rank 1 of 2 stopped answering (its last sign of life "
                                          : "rank 0 of 2 died: the job's store it serves at 127.0.0.1:29701 is gone";
    EXPECT_NE(s.out.find("error: rank " + std::to_string(1 - victim) + " of 2: an all-reduce failed: " + named),
              std::string::npos)
        << s.out;
  }
}

// A rank stopped (SIGSTOP: it hangs, its connections stay open) makes the other exit within
// the timeout naming it; rank 0 stopped silences the store it serves, and that is said.
TEST(DistFailure, AStoppedRankIsNamedByTheOtherWithinTheTimeout) {
  const fs::path dir = rlhf::testing::scratch_dir();
  for (int victim : {1, 0}) {
    SCOPED_TRACE("rank " + std::to_string(victim) + " stopped");
    const Survivor s = survivor_of(dir / std::to_string(victim), 29703 + victim, victim, SIGSTOP);
    const std::string named = victim == 1 ? "rank 1 of 2 stopped answering (its last sign of life "
                                          : "rank 0 of 2 stopped answering (it hangs or was stopped): the job's "
                                            "store it serves at 127.0.0.1:29703 is silent";
    EXPECT_NE(s.out.find(named), std::string::npos) << s.out;
    EXPECT_NE(s.out.find("Timed out"), std::string::npos) << "Gloo's own timeout: " << s.out;
  }
}

// Under torchrun, a rank SIGKILLed mid-job ends the job within the timeout, and the killed rank
// is named (by torchrun, which stops the others at once, or by the survivor's error).
TEST(DistFailure, AKilledRankUnderTorchrunIsNamed) {
  const fs::path torchrun = rlhf::testing::source_dir() / ".venv/bin/torchrun";
  if (!fs::exists(torchrun)) GTEST_SKIP() << "torchrun absent: run scripts/setup --dev";
  const fs::path dir = rlhf::testing::scratch_dir();
  const int port = 29705;
  const int launcher = start_in_background(torchrun.string() + " --nproc-per-node 2 --master-port " +
                                               std::to_string(port) + " --no-python " + cli() + long_check(port),
                                           dir / "torchrun.log");
  ASSERT_GT(launcher, 0);
  const bool running = both_ranks_all_reduce(port);
  int rank1 = -1;
  std::istringstream children(capture("pgrep -P " + std::to_string(launcher)));
  for (std::string child; children >> child;) {
    std::istringstream environ(rlhf::testing::read_text("/proc/" + child + "/environ"));
    for (std::string var; std::getline(environ, var, '\0');)
      if (var == "RANK=1") rank1 = std::stoi(child);
  }
  if (!running || rank1 < 0) ::kill(launcher, SIGTERM);
  ASSERT_TRUE(running) << rlhf::testing::read_text(dir / "torchrun.log");
  ASSERT_GT(rank1, 0) << "no child of torchrun has RANK=1";
  ASSERT_EQ(::kill(rank1, SIGKILL), 0);
  const auto [rc, seconds] = wait_for_exit(dir / "torchrun.log", std::chrono::seconds(60));
  const std::string out = rlhf::testing::read_text(dir / "torchrun.log");
  EXPECT_NE(rc, 0) << out;
  EXPECT_LT(seconds, 5 + 15) << out;
  EXPECT_TRUE(out.find("local_rank: 1 (pid: " + std::to_string(rank1) + ")") != std::string::npos ||
              out.find("rank 1 of 2 stopped answering") != std::string::npos)
      << out;
  EXPECT_TRUE(gone(long_check_pattern(port))) << capture("pgrep -a -f -- '" + long_check_pattern(port) + "'");
}

// --dist-timeout: a whole number of seconds in [1, 86400], anywhere on the line; anything else
// is refused before any rank starts.
TEST(DistFailure, DistTimeoutFlag) {
  for (const char* bad : {"0", "-5", "abc", "1.5", "86401", ""}) {
    SCOPED_TRACE(bad);
    int rc = 0;
    const std::string out =
        capture(cli() + " --nproc-per-node 2 dist-check --dist-timeout '" + std::string(bad) + "'", &rc, true);
    EXPECT_EQ(rc, 2) << out;
    EXPECT_NE(out.find("error: --dist-timeout \"" + std::string(bad) +
                       "\": the seconds a collective waits for the other ranks must be a whole number in [1, 86400]"),
              std::string::npos)
        << out;
    EXPECT_EQ(out.find("[rank"), std::string::npos) << "no rank started: " << out;
  }
  int rc = 0;
  std::string out = capture(cli() + " dist-check --dist-timeout", &rc, true);
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("error: --dist-timeout needs the seconds"), std::string::npos) << out;
  out = capture(cli() + " --dist-timeout=30 --nproc-per-node 2 dist-check --megabytes 1 --iterations 2", &rc, true);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(count(out, "all-reduce sum 3 (expected 3) ok"), 2u) << out;
  out = capture(cli() + " --help", &rc, true);
  EXPECT_NE(out.find("--dist-timeout SECONDS"), std::string::npos) << out;
}

// A data-parallel run started with --nproc-per-node and interrupted says how to continue it
// with the same ranks and flags.
TEST(DistFailure, TheContinueCommandKeepsTheRanks) {
  const fs::path dir = rlhf::testing::scratch_dir();
  rlhf::testing::write_tiny_hf_model(dir / "model");
  rlhf::testing::write_marker_preferences(dir / "prefs.jsonl", 40, 3);
  const std::string launcher = capture(reward_cmd(dir, " --nproc-per-node 2 --dist-timeout 60", "rm", 600) + " > " +
                                       (dir / "log").string() + " 2>&1 & echo $!");
  bool checkpointed = false;
  for (int i = 0; i < 3000 && !checkpointed; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    checkpointed = fs::exists(dir / "rm" / "checkpoints" / "step-0000003" / "trainer_state.json");
  }
  ASSERT_EQ(::kill(std::stoi(launcher), SIGTERM), 0);
  bool ended = false;
  for (int i = 0; i < 300 && !ended; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ended = ::kill(std::stoi(launcher), 0) != 0;
  }
  ASSERT_TRUE(ended);
  ASSERT_TRUE(checkpointed) << rlhf::testing::read_text(dir / "log");
  const std::string log = rlhf::testing::read_text(dir / "log");
  EXPECT_NE(log.find("[rank 0] rlhf: interrupted; "), std::string::npos) << log;
  EXPECT_NE(log.find("; continue with: " + cli() + " --nproc-per-node 2 --dist-timeout 60 train-reward "),
            std::string::npos)
      << log;
}

}  // namespace
