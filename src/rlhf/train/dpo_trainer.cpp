#include "rlhf/train/dpo_trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include "rlhf/data/dataset.h"
#include "rlhf/data/encode.h"
#include "rlhf/model/loader.h"
#include "rlhf/model/model.h"
#include "rlhf/train/adapter_io.h"
#include "rlhf/train/dpo.h"
#include "rlhf/train/optim.h"
#include "rlhf/train/preference_data.h"
#include "rlhf/train/reward_artifact.h"
#include "rlhf/train/reward_model.h"
#include "rlhf/train/trained_folder.h"
#include "rlhf/train/trainer_run.h"
#include "rlhf/util/error.h"
#include "rlhf/util/progress.h"

namespace rlhf {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kPolicyAdapter = "policy";

// Sums over pairs of what TRL logs (divided by the pair count when logged).
struct DpoStats {
  double loss = 0, reward_chosen = 0, reward_rejected = 0, correct = 0, logps_chosen = 0, logps_rejected = 0;
  int64_t pairs = 0, tokens = 0;

  void add(const torch::Tensor& losses, const torch::Tensor& rc, const torch::Tensor& rr, const torch::Tensor& pc,
           const torch::Tensor& pr, int64_t real_tokens) {
    auto d = [](const torch::Tensor& t) { return t.detach().to(torch::kFloat64); };
    loss += d(losses).sum().item<double>();
    reward_chosen += d(rc).sum().item<double>();
    reward_rejected += d(rr).sum().item<double>();
    correct += (d(rc) > d(rr)).sum().item<double>();
    logps_chosen += d(pc).sum().item<double>();
    logps_rejected += d(pr).sum().item<double>();
    pairs += losses.size(0);
    tokens += real_tokens;
  }
  std::vector<double> to_vector() const {
    return {loss, reward_chosen, reward_rejected, correct, logps_chosen, logps_rejected, double(pairs), double(tokens)};
  }
  static DpoStats from_vector(const std::vector<double>& v) {
    return {v[0], v[1], v[2], v[3], v[4], v[5], static_cast<int64_t>(v[6]), static_cast<int64_t>(v[7])};
  }
  // TRL's names, under `prefix` ("" while training, "eval/").
  std::map<std::string, double> metrics(const std::string& prefix) const {
    const double n = pairs > 0 ? static_cast<double>(pairs) : 1.0;
    return {{prefix + "loss", loss / n},
            {prefix + "rewards/chosen", reward_chosen / n},
            {prefix + "rewards/rejected", reward_rejected / n},
            {prefix + "rewards/accuracies", correct / n},
            {prefix + "rewards/margins", (reward_chosen - reward_rejected) / n},
            {prefix + "logps/chosen", logps_chosen / n},
            {prefix + "logps/rejected", logps_rejected / n}};
  }
};

// What each micro-batch costs to score, for sharing them over the ranks: pairs x the longest pair.
std::vector<double> micro_batch_costs(const std::vector<PairList>& mbs) {
  std::vector<double> costs;
  for (const auto& mb : mbs) {
    size_t longest = 0;
    for (const auto* p : mb) longest = std::max(longest, p->prompt.size() + p->chosen.size() + p->rejected.size());
    costs.push_back(static_cast<double>(mb.size() * longest));
  }
  return costs;
}

// A pair with its reference log-probs (computed once, before training).
struct DpoPair {
  data::PreferencePair pair;
  double ref_chosen = 0, ref_rejected = 0;
  bool has_ref = false;
};

// Preference pairs -> a policy adapter: the setup in the constructor, the steps in train().
class DpoTrainer {
 public:
  explicit DpoTrainer(const DpoTrainConfig& cfg);
  DpoTrainSummary train();

 private:
  static TrainerRunOptions run_options(const DpoTrainConfig& cfg);
  void read_pairs();
  void encode_pairs();
  void compute_reference();
  json fingerprint() const;

