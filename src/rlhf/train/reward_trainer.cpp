#include "rlhf/train/reward_trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>

#include "rlhf/data/dataset.h"
#include "rlhf/data/encode.h"
#include "rlhf/model/loader.h"
#include "rlhf/model/model.h"
#include "rlhf/train/optim.h"
#include "rlhf/train/preference_data.h"
#include "rlhf/train/reward_artifact.h"
#include "rlhf/train/reward_model.h"
#include "rlhf/train/trained_folder.h"
#include "rlhf/train/trainer_run.h"
#include "rlhf/util/error.h"

namespace rlhf {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct PairStats {
  double loss = 0, rank_loss = 0, correct = 0, chosen = 0, rejected = 0;
  int64_t pairs = 0, tokens = 0;
  void add(const torch::Tensor& rc, const torch::Tensor& rr, const torch::Tensor& losses, int64_t real_tokens) {
    auto c = rc.detach().to(torch::kFloat64), r = rr.detach().to(torch::kFloat64);
    loss += losses.detach().to(torch::kFloat64).sum().item<double>();
    rank_loss += (-torch::log_sigmoid(c - r)).sum().item<double>();
    correct += (c > r).sum().item<double>();
    chosen += c.sum().item<double>();
    rejected += r.sum().item<double>();
    pairs += rc.size(0);
    tokens += real_tokens;
  }
};

// Preference pairs -> a reward model: the setup in the constructor, the steps in train().
class RewardTrainer {
 public:
  explicit RewardTrainer(const RewardTrainConfig& cfg);
  RewardTrainSummary train();

 private:
  static TrainerRunOptions run_options(const RewardTrainConfig& cfg);
  void read_pairs();
  void encode_pairs();
  json fingerprint() const;

  PairStats train_step(int64_t step, double lr, double* grad_norm);
  void log_step(int64_t done, const PairStats& s, double lr, double grad_norm, double seconds);
  PairStats evaluate(const std::vector<data::PreferencePair>& pairs) const;
  PairStats validate_and_log(int64_t step);
  void save_checkpoint(int64_t step);
  double center_head();
  RewardTrainSummary finish();

