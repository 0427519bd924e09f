#include "rlhf/train/trainer_run.h"

#include "rlhf/dist/group.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "rlhf/data/dataset.h"
#include "rlhf/train/checkpoint.h"
#include "rlhf/train/tensor_file.h"
#include "rlhf/util/fs.h"
#include "rlhf/util/output_dir.h"

namespace rlhf {
namespace fs = std::filesystem;
using nlohmann::json;

size_t EpochStream::operator[](int64_t position) {
  const int64_t n = static_cast<int64_t>(n_);
  const int64_t epoch = position / n;
  if (epoch != epoch_) {
    order_ = data::permutation(n_, seed_ + static_cast<uint64_t>(epoch));
    epoch_ = epoch;
  }
  return order_[static_cast<size_t>(position % n)];
}

TrainerRun::TrainerRun(TrainerRunOptions options)
    : options_(std::move(options)),
      out_(options_.output),
      guard_(options_.max_skipped_steps, options_.what),
      group_(dist::job(options_.device)) {  // a GPU run sums its tensors through NCCL
  std::error_code ec;
  if (writer() && fs::symlink_status(out_, ec).type() != fs::file_type::not_found) claim();
}

int TrainerRun::rank() const { return group_ ? group_->rank() : 0; }
int TrainerRun::world() const { return group_ ? group_->size() : 1; }

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

void TrainerRun::all_reduce_gradients(AdamW& optimizer) {
  if (!group_) return;
  // One bucket of every gradient (in the parameters' name order, the same on every rank),
  // reduced after the backward passes (no overlap with them).
  std::vector<torch::Tensor> grads;
  for (const auto& [name, p] : optimizer.params()) {
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    grads.push_back(p.grad());
  }
  all_reduce(grads);
}

void TrainerRun::all_reduce(const std::vector<torch::Tensor>& tensors) {
  if (!group_ || tensors.empty()) return;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<torch::Tensor> flat;
  // On the group's device: the rank's GPU (NCCL) in a GPU run, else the CPU (Gloo).
  for (const auto& t : tensors) flat.push_back(t.reshape(-1).to(group_->device(), torch::kFloat32));
  std::vector<torch::Tensor> bucket{torch::cat(flat).contiguous()};
  group_->all_reduce_sum(bucket);
  int64_t at = 0;
  for (const auto& t : tensors) {
    const int64_t n = t.numel();
    t.copy_(bucket[0].slice(0, at, at + n).view(t.sizes()));
    at += n;
  }
  collective_seconds_ += seconds_since(t0);
  collective_bytes_ += static_cast<double>(bucket[0].numel() * 4);
}

void TrainerRun::all_reduce(std::vector<double>& values) {
  if (!group_ || values.empty()) return;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<torch::Tensor> t{torch::tensor(values, torch::kFloat64)};
  group_->all_reduce_sum(t);
  auto acc = t[0].accessor<double, 1>();
  for (size_t i = 0; i < values.size(); ++i) values[i] = acc[static_cast<int64_t>(i)];
  collective_seconds_ += seconds_since(t0);
  collective_bytes_ += static_cast<double>(values.size() * sizeof(double));
}

std::vector<std::string> TrainerRun::all_gather(const std::string& mine) {
  if (!group_) return {mine};
  const auto t0 = std::chrono::steady_clock::now();
  auto all = group_->all_gather_bytes(mine);
  collective_seconds_ += seconds_since(t0);
  return all;
}

void TrainerRun::add_collective_metrics(std::map<std::string, double>& metrics) {
  if (!group_) return;
  metrics["time/collectives"] = collective_seconds_;
  metrics["dist/allreduce_bytes"] = collective_bytes_;
  collective_seconds_ = collective_bytes_ = 0;
}

void TrainerRun::claim() {
  OutputClaim c;
  c.command = options_.command;
  c.own = options_.own;
  c.resume = options_.resume;
  claim_output_dir(options_.output, c);
  claimed_ = true;
}

void TrainerRun::begin(const json& fingerprint, int64_t steps, AdamW& optimizer) {
  fingerprint_ = fingerprint;
  steps_ = steps;
  optimizer_ = &optimizer;
  if (options_.resume) {
    const std::string ckpt = checkpoint::latest(out_.string());
    if (ckpt.empty()) {
      std::fprintf(stderr, "[rlhf] no checkpoint in %s: starting from the beginning\n", options_.output.c_str());
    } else {
      json state = checkpoint::read_state(ckpt);
      checkpoint::check_fingerprint(state, fingerprint_, ckpt);
      start_ = state["step"].get<int64_t>();
      // Optimizer steps differ from training steps (PPO minibatches, skipped steps); a
      // checkpoint without the count is one of a trainer with one update per step.
      const json& opt_steps = state.contains("optimizer_steps") ? state["optimizer_steps"] : state["step"];
      if (!opt_steps.is_number_integer()) fail("{}/trainer_state.json: field 'optimizer_steps' is not an integer", ckpt);
      optimizer.load_state(load_tensors(ckpt + "/optimizer.safetensors", options_.device), opt_steps.get<int64_t>(),
                           ckpt + "/optimizer.safetensors");
      train_seconds = state.value("train_seconds", 0.0);
      guard_.restore_consecutive(state.value("consecutive_skipped_steps", int64_t(0)));
      if (state.value("threads", 0) != torch::get_num_threads())
        std::fprintf(stderr, "[rlhf] note: the run used %d threads, this one %d: results may differ in the last bits\n",
                     state.value("threads", 0), torch::get_num_threads());
      std::fprintf(stderr, "[rlhf] resuming from %s (step %lld of %lld)\n", ckpt.c_str(), (long long)start_,
                   (long long)steps_);
      resumed_ = Resumed{ckpt, std::move(state)};
    }
  }
  if (!writer()) {
    logger_ = std::make_unique<track::MetricsLogger>();
    return;
  }
  if (!claimed_) claim();
  logger_ = std::make_unique<track::MetricsLogger>((out_ / "logs").string(), options_.resume ? start_ : -1);
  if (options_.progress) bar_ = std::make_unique<Progress>(options_.command, steps_, "step", start_);
}

void TrainerRun::save_checkpoint(int64_t step, json state, const std::function<void(const std::string&)>& write) {
  state["step"] = step;
  state["optimizer_steps"] = optimizer_->steps();
  state["train_seconds"] = train_seconds;
  state["consecutive_skipped_steps"] = guard_.consecutive();
  state["threads"] = torch::get_num_threads();
  state["fingerprint"] = fingerprint_;
  if (!writer()) return;
  checkpoint::save(out_.string(), step, options_.keep_checkpoints, state, [&](const std::string& dir) {
    write(dir);
    save_tensors(dir + "/optimizer.safetensors", optimizer_->state());
  });
}

bool TrainerRun::final_checkpoint_missing() const {
  return start_ < steps_ || !fs::exists(fs::path(checkpoint::latest(out_.string())) / "trainer_state.json");
}

void TrainerRun::progress(int64_t done, const std::string& status) {
  if (bar_) bar_->update(done, status);
}

void TrainerRun::finish_progress() {
  if (bar_) bar_->finish();
}

void TrainerRun::write_summary(json& summary) {
  if (!writer()) return;
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  summary["peak_rss_bytes"] = static_cast<int64_t>(u.ru_maxrss) * 1024;
  summary["threads"] = torch::get_num_threads();
  write_file_atomic((out_ / "summary.json").string(), summary.dump(2) + "\n");
  logger_->flush();
}

std::vector<int> balance_ranks(const std::vector<double>& costs, int ranks) {
  std::vector<size_t> order(costs.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return costs[a] > costs[b]; });
  std::vector<double> load(static_cast<size_t>(std::max(1, ranks)), 0.0);
  std::vector<int> owner(costs.size(), 0);
  for (size_t unit : order) {
    const size_t least = static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    owner[unit] = static_cast<int>(least);
    load[least] += costs[unit];
  }
  return owner;
}

std::vector<bool> TrainerRun::my_share(const std::vector<double>& costs) const {
  const std::vector<int> owner = balance_ranks(costs, world());
  std::vector<bool> mine(costs.size());
  for (size_t k = 0; k < costs.size(); ++k) mine[k] = owner[k] == rank();
  return mine;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace rlhf
