// How a process finds its place in a distributed job, and how one machine starts one.
//
// read_dist_env() reads the launcher's environment, the way every PyTorch job does:
//   torchrun      RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT
//   Slurm (srun)  SLURM_PROCID, SLURM_STEP_NUM_TASKS (else SLURM_NTASKS), SLURM_LOCALID (and
//                 SLURM_NTASKS_PER_NODE), with MASTER_ADDR and MASTER_PORT from the
//                 environment; only inside a job step (SLURM_STEP_ID set): a batch script
//                 sees SLURM_PROCID too, but is one process
//   none          one process (rank 0 of 1)
// torchrun's variables win over Slurm's when both are set (torchrun inside an allocation).
//
// run_local_ranks() is `--nproc-per-node N` for a machine without Python: it starts N copies
// of this program with torchrun's variables (MASTER_ADDR 127.0.0.1 and a free port; and
// OMP_NUM_THREADS = cores / N unless it is set, so the ranks share the cores), prefixes
// each line a child writes with "[rank R] ", and stops them all when one fails, when one is
// killed, or on Ctrl-C / SIGTERM.
#pragma once
#include <string>
#include <vector>

namespace rlhf {

struct DistEnv {
  int rank = 0, world_size = 1;
  int local_rank = 0, local_world_size = 1;
  std::string master_addr;  // "" when world_size is 1
  int master_port = 0;
  std::string launcher = "none";  // "torchrun" (or plain variables), "slurm", "none"
  int timeout_seconds = 600;      // a collective's wait for the other ranks (--dist-timeout, RLHF_DIST_TIMEOUT)

  bool distributed() const { return world_size > 1; }
};

// The seconds of `--dist-timeout` (main sets RLHF_DIST_TIMEOUT from it): a whole number in
// [1, 86400]. Throws rlhf::Error naming `source` ("--dist-timeout") and the value otherwise.
int parse_dist_timeout(const std::string& text, const std::string& source);

// The job this process is part of. Throws rlhf::Error naming the variable that is missing,
// not a number, or out of range (a rank outside [0, world size), a port outside 1..65535,
// RLHF_DIST_TIMEOUT outside 1..86400 seconds).
DistEnv read_dist_env();

// Starts `nproc` ranks of `argv` (argv[0] is replaced by this program's own path) and waits
// for them. Returns 0 when every rank exits 0; otherwise the first failure's exit code (128 +
// the signal for a rank killed by one), after stopping the others and naming the rank.
int run_local_ranks(int nproc, const std::vector<std::string>& argv);

}  // namespace rlhf
