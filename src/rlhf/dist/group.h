// The process group of a distributed job: PyTorch's c10d — a TCPStore at MASTER_ADDR:MASTER_PORT
// (rank 0 serves it) and ProcessGroupGloo for tensors on the CPU. Every collective waits at
// most `timeout`; a rank that died or hangs makes the others fail with an error naming the
// collective, instead of waiting forever.
#pragma once
#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rlhf/util/launch.h"

namespace rlhf::dist {

class Group {
 public:
  // Joins the job `env` describes (waits for every rank to arrive, up to `timeout`). Throws
  // rlhf::Error naming MASTER_ADDR:MASTER_PORT when the rendezvous fails.
  Group(const DistEnv& env, std::chrono::milliseconds timeout);
  ~Group();

  int rank() const { return env_.rank; }
  int size() const { return env_.world_size; }
  const DistEnv& env() const { return env_; }

  // Sums the tensors element-wise over the ranks, in place (contiguous CPU tensors).
  void all_reduce_sum(std::vector<torch::Tensor>& tensors);
  // Every rank's bytes, in rank order.
  std::vector<std::string> all_gather_bytes(const std::string& mine);
  void barrier();

  // A message through the job's store (rank 0 serves it) for waits that may outlast the
  // collective timeout, as a rank's while rank 0 alone works: set_key stores `value`;
  // wait_key polls until some rank has set `key` and returns its value, or nullopt once
  // `limit` has passed (zero: looks once; milliseconds::max(): no limit). Throws rlhf::Error
  // when the store stops answering (rank 0 is gone).
  void set_key(const std::string& key, const std::string& value);
  std::optional<std::string> wait_key(const std::string& key, std::chrono::milliseconds limit);

 private:
  struct Impl;  // the c10d objects (their headers need Gloo's; only group.cpp includes them)
  DistEnv env_;
  std::unique_ptr<Impl> impl_;
};

// The job this process was started in (read_dist_env), joined on first use; nullptr when the
// process runs alone. Collectives wait up to RLHF_DIST_TIMEOUT seconds (default 600).
Group* job();

// What `rlhf dist-check` finds: the job as this rank sees it, an all-reduce of rank + 1 (every
// rank must get 1 + 2 + ... + N), and the time of an all-reduce of `bytes` of float32, the
// median of `iterations` (after 50 warm-up ones).
struct CheckResult {
  double sum = 0, expected = 0;
  size_t bytes = 0;
  double median_ms = 0;
};
CheckResult check_job(Group& group, size_t bytes, int iterations);

}  // namespace rlhf::dist
