// TrainerRun: what `rlhf train-reward` and `rlhf train-policy` do around their steps, in one
// place. A run
//   - claims its output folder (util/output_dir.h): a new or empty folder, or one holding
//     this command's earlier run, and then only with --resume;
//   - resumes from the newest complete checkpoint, whose fingerprint (the settings and input
//     hashes that decide the result) must equal this run's, restoring the optimizer and the
//     training time;
//   - logs metrics under OUT/logs (TensorBoard, CSV, JSONL) and draws the progress bar;
//   - saves atomic checkpoints (OUT/checkpoints/step-N, see checkpoint.h);
//   - skips optimizer steps whose gradient norm is not finite (NonFiniteGradGuard, optim.h);
//   - writes summary.json at the end (the trainer writes its folder's manifest last,
//     trained_folder.h).
// Also here: the epoch stream of shuffled indices and the check of a config against its
// settings table. The trainers own their models, data and steps.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/track/metrics.h"
#include "rlhf/train/optim.h"
#include "rlhf/util/error.h"
#include "rlhf/util/progress.h"
#include "rlhf/util/settings.h"

namespace rlhf {
namespace dist {
class Group;
}  // namespace dist

// Positions 0, 1, 2, ... of a stream over n items: epoch e = position / n is the permutation
// of 0..n-1 by (seed + e). A step of B items reads positions step·B .. step·B + B - 1, so the
// order is a pure function of the seed and the step.
class EpochStream {
 public:
  EpochStream(size_t n, uint64_t seed) : n_(n), seed_(seed) {}
  size_t operator[](int64_t position);
  size_t size() const { return n_; }

 private:
  size_t n_;
  uint64_t seed_;
  int64_t epoch_ = -1;
  std::vector<size_t> order_;
};

struct TrainerRunOptions {
  std::string command;              // "train-policy": the claim's and the progress bar's name
  std::string output;               // the folder of the run
  std::vector<std::string> own;     // the top-level entries the trainer writes there
  bool resume = false;
  bool progress = true;
  int64_t keep_checkpoints = 2;
  int64_t max_skipped_steps = 5;
  std::string what;                 // the model trained, in the guard's messages ("policy")
  torch::Device device = torch::kCPU;
};

class TrainerRun {
 public:
  // Claims an existing output folder; throws rlhf::Error, before any work, when it holds
  // files this command did not write, or an earlier run without --resume. A missing folder
  // is created by begin(), so input that fails before training leaves nothing behind.
  explicit TrainerRun(TrainerRunOptions options);

  // Starts the run for `steps` steps: with --resume, the newest checkpoint's fingerprint is
  // checked against `fingerprint` and the optimizer and the training time are restored (the
  // trainer restores its models from resumed()->dir); then the folder is claimed and the
  // metrics logger opened (rows logged after the checkpoint are dropped).
  void begin(const nlohmann::json& fingerprint, int64_t steps, AdamW& optimizer);

  struct Resumed {
    std::string dir;            // the checkpoint folder
    nlohmann::json state;       // its trainer_state.json
  };
  const std::optional<Resumed>& resumed() const { return resumed_; }
  int64_t start() const { return start_; }   // the first step to train
  int64_t steps() const { return steps_; }
  const std::filesystem::path& out() const { return out_; }
  const nlohmann::json& fingerprint() const { return fingerprint_; }

  track::MetricsLogger& logger() { return *logger_; }
  // Steps the optimizer in place of AdamW::step (skipping non-finite gradients).
  NonFiniteGradGuard& guard() { return guard_; }
  // Seconds spent in steps, this run and the runs it resumes.
  double train_seconds = 0;

  // Writes checkpoint `step`: `write(dir)` saves the models, this adds the optimizer and
  // trainer_state.json (`state` plus the step, optimizer steps, fingerprint, threads, time).
  void save_checkpoint(int64_t step, nlohmann::json state, const std::function<void(const std::string&)>& write);
  // Whether the checkpoint of the last step is still to be written (always after training;
  // after a resume of a finished run only when it is missing).
  bool final_checkpoint_missing() const;

  // The progress bar (when enabled): `done` steps, a status after them.
  void progress(int64_t done, const std::string& status);
  void finish_progress();

  // summary.json with the peak memory and thread count added; the logger is flushed.
  void write_summary(nlohmann::json& summary);

  // Data parallelism (a job started by torchrun, srun or --nproc-per-node; see dist/group.h).
  // Rank 0 alone claims the folder and writes logs, checkpoints, the summary and the model;
  // every rank reads a checkpoint to resume.
  int rank() const;
  int world() const;
  bool writer() const { return rank() == 0; }
  // Which of the work units (micro-batches) with these costs are this rank's: balanced by
  // balance_ranks, the same split on every rank; all of them in one process.
  std::vector<bool> my_share(const std::vector<double>& costs) const;
  // Sums the optimizer's gradients over the ranks (a parameter without one counts as zeros),
  // so each rank steps with the gradient of the whole batch. Nothing in one process.
  void all_reduce_gradients(AdamW& optimizer);
  // Sums the values over the ranks, in place (statistics of the whole batch).
  void all_reduce(std::vector<double>& values);
  // Sums the tensors over the ranks, in place, as one flat float32 bucket (any shapes; the same
  // list on every rank). A rank fills the rows it computed and leaves the others zero, so the
  // sum is the whole batch's tensor, exactly.
  void all_reduce(const std::vector<torch::Tensor>& tensors);
  // Every rank's bytes, in rank order ({mine} in one process).
  std::vector<std::string> all_gather(const std::string& mine);
  // With several ranks, adds the step's collective metrics and starts counting anew:
  // time/collectives (seconds in the collectives above, waiting for slower ranks included) and
  // dist/allreduce_bytes (what they summed). Nothing in one process.
  void add_collective_metrics(std::map<std::string, double>& metrics);

 private:
  void claim();

  TrainerRunOptions options_;
  std::filesystem::path out_;
  bool claimed_ = false;
  AdamW* optimizer_ = nullptr;
  nlohmann::json fingerprint_;
  std::optional<Resumed> resumed_;
  int64_t start_ = 0, steps_ = 0;
  NonFiniteGradGuard guard_;
  std::unique_ptr<track::MetricsLogger> logger_;
  std::unique_ptr<Progress> bar_;
  dist::Group* group_ = nullptr;  // the job, or null in one process
  double collective_seconds_ = 0, collective_bytes_ = 0;
};

// The rank of each work unit: the costliest first, each to the rank with the least cost so far
// (ties: the lower rank, then the earlier unit), so the ranks finish together. A pure function
// of the costs, so every rank computes the same split.
std::vector<int> balance_ranks(const std::vector<double>& costs, int ranks);

// The median of v (0 when empty).
double median(std::vector<double> v);

}  // namespace rlhf