  // Summed log-probs [2b] of the packed pairs (chosen at even, rejected at odd indices), with
  // the adapter (the policy) or without (the reference).
  torch::Tensor completion_logps(const PairBatch& batch, int64_t pairs, bool policy, bool train) const;
  // The loss and statistics of a micro-batch under the policy.
  std::pair<torch::Tensor, DpoStats> micro_batch(const std::vector<const DpoPair*>& mb, bool train) const;

  DpoStats train_step(int64_t step, double lr, double* grad_norm);
  void log_step(int64_t done, const DpoStats& s, double lr, double grad_norm, double seconds);
  DpoStats evaluate(const std::vector<DpoPair>& pairs) const;
  DpoStats validate_and_log(int64_t step);
  void save_checkpoint(int64_t step);
  DpoTrainSummary finish();

  const DpoTrainConfig& cfg_;
  dpo::LossType loss_type_;
  TrainerRun run_;
  LoadOptions load_;
  PreferenceRows rows_;
  std::unique_ptr<Model> model_;
  std::string base_sha256_, data_sha256_;
  data::EncodeConfig enc_;
  int32_t eos_ = 0, pad_ = 0;
  std::vector<DpoPair> train_, validation_;
  PairSchedule plan_;
  LoraAdapter* adapter_ = nullptr;
  std::unique_ptr<AdamW> opt_;
  std::optional<EpochStream> pairs_;
  int64_t trained_tokens_ = 0;
  std::vector<double> step_times_;
};

TrainerRunOptions DpoTrainer::run_options(const DpoTrainConfig& cfg) {
  if (cfg.preference_dataset.empty()) fail("--preference-dataset is required");
  if (cfg.output.empty()) fail("--output is required");
  check_naming_flags(dpo_settings(), cfg, {}, check_dpo_config);
  apply_threads(cfg.threads);
  return {.command = "train-dpo",
          .output = cfg.output,
          .own = {kPolicyManifest, kAdapterConfigFile, kAdapterWeightsFile, "summary.json", "logs", "checkpoints"},
          .resume = cfg.resume,
          .progress = cfg.progress,
          .keep_checkpoints = cfg.keep_checkpoints,
          .max_skipped_steps = cfg.max_skipped_steps,
          .what = "policy",
          .device = parse_device(cfg.device)};
}

DpoTrainer::DpoTrainer(const DpoTrainConfig& cfg)
    : cfg_(cfg), loss_type_(dpo::parse_loss_type(cfg.loss_type, "--loss-type")), run_(run_options(cfg)) {
  read_pairs();  // every data file validated before the model is loaded
  load_.dtype = parse_dtype(cfg_.dtype);
  load_.device = parse_device(cfg_.device);
  model_ = load_model(cfg_.large_model_reference, load_);
  base_sha256_ = model_content_hash(model_->path);
  encode_pairs();

  plan_ = PairSchedule::of(cfg_, static_cast<int64_t>(train_.size()));
  std::fprintf(stderr,
               "[rlhf] %lld training pairs, %lld validation pairs; %lld steps of %lld pairs (micro-batches of %lld), "
               "lr %.3g, warmup %lld steps; %s loss, beta %g; prompt format %s\n",
               (long long)plan_.pairs, (long long)validation_.size(), (long long)plan_.steps, (long long)plan_.batch,
               (long long)plan_.micro_batch, plan_.peak_lr, (long long)plan_.warmup, dpo::loss_type_name(loss_type_),
               cfg_.beta, data::prompt_format_name(enc_.format));

  adapter_ = &model_->net->add_adapter(kPolicyAdapter, cfg_.lora, cfg_.seed);
  model_->net->set_gradient_checkpointing(cfg_.gradient_checkpointing);
  AdamWConfig adam;
  adam.weight_decay = cfg_.weight_decay;
  adam.eps = cfg_.adam_epsilon;
  opt_ = std::make_unique<AdamW>(adapter_->named_parameters(), adam);
  pairs_.emplace(static_cast<size_t>(plan_.pairs), cfg_.seed);

  run_.begin(fingerprint(), plan_.steps, *opt_);
  if (const auto& r = run_.resumed()) trained_tokens_ = r->state.value("trained_tokens", int64_t(0));
  compute_reference();  // before the adapter is restored: the reference is the base alone
  if (const auto& r = run_.resumed()) load_adapter(r->dir, *adapter_);
}

// Every data file is read and validated before the model is loaded.
void DpoTrainer::read_pairs() { rows_ = read_preference_rows(PreferenceSource::of(cfg_)); }

void DpoTrainer::encode_pairs() {
  eos_ = completion_eos_id(*model_);
  pad_ = model_->pad_id;
  data::EncodeConfig enc;
  enc.instruction = cfg_.instruction;
  enc.prompt_sequence_length = cfg_.prompt_sequence_length;
  enc.target_sequence_length = cfg_.target_sequence_length;
  auto encoded = encode_preference_rows(rows_, cfg_.prompt_format, enc, *model_->tokenizer, model_->chat_template, eos_);
  enc_ = encoded.enc;
  data_sha256_ = encoded.train_sha256;
  for (auto& p : encoded.train) train_.push_back({.pair = std::move(p)});
  for (auto& p : encoded.validation) validation_.push_back({.pair = std::move(p)});
}

// The reference's summed log-probs of the pairs this run trains on (the positions
// 0 .. steps·B − 1 of the epoch stream) and of the validation pairs, without gradients. The
// pairs and their grouping depend only on the data, the seed and the step count, so a resume
// computes the same numbers again. With several ranks each scores a share of the micro-batches
// and the values are summed over the ranks.
void DpoTrainer::compute_reference() {
  std::set<size_t> used;
  for (int64_t k = 0; k < plan_.steps * plan_.batch && static_cast<int64_t>(used.size()) < plan_.pairs; ++k)
    used.insert((*pairs_)[k]);
  std::vector<DpoPair*> todo;
  for (size_t i : used) todo.push_back(&train_[i]);
  for (auto& v : validation_) todo.push_back(&v);
  torch::NoGradGuard no_grad;
  std::map<const data::PreferencePair*, size_t> slot;
  PairList ptrs;
  for (size_t k = 0; k < todo.size(); ++k) slot[&todo[k]->pair] = k, ptrs.push_back(&todo[k]->pair);
  const auto mbs = pair_micro_batches(ptrs, plan_.micro_batch * 2);
  const std::vector<bool> mine = run_.my_share(micro_batch_costs(mbs));
  std::vector<double> values(2 * todo.size(), 0.0);
  Progress bar("reference", static_cast<int64_t>(todo.size()), "pair");
  int64_t done = 0;
  for (size_t m = 0; m < mbs.size(); ++m) {
    const auto& mb = mbs[m];
    if (mine[m]) {
      PairBatch pb = pack_pairs(mb, pad_, load_.device);
      auto logps = completion_logps(pb, static_cast<int64_t>(mb.size()), /*policy=*/false, /*train=*/false)
                       .to(torch::kFloat64).cpu();
      auto acc = logps.accessor<double, 1>();
      for (size_t b = 0; b < mb.size(); ++b) {
        const size_t k = slot.at(mb[b]);
        values[2 * k] = acc[2 * b];
        values[2 * k + 1] = acc[2 * b + 1];
      }
    }
    done += static_cast<int64_t>(mb.size());
    bar.update(done);
  }
  bar.finish();
  run_.all_reduce(values);
  for (size_t k = 0; k < todo.size(); ++k) {
    todo[k]->ref_chosen = values[2 * k];
    todo[k]->ref_rejected = values[2 * k + 1];
    todo[k]->has_ref = true;
  }
}

// What must not change between a run and its resume: the settings that change the result,
// the inputs' hashes, and what was resolved from them.
json DpoTrainer::fingerprint() const {
  json f = settings_json(dpo_settings(), cfg_, /*result_only=*/true);
  f["method"] = "dpo";
  f["prompt_format"] = data::prompt_format_name(enc_.format);
  f["instruction"] = enc_.instruction;
  f["base_sha256"] = base_sha256_;
  f["data_sha256"] = data_sha256_;
  f["steps"] = plan_.steps;
  f["dtype_resolved"] = dtype_name(model_->net->dtype());  // what "auto" became on this machine
  return f;
}

torch::Tensor DpoTrainer::completion_logps(const PairBatch& batch, int64_t pairs, bool policy, bool train) const {
  ForwardArgs args;
  args.tokens = batch.tokens;
  args.positions = batch.positions;
  args.attn_mask = batch.attn_mask;
  if (policy) args.adapters = {adapter_};
  args.train = train;
  auto hidden = model_->net->hidden(args);                       // [R, L, H]
  auto flat = hidden.reshape({-1, hidden.size(2)});              // [R·L, H]
  auto at = flat.index_select(0, batch.completion_from);         // [N, H]: only the columns that predict a completion token
  auto logits = model_->net->logits(at);                         // [N, V] float32
  return dpo::segment_logps(logits, batch.completion_token, batch.completion_of, 2 * pairs);
}

std::pair<torch::Tensor, DpoStats> DpoTrainer::micro_batch(const std::vector<const DpoPair*>& mb, bool train) const {
  PairList ptrs;
  std::vector<double> ref_c, ref_r, n_c, n_r;
  for (const auto* d : mb) {
    if (!d->has_ref) fail("{}: no reference log-probs computed for this pair", d->pair.where);
    ptrs.push_back(&d->pair);
    ref_c.push_back(d->ref_chosen), ref_r.push_back(d->ref_rejected);
    n_c.push_back(static_cast<double>(d->pair.chosen.size())), n_r.push_back(static_cast<double>(d->pair.rejected.size()));
  }
  const int64_t b = static_cast<int64_t>(mb.size());
  PairBatch pb = pack_pairs(ptrs, pad_, load_.device);
  auto logps = completion_logps(pb, b, /*policy=*/true, train).view({b, 2});
  auto f32 = [&](std::vector<double>& v) { return torch::tensor(v, torch::kFloat64).to(torch::kFloat32).to(load_.device); };
  dpo::PairLogps p{.chosen = logps.select(1, 0),
                   .rejected = logps.select(1, 1),
                   .ref_chosen = f32(ref_c),
                   .ref_rejected = f32(ref_r),
                   .chosen_tokens = f32(n_c),
                   .rejected_tokens = f32(n_r)};
  auto losses = dpo::pair_losses(p, loss_type_, cfg_.beta, cfg_.label_smoothing);
  DpoStats s;
  s.add(losses, dpo::implicit_rewards(p.chosen, p.ref_chosen, cfg_.beta),
        dpo::implicit_rewards(p.rejected, p.ref_rejected, cfg_.beta), p.chosen, p.rejected, pb.real_tokens);
  return {losses, s};
}

// The loop. Step s trains on positions s·B .. s·B + B - 1 of the epoch stream.
DpoTrainSummary DpoTrainer::train() {
  for (int64_t step = run_.start(); step < plan_.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    const double lr = warmup_linear_lr(plan_.peak_lr, step, plan_.warmup, plan_.steps);
    double grad_norm = 0;
    const DpoStats s = train_step(step, lr, &grad_norm);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const int64_t done = step + 1;
    log_step(done, s, lr, grad_norm, dt);
    if (cfg_.validation_every > 0 && done % cfg_.validation_every == 0 && done != plan_.steps) validate_and_log(done);
    if (done % cfg_.checkpoint_every == 0 && done != plan_.steps) save_checkpoint(done);
  }
  run_.finish_progress();
  return finish();
}

// One optimizer step over B pairs in micro-batches (gradient accumulation), split over the
// ranks as train-reward does; clipping; AdamW (skipped when the gradient norm is not finite).
DpoStats DpoTrainer::train_step(int64_t step, double lr, double* grad_norm) {
  PairList batch;
  std::map<const data::PreferencePair*, const DpoPair*> owner;
  for (int64_t i = 0; i < plan_.batch; ++i) {
    const DpoPair& d = train_[(*pairs_)[step * plan_.batch + i]];
    batch.push_back(&d.pair);
    owner[&d.pair] = &d;
  }
  opt_->zero_grad();
  const auto mbs = pair_micro_batches(batch, plan_.micro_batch);
  const std::vector<bool> mine = run_.my_share(micro_batch_costs(mbs));
  DpoStats s;
  for (size_t k = 0; k < mbs.size(); ++k) {
    if (!mine[k]) continue;
    std::vector<const DpoPair*> mb;
    for (const auto* p : mbs[k]) mb.push_back(owner.at(p));
    auto [losses, ms] = micro_batch(mb, /*train=*/true);
    (losses.sum() / static_cast<double>(plan_.batch)).backward();
    auto v = s.to_vector(), w = ms.to_vector();
    for (size_t i = 0; i < v.size(); ++i) v[i] += w[i];
    s = DpoStats::from_vector(v);
  }
  run_.all_reduce_gradients(*opt_);
  std::vector<double> sums = s.to_vector();
  run_.all_reduce(sums);
  s = DpoStats::from_vector(sums);
  *grad_norm = opt_->clip_grad_norm(cfg_.max_grad_norm);
  run_.guard().step(*opt_, lr, *grad_norm, step + 1);
  return s;
}

void DpoTrainer::log_step(int64_t done, const DpoStats& s, double lr, double grad_norm, double seconds) {
  run_.train_seconds += seconds;
  trained_tokens_ += s.tokens;
  step_times_.push_back(seconds);
  std::map<std::string, double> m = s.metrics("");
  m["learning_rate"] = lr;
  m["time/step"] = seconds;
  m["train/skipped_steps"] = std::isfinite(grad_norm) ? 0.0 : 1.0;
  m["throughput/pairs_per_second"] = static_cast<double>(plan_.batch) / seconds;
  m["throughput/tokens_per_second"] = static_cast<double>(s.tokens) / seconds;
  if (std::isfinite(grad_norm)) m["grad_norm"] = grad_norm;
  run_.add_collective_metrics(m);
  run_.logger().log(done, m);
  run_.progress(done, fmt::format("loss {:.4f} acc {:.3f} margin {:.3f}", m["loss"], m["rewards/accuracies"],
                                  m["rewards/margins"]));
}

// The metrics over pairs under the present policy, no gradients.
DpoStats DpoTrainer::evaluate(const std::vector<DpoPair>& pairs) const {
  torch::NoGradGuard no_grad;
  PairList ptrs;
  std::map<const data::PreferencePair*, const DpoPair*> owner;
  for (const auto& d : pairs) ptrs.push_back(&d.pair), owner[&d.pair] = &d;
  DpoStats s;
  for (const auto& mb : pair_micro_batches(ptrs, plan_.micro_batch * 2)) {
    std::vector<const DpoPair*> ds;
    for (const auto* p : mb) ds.push_back(owner.at(p));
    auto v = s.to_vector(), w = micro_batch(ds, /*train=*/false).second.to_vector();
    for (size_t i = 0; i < v.size(); ++i) v[i] += w[i];
    s = DpoStats::from_vector(v);
  }
  return s;
}

DpoStats DpoTrainer::validate_and_log(int64_t step) {
  if (validation_.empty()) return DpoStats{};
  DpoStats v = evaluate(validation_);
  run_.logger().log(step, v.metrics("eval/"));
  return v;
}

void DpoTrainer::save_checkpoint(int64_t step) {
  // The data order is a pure function of (seed, step); the reference log-probs are computed
  // again on resume (compute_reference): no other state exists.
  json state = {{"trained_tokens", trained_tokens_},
                {"rng", {{"data_order", "permutation(train pairs, seed + epoch)"}, {"seed", cfg_.seed}}},
                {"reference_logps", "recomputed on resume"}};
  run_.save_checkpoint(step, state, [&](const std::string& dir) {
    save_adapter(dir, *adapter_, {.base_reference = model_->reference, .task_type = "CAUSAL_LM", .modules_to_save = {}});
  });
}

// The final validation, the checkpoint of the last step, the policy folder (policy.json last).
DpoTrainSummary DpoTrainer::finish() {
  const DpoStats v = validate_and_log(plan_.steps);
  if (run_.final_checkpoint_missing()) save_checkpoint(plan_.steps);

  DpoTrainSummary sum;
  const double seconds = run_.train_seconds;
  const double nv = v.pairs > 0 ? static_cast<double>(v.pairs) : 1.0;
  sum.steps = plan_.steps;
  sum.train_pairs = plan_.pairs;
  sum.validation_pairs = static_cast<int64_t>(validation_.size());
  sum.validation_loss = v.loss / nv;
  sum.validation_accuracy = v.correct / nv;
  sum.validation_reward_chosen = v.reward_chosen / nv;
  sum.validation_reward_rejected = v.reward_rejected / nv;
  sum.validation_margin = (v.reward_chosen - v.reward_rejected) / nv;
  sum.train_seconds = seconds;
  sum.pairs_per_second = seconds > 0 ? static_cast<double>(plan_.steps * plan_.batch) / seconds : 0;
  sum.tokens_per_second = seconds > 0 ? static_cast<double>(trained_tokens_) / seconds : 0;
  json summary = {{"method", "dpo"},
                  {"loss_type", dpo::loss_type_name(loss_type_)},
                  {"beta", cfg_.beta},
                  {"steps", sum.steps},
                  {"train_pairs", sum.train_pairs},
                  {"validation_pairs", sum.validation_pairs},
                  {"train_seconds", sum.train_seconds},
                  {"step_seconds_median", median(step_times_)},
                  {"pairs_per_second", sum.pairs_per_second},
                  {"tokens_per_second", sum.tokens_per_second}};
  if (v.pairs > 0)
    for (const auto& [k, x] : v.metrics("eval/")) summary[k] = x;

  if (!run_.writer()) return sum;  // rank 0 writes the folder
  save_adapter(cfg_.output, *adapter_, {.base_reference = model_->reference, .task_type = "CAUSAL_LM", .modules_to_save = {}});
  run_.write_summary(summary);
  TrainedFolder policy;
  policy.kind = TrainedFolder::Kind::Policy;
  policy.base_reference = model_->reference;
  policy.base_path = fs::absolute(model_->path).string();
  policy.base_format = model_->format;
  policy.base_sha256 = base_sha256_;
  policy.lora = cfg_.lora;
  policy.encode = enc_;
  policy.eos_id = eos_;
  policy.pad_id = pad_;
  policy.task_type = "CAUSAL_LM";
  policy.training = {{"method", "dpo"},
                     {"settings", run_.fingerprint()},
                     {"preference_dataset", cfg_.preference_dataset},
                     {"eval_dataset", cfg_.eval_dataset},
                     {"summary", summary}};
  write_policy_folder_manifest(cfg_.output, policy);  // last: marks the folder complete
  std::fprintf(stderr, "[rlhf] done: validation loss %.4f, accuracy %.4f, margin %.4f; %s per step (median); policy in %s\n",
               sum.validation_loss, sum.validation_accuracy, sum.validation_margin,
               Progress::format_duration(median(step_times_)).c_str(), cfg_.output.c_str());
  return sum;
}

}  // namespace

DpoTrainSummary train_dpo(const DpoTrainConfig& config) { return DpoTrainer(config).train(); }

}  // namespace rlhf