  const RewardTrainConfig& cfg_;
  TrainerRun run_;
  LoadOptions load_;
  PreferenceRows rows_;
  std::unique_ptr<Model> model_;
  std::string base_sha256_, data_sha256_;
  data::EncodeConfig enc_;
  int32_t eos_ = 0, pad_ = 0;
  std::vector<data::PreferencePair> train_, validation_;
  PairSchedule plan_;
  std::unique_ptr<RewardModel> rm_;
  std::unique_ptr<AdamW> opt_;
  std::optional<EpochStream> pairs_;
  int64_t trained_tokens_ = 0;
};

TrainerRunOptions RewardTrainer::run_options(const RewardTrainConfig& cfg) {
  if (cfg.preference_dataset.empty()) fail("--preference-dataset is required");
  if (cfg.output.empty()) fail("--output is required");
  check_naming_flags(reward_settings(), cfg, {}, check_reward_config);
  apply_threads(cfg.threads);
  return {.command = "train-reward",
          .output = cfg.output,
          .own = {kRewardModelManifest, kAdapterConfigFile, kAdapterWeightsFile, kRewardHeadFile, "summary.json", "logs",
                  "checkpoints"},
          .resume = cfg.resume,
          .progress = cfg.progress,
          .keep_checkpoints = cfg.keep_checkpoints,
          .max_skipped_steps = cfg.max_skipped_steps,
          .what = "reward model",
          .device = parse_device(cfg.device)};
}

RewardTrainer::RewardTrainer(const RewardTrainConfig& cfg) : cfg_(cfg), run_(run_options(cfg)) {
  read_pairs();  // every data file validated before the model is loaded
  load_.dtype = parse_dtype(cfg_.dtype);
  load_.device = parse_device(cfg_.device);
  model_ = load_model(cfg_.large_model_reference, load_);
  base_sha256_ = model_content_hash(model_->path);
  encode_pairs();

  plan_ = PairSchedule::of(cfg_, static_cast<int64_t>(train_.size()));
  std::fprintf(stderr,
               "[rlhf] %lld training pairs, %lld validation pairs; %lld steps of %lld pairs (micro-batches of %lld), "
               "lr %.3g, warmup %lld steps; prompt format %s\n",
               (long long)plan_.pairs, (long long)validation_.size(), (long long)plan_.steps, (long long)plan_.batch,
               (long long)plan_.micro_batch, plan_.peak_lr, (long long)plan_.warmup, data::prompt_format_name(enc_.format));

  rm_ = std::make_unique<RewardModel>(*model_->net, cfg_.lora, cfg_.seed);
  model_->net->set_gradient_checkpointing(cfg_.gradient_checkpointing);
  AdamWConfig adam;
  adam.weight_decay = cfg_.weight_decay;
  adam.eps = cfg_.adam_epsilon;
  opt_ = std::make_unique<AdamW>(rm_->parameters(), adam);
  pairs_.emplace(static_cast<size_t>(plan_.pairs), cfg_.seed);

  run_.begin(fingerprint(), plan_.steps, *opt_);
  if (const auto& r = run_.resumed()) {
    rm_->load_weights(r->dir);
    trained_tokens_ = r->state.value("trained_tokens", int64_t(0));
  }
}

// Every data file is read and validated before the model is loaded.
void RewardTrainer::read_pairs() { rows_ = read_preference_rows(PreferenceSource::of(cfg_)); }

void RewardTrainer::encode_pairs() {
  eos_ = completion_eos_id(*model_);
  pad_ = model_->pad_id;
  data::EncodeConfig enc;
  enc.instruction = cfg_.instruction;
  enc.prompt_sequence_length = cfg_.prompt_sequence_length;
  enc.target_sequence_length = cfg_.target_sequence_length;
  auto encoded = encode_preference_rows(rows_, cfg_.prompt_format, enc, *model_->tokenizer, model_->chat_template, eos_);
  enc_ = encoded.enc;
  data_sha256_ = encoded.train_sha256;
  train_ = std::move(encoded.train);
  validation_ = std::move(encoded.validation);
}

// What must not change between a run and its resume: the settings that change the result,
// the inputs' hashes, and what was resolved from them.
json RewardTrainer::fingerprint() const {
  json f = settings_json(reward_settings(), cfg_, /*result_only=*/true);
  f["prompt_format"] = data::prompt_format_name(enc_.format);
  f["instruction"] = enc_.instruction;
  f["base_sha256"] = base_sha256_;
  f["data_sha256"] = data_sha256_;
  f["steps"] = plan_.steps;
  f["dtype_resolved"] = dtype_name(model_->net->dtype());  // what "auto" became on this machine
  return f;
}

// The loop. Step s trains on positions s·B .. s·B + B - 1 of the epoch stream.
RewardTrainSummary RewardTrainer::train() {
  for (int64_t step = run_.start(); step < plan_.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    const double lr = warmup_linear_lr(plan_.peak_lr, step, plan_.warmup, plan_.steps);
    double grad_norm = 0;
    const PairStats s = train_step(step, lr, &grad_norm);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const int64_t done = step + 1;
    log_step(done, s, lr, grad_norm, dt);
    if (cfg_.validation_every > 0 && done % cfg_.validation_every == 0 && done != plan_.steps)
      validate_and_log(done);
    if (done % cfg_.checkpoint_every == 0 && done != plan_.steps) save_checkpoint(done);
  }
  run_.finish_progress();
  return finish();
}

// One optimizer step over B pairs: the pairwise loss in micro-batches (gradient
// accumulation), clipping, AdamW (skipped when the gradient norm is not finite).
PairStats RewardTrainer::train_step(int64_t step, double lr, double* grad_norm) {
  PairList batch;
  for (int64_t i = 0; i < plan_.batch; ++i) batch.push_back(&train_[(*pairs_)[step * plan_.batch + i]]);
  opt_->zero_grad();
  PairStats s;
  // With several ranks each takes a share of the micro-batches balanced by their padded sizes;
  // the gradients and the statistics are then summed over the ranks: the step of the whole
  // batch, as in one process.
  const auto mbs = pair_micro_batches(batch, plan_.micro_batch);
  std::vector<double> costs;
  for (const auto& mb : mbs) {
    size_t longest = 0;
    for (const auto* p : mb) longest = std::max(longest, p->prompt.size() + std::max(p->chosen.size(), p->rejected.size()));
    costs.push_back(static_cast<double>(mb.size() * longest));
  }
  const std::vector<bool> mine = run_.my_share(costs);
  for (size_t k = 0; k < mbs.size(); ++k) {
    if (!mine[k]) continue;
    PairBatch pb = pack_pairs(mbs[k], pad_, load_.device);
    auto [rc, rr] = rm_->score_pairs(pb, /*train=*/true);
    auto losses = reward_pair_losses(rc, rr, cfg_.margin, cfg_.center_rewards_coefficient);
    (losses.sum() / static_cast<double>(plan_.batch)).backward();
    s.add(rc, rr, losses, pb.real_tokens);
  }
  run_.all_reduce_gradients(*opt_);
  std::vector<double> sums = {s.loss, s.rank_loss, s.correct, s.chosen, s.rejected, double(s.pairs), double(s.tokens)};
  run_.all_reduce(sums);
  s = {sums[0], sums[1], sums[2], sums[3], sums[4], static_cast<int64_t>(sums[5]), static_cast<int64_t>(sums[6])};
  *grad_norm = opt_->clip_grad_norm(cfg_.max_grad_norm);
  run_.guard().step(*opt_, lr, *grad_norm, step + 1);
  return s;
}

void RewardTrainer::log_step(int64_t done, const PairStats& s, double lr, double grad_norm, double seconds) {
  run_.train_seconds += seconds;
  trained_tokens_ += s.tokens;
  const double B = static_cast<double>(plan_.batch);
  std::map<std::string, double> m = {
      {"rank_loss", s.rank_loss / B},
      {"accuracy", s.correct / B},
      {"reward/chosen", s.chosen / B},
      {"reward/rejected", s.rejected / B},
      {"reward/margin", (s.chosen - s.rejected) / B},
      {"learning_rate", lr},
      {"train/skipped_steps", std::isfinite(grad_norm) ? 0.0 : 1.0},
      {"throughput/pairs_per_second", B / seconds},
      {"throughput/tokens_per_second", static_cast<double>(s.tokens) / seconds},
  };
  if (std::isfinite(grad_norm)) m["grad_norm"] = grad_norm;
  if (cfg_.margin != 0 || cfg_.center_rewards_coefficient != 0) m["loss"] = s.loss / B;
  run_.add_collective_metrics(m);
  run_.logger().log(done, m);
  run_.progress(done, fmt::format("rank_loss {:.4f} acc {:.3f}", s.rank_loss / B, s.correct / B));
}

// Accuracy and loss over pairs, no gradients.
PairStats RewardTrainer::evaluate(const std::vector<data::PreferencePair>& pairs) const {
  torch::NoGradGuard no_grad;
  PairList ptrs;
  for (const auto& p : pairs) ptrs.push_back(&p);
  PairStats s;
  for (const auto& mb : pair_micro_batches(ptrs, plan_.micro_batch * 2)) {
    auto batch = pack_pairs(mb, pad_, load_.device);
    auto [rc, rr] = rm_->score_pairs(batch);
    s.add(rc, rr, reward_pair_losses(rc, rr), batch.real_tokens);
  }
  return s;
}

PairStats RewardTrainer::validate_and_log(int64_t step) {
  if (validation_.empty()) return PairStats{};
  PairStats v = evaluate(validation_);
  run_.logger().log(step, {{"validation/accuracy", v.correct / v.pairs}, {"validation/loss", v.rank_loss / v.pairs},
                           {"validation/reward_margin", (v.chosen - v.rejected) / v.pairs}});
  return v;
}

void RewardTrainer::save_checkpoint(int64_t step) {
  // The data order is a pure function of (seed, step): no other random state exists.
  json state = {{"trained_tokens", trained_tokens_},
                {"rng", {{"data_order", "permutation(train pairs, seed + epoch)"}, {"seed", cfg_.seed}}}};
  run_.save_checkpoint(step, state, [&](const std::string& dir) { rm_->save_weights(dir, model_->reference); });
}

// Shifts the head's bias so the mean reward over (up to) centering_pairs training pairs,
// chosen by the seed, is 0; returns the mean before.
double RewardTrainer::center_head() {
  std::vector<data::PreferencePair> sample;
  auto order = data::permutation(static_cast<size_t>(plan_.pairs), cfg_.seed ^ 0xce17e5ULL);
  for (size_t i = 0; i < order.size() && static_cast<int64_t>(sample.size()) < cfg_.centering_pairs; ++i)
    sample.push_back(train_[order[i]]);
  PairStats c = evaluate(sample);
  const double mean_reward = (c.chosen + c.rejected) / (2.0 * c.pairs);
  rm_->shift_bias(-mean_reward);
  return mean_reward;
}

// The final validation, the checkpoint of the last step, the centred head, the model folder
// (reward_model.json last).
RewardTrainSummary RewardTrainer::finish() {
  const PairStats v = validate_and_log(plan_.steps);
  if (run_.final_checkpoint_missing()) save_checkpoint(plan_.steps);
  const double mean_reward = center_head();

  RewardTrainSummary sum;
  const double seconds = run_.train_seconds;
  sum.steps = plan_.steps;
  sum.train_pairs = plan_.pairs;
  sum.validation_pairs = static_cast<int64_t>(validation_.size());
  sum.validation_accuracy = v.pairs ? v.correct / v.pairs : 0;
  sum.validation_loss = v.pairs ? v.rank_loss / v.pairs : 0;
  sum.train_seconds = seconds;
  sum.pairs_per_second = seconds > 0 ? static_cast<double>(plan_.steps * plan_.batch) / seconds : 0;
  sum.tokens_per_second = seconds > 0 ? static_cast<double>(trained_tokens_) / seconds : 0;
  json summary = {{"steps", sum.steps},
                  {"train_pairs", sum.train_pairs},
                  {"validation_pairs", sum.validation_pairs},
                  {"validation/accuracy", sum.validation_accuracy},
                  {"validation/loss", sum.validation_loss},
                  {"train_seconds", sum.train_seconds},
                  {"pairs_per_second", sum.pairs_per_second},
                  {"tokens_per_second", sum.tokens_per_second},
                  {"mean_reward_before_centering", mean_reward}};

  if (!run_.writer()) return sum;  // rank 0 writes the model
  rm_->save_weights(cfg_.output, model_->reference);
  run_.write_summary(summary);
  RewardModelInfo info;
  info.kind = TrainedFolder::Kind::RewardModel;
  info.base_reference = model_->reference;
  info.base_path = fs::absolute(model_->path).string();
  info.base_format = model_->format;
  info.base_sha256 = base_sha256_;
  info.lora = cfg_.lora;
  info.encode = enc_;
  info.eos_id = eos_;
  info.pad_id = pad_;
  info.hidden_size = model_->config.hidden_size;
  info.task_type = "SEQ_CLS";
  info.training = {{"settings", run_.fingerprint()}, {"preference_dataset", cfg_.preference_dataset},
                   {"eval_dataset", cfg_.eval_dataset}, {"summary", summary}};
  write_reward_model_info(cfg_.output, info);  // last: marks the folder complete
  std::fprintf(stderr, "[rlhf] done: validation accuracy %.4f, loss %.4f; %.2f pairs/s; model in %s\n",
               sum.validation_accuracy, sum.validation_loss, sum.pairs_per_second, cfg_.output.c_str());
  return sum;
}

}  // namespace

RewardTrainSummary train_reward_model(const RewardTrainConfig& config) { return RewardTrainer(config).train(); }

}  // namespace rlhf
