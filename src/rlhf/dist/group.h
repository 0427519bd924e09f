// The process group of a distributed job: PyTorch's c10d — a TCPStore at MASTER_ADDR:MASTER_PORT
// (rank 0 serves it) and ProcessGroupGloo for tensors on the CPU; in a CUDA build, a group made
// for a GPU (its device, or use_device) adds ProcessGroupNCCL for the all-reduces of tensors on
// that GPU. Every collective waits at most `timeout`; a rank that died or hangs makes the others
// fail with an error naming the collective and the lost rank, instead of waiting forever.
//
// How a lost rank is named: each rank writes a sign of life into the store every second
// ("heartbeat/<rank>": the time and how many collectives it has entered), from a thread of its
// own over a connection of its own, so a collective costs no extra round trip. When a
// collective fails (a peer's connection closed, or the timeout passed), the rank reads the
// others' heartbeats for a few seconds: those that do not move stopped answering; a store that
// is gone or silent means its server (rank 0; torchrun's agent under torchrun) died or hangs; a
// rank that answers but has entered fewer collectives is stuck outside them.
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
  // rlhf::Error naming MASTER_ADDR:MASTER_PORT when the rendezvous fails. A CUDA `device` is
  // use_device's.
  Group(const DistEnv& env, std::chrono::milliseconds timeout, torch::Device device = torch::kCPU);
  ~Group();  // stops the heartbeat (see stop_heartbeat)

  int rank() const { return env_.rank; }
  int size() const { return env_.world_size; }
  const DistEnv& env() const { return env_; }

  // From now on, all-reduces of tensors on the GPU go through NCCL on `device` ("cuda" is the
  // rank's own, cuda:LOCAL_RANK); the CPU changes nothing. Every rank calls it at the same
  // point of the job. Throws rlhf::Error in a CPU build, or when the group already uses
  // another GPU.
  void use_device(torch::Device device);
  // The GPU of use_device, else the CPU.
  torch::Device device() const;

  // Sums the tensors element-wise over the ranks, in place (contiguous tensors): through Gloo
  // for tensors on the CPU, through NCCL for tensors on the group's GPU (device()).
  void all_reduce_sum(std::vector<torch::Tensor>& tensors);
  // Every rank's bytes, in rank order (two all-gathers of Gloo, so with the timeout too).
  std::vector<std::string> all_gather_bytes(const std::string& mine);
  void barrier();

  // A message through the job's store (rank 0 serves it) for waits that may outlast the
  // collective timeout, as a rank's while rank 0 alone works: set_key stores `value`;
  // wait_key polls until some rank has set `key` and returns its value, or nullopt once
  // `limit` has passed (zero: looks once; milliseconds::max(): no limit). Throws rlhf::Error
  // when the store stops answering (rank 0 is gone).
  void set_key(const std::string& key, const std::string& value);
  std::optional<std::string> wait_key(const std::string& key, std::chrono::milliseconds limit);

  // Writes this rank's last heartbeat (marked "exited") and stops its thread, waiting at most
  // a second for it: a thread stuck on a store that no longer answers is left to the process's
  // exit (it holds nothing the exit destroys). Idempotent; job() calls it at exit.
  void stop_heartbeat();

 private:
  struct Impl;  // the c10d objects and the heartbeat (their headers need Gloo's; only group.cpp includes them)
  DistEnv env_;
  std::unique_ptr<Impl> impl_;
};

// The job this process was started in (read_dist_env), joined on first use; nullptr when the
// process runs alone. Collectives wait up to RLHF_DIST_TIMEOUT seconds (default 600; the
// flag --dist-timeout sets it). Its heartbeat stops at the process's exit (atexit).
Group* job();
// The same, for a command whose tensors live on `device`: a GPU is the job's use_device.
Group* job(torch::Device device);

// What `rlhf dist-check` finds: the job as this rank sees it, an all-reduce of rank + 1 (every
// rank must get 1 + 2 + ... + N), and the time of an all-reduce of `bytes` of float32, the
// median of `iterations` (after 50 warm-up ones), with tensors on the group's device().
struct CheckResult {
  double sum = 0, expected = 0;
  size_t bytes = 0;
  double median_ms = 0;
};
CheckResult check_job(Group& group, size_t bytes, int iterations);

}  // namespace rlhf::dist
