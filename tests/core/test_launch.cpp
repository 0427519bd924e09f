// The launcher's environment, read the way PyTorch jobs are launched: torchrun's variables,
// Slurm's, none; and each bad value named.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "rlhf/util/error.h"
#include "rlhf/util/launch.h"
#include "test_util.h"

namespace {

using rlhf::testing::error_of;

// Sets the variables for the scope of a test, and clears every launcher variable around it.
class Env {
 public:
  Env(std::initializer_list<std::pair<const char*, const char*>> vars) {
    clear();
    for (const auto& [k, v] : vars) ::setenv(k, v, 1);
  }
  ~Env() { clear(); }

 private:
  static void clear() {
    for (const char* k : {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                          "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE", "SLURM_STEP_ID",
                          "SLURM_STEPID", "SLURM_STEP_NUM_TASKS", "RLHF_DIST_TIMEOUT"})
      ::unsetenv(k);
  }
};

TEST(DistEnv, NoLauncherIsOneProcess) {
  Env e({});
  auto d = rlhf::read_dist_env();
  EXPECT_FALSE(d.distributed());
  EXPECT_EQ(d.world_size, 1);
  EXPECT_EQ(d.launcher, "none");
}

TEST(DistEnv, TorchrunsVariables) {
  Env e({{"RANK", "3"}, {"LOCAL_RANK", "1"}, {"WORLD_SIZE", "4"}, {"LOCAL_WORLD_SIZE", "2"}, {"MASTER_ADDR", "node0"},
         {"MASTER_PORT", "29500"}});
  auto d = rlhf::read_dist_env();
  EXPECT_EQ(d.rank, 3);
  EXPECT_EQ(d.local_rank, 1);
  EXPECT_EQ(d.world_size, 4);
  EXPECT_EQ(d.local_world_size, 2);
  EXPECT_EQ(d.master_addr, "node0");
  EXPECT_EQ(d.master_port, 29500);
  EXPECT_EQ(d.launcher, "torchrun");
}

TEST(DistEnv, SlurmsVariables) {
  Env e({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "16"}, {"SLURM_STEP_NUM_TASKS", "8"}, {"SLURM_STEP_ID", "0"},
         {"SLURM_LOCALID", "1"}, {"SLURM_NTASKS_PER_NODE", "4(x2)"}, {"MASTER_ADDR", "10.0.0.1"},
         {"MASTER_PORT", "12345"}});
  auto d = rlhf::read_dist_env();
  EXPECT_EQ(d.rank, 5);
  EXPECT_EQ(d.world_size, 8);
  EXPECT_EQ(d.local_rank, 1);
  EXPECT_EQ(d.local_world_size, 4);
  EXPECT_EQ(d.launcher, "slurm");
}

TEST(DistEnv, ASlurmBatchScriptIsOneProcess) {
  Env e({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "0"}});  // no job step
  auto d = rlhf::read_dist_env();
  EXPECT_FALSE(d.distributed());
  EXPECT_EQ(d.launcher, "none");
}

TEST(DistEnv, BadValuesAreNamed) {
  {
    Env e({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "1"}});
    EXPECT_NE(error_of([] { rlhf::read_dist_env(); }).find("RANK=2: must be in [0, 1]"), std::string::npos);
  }
  {
    Env e({{"RANK", "0"}, {"WORLD_SIZE", "two"}});
    EXPECT_NE(error_of([] { rlhf::read_dist_env(); }).find("WORLD_SIZE=\"two\": not a whole number"), std::string::npos);
  }
  {
    Env e({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}});
    EXPECT_NE(error_of([] { rlhf::read_dist_env(); }).find("MASTER_PORT is not set"), std::string::npos);
  }
  {
    Env e({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "70000"}});
    EXPECT_NE(error_of([] { rlhf::read_dist_env(); }).find("MASTER_PORT=70000: must be in [1, 65535]"),
              std::string::npos);
  }
  {
    Env e({{"RLHF_DIST_TIMEOUT", "0"}});
    EXPECT_NE(error_of([] { rlhf::read_dist_env(); }).find("RLHF_DIST_TIMEOUT=0: must be in [1, 86400]"),
              std::string::npos);
  }
  {
    Env e({{"WORLD_SIZE", "1"}});
    EXPECT_NE(error_of([] { rlhf::read_dist_env(); }).find("RANK is not set"), std::string::npos);
  }
}

}  // namespace
