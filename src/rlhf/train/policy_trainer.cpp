#include "rlhf/train/policy_trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>

#include "rlhf/data/dataset.h"
#include "rlhf/data/encode.h"
#include "rlhf/data/reward_rules.h"
#include "rlhf/model/generate.h"
#include "rlhf/model/loader.h"
#include "rlhf/model/registry.h"
#include "rlhf/text/words.h"
#include "rlhf/train/adapter_io.h"
#include "rlhf/train/checkpoint.h"
#include "rlhf/train/grpo.h"
#include "rlhf/train/optim.h"
#include "rlhf/train/ppo.h"
#include "rlhf/train/rollout.h"
#include "rlhf/train/trained_folder.h"
#include "rlhf/train/trainer_run.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"
#include "rlhf/util/hash.h"

namespace rlhf {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

// Seconds of the parts of one step: lap(name) ends the part started at the previous lap.
class StepClock {
 public:
  void lap(const std::string& name) {
    const auto now = Clock::now();
    laps[name] = std::chrono::duration<double>(now - last_).count();
    last_ = now;
  }
  double total() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }
  std::map<std::string, double> laps;

 private:
  Clock::time_point start_ = Clock::now(), last_ = start_;
};

// What the PPO epochs of one step did: loss and clipping sums over the optimizer updates
// (each a token-weighted mean over its minibatch), and the first minibatch's own, where the
// policy is still the one that sampled the rollouts (ratio 1).
struct UpdateStats {
  double policy_loss = 0, value_loss = 0, clipfrac = 0, value_clipfrac = 0, approxkl = 0;
  double grad_norm = 0;        // summed over the updates that were applied
  int64_t updates = 0, applied = 0;
  double approxkl_first = 0, clipfrac_first = 0;
};

struct MinibatchStats {
  double policy_loss = 0, value_loss = 0, clipfrac = 0, value_clipfrac = 0, approxkl = 0;
};

json json_or_null(double x) { return std::isfinite(x) ? json(x) : json(nullptr); }

enum class Method { Ppo, Grpo, Rloo };

// Prompts + rewards -> a tuned policy: the setup in the constructor, the steps in train().
// See policy_trainer.h for what a step does.
class PolicyTrainer {
 public:
  explicit PolicyTrainer(const PolicyTrainConfig& cfg);
  PolicyTrainSummary train();

 private:
  static TrainerRunOptions run_options(const PolicyTrainConfig& cfg);
  void read_prompts();
  void read_rules();
  void choose_encoding();
  void encode_prompts();
  json fingerprint() const;

  // The step.
  Rollouts generate_rollouts(int64_t step);
  void complete(std::vector<Sample>& samples, double temperature, uint64_t seed, bool reference = false);
  void complete_shard(std::vector<Sample>& samples, size_t begin, size_t end, double temperature, uint64_t seed,
                      bool reference);
  void measure_reference_scores();
  // This rank's share of micro-batches of samples (balanced by padded sizes).
  std::vector<bool> my_share(const std::vector<std::vector<size_t>>& mbs, const std::vector<Sample>& samples) const;
  std::vector<double> reward_model_scores(const std::vector<Sample>& samples, const std::vector<data::PromptRow>& rows);
  void score_rollouts(Rollouts& r, const std::vector<data::PromptRow>& rows, const std::vector<json>& row_json);
  bool first_update_gives_old_logprobs() const;
  bool each_update_forward_gives_old_logprobs() const;
  void compute_logprobs_and_values(Rollouts& r, int64_t step, bool policy);
  std::vector<PolicyForward> first_forward(Rollouts& r, int64_t step);
  std::vector<std::vector<size_t>> minibatches(int64_t step, int64_t epoch) const;
  void compute_advantages(Rollouts& r);
  void measure_kl(Rollouts& r);
  UpdateStats ppo_update(Rollouts& r, int64_t step, double lr, std::vector<PolicyForward> first);
  MinibatchStats accumulate_gradients(Rollouts& r, const std::vector<size_t>& minibatch,
                                      std::vector<PolicyForward>* forwards);
  void log_step(int64_t done, const Rollouts& r, const UpdateStats& u, double lr, const StepClock& clock);

  // Around the steps.
  void evaluate(int64_t step);
  void save_checkpoint(int64_t step);
  PolicyTrainSummary finish();

  const PolicyTrainConfig& cfg_;
  TrainerRun run_;
  const torch::Device dev_;
  const ppo::EosPenaltyMode eos_mode_;
  const Method method_;
  const grpo::ScaleRewards scale_rewards_;
  const grpo::LossType loss_type_;
  std::vector<data::PromptRow> prompt_rows_, eval_rows_;
  std::vector<json> prompt_json_, eval_json_;  // the rows as read, for the rules
  std::vector<data::RewardRule> rules_;
  std::vector<double> weights_;                // the reward model's first when there is one, then each rule's
  PolicyRoles roles_;
  Model& policy_model() const { return *roles_.policy_base; }
  PolicyModels& models() const { return *roles_.models; }
  const RewardModelInfo& rm_info() const { return roles_.rm->info; }
  bool has_rm() const { return roles_.rm != nullptr; }
  bool ppo() const { return method_ == Method::Ppo; }
  data::EncodeConfig enc_;
  int32_t eos_ = 0, pad_ = 0;
  bool same_encoding_ = false;  // the reward model reads the policy's ids as they are
  std::vector<std::vector<int32_t>> prompt_ids_, eval_ids_;
  std::string data_sha256_;
  // Prompts per step, completions per prompt, rollouts per step (P·N), micro-batch, generation batch.
  int64_t P_ = 0, N_ = 1, B_ = 0, M_ = 0, G_ = 0, steps_ = 0;
  double peak_lr_ = 0;
  std::unique_ptr<AdamW> opt_;
  ppo::AdaptiveKl kl_ctl_;
  std::optional<EpochStream> prompts_;
  std::vector<double> step_times_;
  double last_reward_ = 0, last_kl_ = 0, last_kl_k3_ = 0;
  double score_mean_ = 0, score_std_ = 1;  // of the untuned policy's completions (reward normalisation)
};

TrainerRunOptions PolicyTrainer::run_options(const PolicyTrainConfig& cfg) {
  if (cfg.prompt_dataset.empty()) fail("--prompt-dataset is required");
  if (cfg.reward_model.empty() && cfg.reward_rule.empty())
    fail("no reward: give --reward-model (a folder written by train-reward), --reward-rule (e.g. max-words=50), or both");
  if (cfg.output.empty()) fail("--output is required");
  check_naming_flags(policy_settings(), cfg, {}, check_policy_config);
  check_naming_flags(policy_settings(), cfg, {}, [](const PolicyTrainConfig& c, const SettingNames&) { c.weights(); });
  apply_threads(cfg.threads);
  return {.command = "train-policy",
          .output = cfg.output,
          .own = {kPolicyManifest, kAdapterConfigFile, kAdapterWeightsFile, "value_head.safetensors", "value",
                  "summary.json", "logs", "checkpoints", "eval"},
          .resume = cfg.resume,
          .progress = cfg.progress,
          .keep_checkpoints = cfg.keep_checkpoints,
          .max_skipped_steps = cfg.max_skipped_steps,
          .what = "policy",
          .device = parse_device(cfg.device)};
}

PolicyTrainer::PolicyTrainer(const PolicyTrainConfig& cfg)
    : cfg_(cfg),
      run_(run_options(cfg)),
      dev_(parse_device(cfg.device)),
      eos_mode_(ppo::parse_eos_penalty_mode(cfg.eos_penalty_mode, setting_flag(policy_settings(), "eos_penalty_mode"))),
      method_(cfg.method == "grpo" ? Method::Grpo : cfg.method == "rloo" ? Method::Rloo : Method::Ppo),
      scale_rewards_(grpo::parse_scale_rewards(cfg.scale_rewards, "--scale-rewards")),
      loss_type_(grpo::parse_loss_type(cfg.loss_type, "--loss-type")),
      kl_ctl_{cfg.kl_coeff, cfg.target_kl, cfg.kl_horizon} {
  read_prompts();  // all of it validated before any model is loaded
  read_rules();
  roles_ = load_policy_roles(cfg_);
  choose_encoding();
  encode_prompts();
  const int64_t n_prompts = static_cast<int64_t>(prompt_ids_.size());
  P_ = cfg_.batch_size;
  N_ = cfg_.generations();
  B_ = P_ * N_;
  M_ = std::min(cfg_.micro_batch_size, B_);
  G_ = cfg_.generation_batch_size > 0 ? std::min(cfg_.generation_batch_size, B_) : B_;
  steps_ = cfg_.steps_for(n_prompts);
  peak_lr_ = PolicyTrainConfig::kBaseLearningRate * cfg_.learning_rate_multiplier;
  std::fprintf(stderr,
               "[rlhf] %s: %lld prompts; %lld steps of %lld prompts x %lld completions (micro-batches of %lld, %lld "
               "pass(es), %lld minibatch(es)); lr %.3g; kl_coeff %g%s%s; prompt format %s; value model %s\n",
               cfg_.method.c_str(), (long long)n_prompts, (long long)steps_, (long long)P_, (long long)N_,
               (long long)M_, (long long)(ppo() ? cfg_.ppo_epochs : cfg_.num_iterations),
               (long long)cfg_.num_mini_batches, peak_lr_, cfg_.kl_coeff, cfg_.adaptive_kl ? " (adaptive)" : "",
               cfg_.kl_coeff == 0 ? (cfg_.measure_kl ? " (KL measured)" : " (KL not measured)") : "",
               data::prompt_format_name(enc_.format),
               models().layout() == ValueModel::kNone     ? "none"
               : models().layout() == ValueModel::kShared ? "shared with the policy (a head on its trunk)"
               : models().value_from_reward()             ? "initialised from the reward model (same base)"
                                                          : "initialised fresh (the reward model is on another base)");
  if (run_.world() > 1 && run_.writer()) {
    // Rollouts are split in contiguous shares; the micro-batches of scoring and of each
    // minibatch's update are shared out by size, so a count that is not a multiple of the
    // ranks leaves some idle.
    const int64_t mini = (B_ + cfg_.num_mini_batches - 1) / cfg_.num_mini_batches;
    const int64_t per_minibatch = (mini + M_ - 1) / M_;
    std::fprintf(stderr, "[rlhf] data-parallel over %d ranks: %lld rollouts each, %lld micro-batch(es) per minibatch%s\n",
                 run_.world(), (long long)(B_ / run_.world()), (long long)per_minibatch,
                 per_minibatch % run_.world() ? " (not a multiple of the ranks: some wait on each update)" : "");
  }
  AdamWConfig adam;
  adam.weight_decay = cfg_.weight_decay;
  adam.eps = cfg_.adam_epsilon;
  opt_ = std::make_unique<AdamW>(models().parameters(), adam);
  prompts_.emplace(static_cast<size_t>(n_prompts), cfg_.seed);

  run_.begin(fingerprint(), steps_, *opt_);
  if (const auto& r = run_.resumed()) {
    load_adapter(r->dir, const_cast<LoraAdapter&>(models().policy()));
    models().load_value(r->dir);
    kl_ctl_.value = r->state.value("kl_coeff", cfg_.kl_coeff);
  }
}

// The data, validated in full before any model is loaded.
void PolicyTrainer::read_prompts() {
  data::ReadOptions read_opts;
  read_opts.skip_invalid = cfg_.skip_invalid;
  data::ReadReport report;
  prompt_rows_ = data::read_prompt_dataset(cfg_.prompt_dataset, read_opts, &report);
  std::fprintf(stderr, "[rlhf] prompt data: %zu prompts from %zu file(s)%s\n", prompt_rows_.size(), report.files.size(),
               report.skipped ? fmt::format(", {} invalid lines skipped", report.skipped).c_str() : "");
  if (prompt_rows_.empty()) fail("{}: no prompts", cfg_.prompt_dataset);
  if (!cfg_.eval_dataset.empty()) {
    data::ReadOptions eval_opts = read_opts;
    eval_opts.max_rows = static_cast<size_t>(cfg_.max_eval_prompts);
    eval_rows_ = data::read_prompt_dataset(cfg_.eval_dataset, eval_opts);
  }
  for (const auto& r : prompt_rows_) prompt_json_.push_back(json::parse(r.json));
  for (const auto& r : eval_rows_) eval_json_.push_back(json::parse(r.json));
}

// The rule rewards and the weights; every row (training and evaluation) checked by every
// rule before any model is loaded.
void PolicyTrainer::read_rules() {
  rules_ = data::parse_reward_rules(cfg_.reward_rule, "--reward-rule");
  weights_ = cfg_.weights();
  for (const auto& rule : rules_) {
    for (size_t i = 0; i < prompt_rows_.size(); ++i) rule.check_row(prompt_json_[i], prompt_rows_[i].where);
    for (size_t i = 0; i < eval_rows_.size(); ++i) rule.check_row(eval_json_[i], eval_rows_[i].where);
  }
  if (!rules_.empty()) {
    std::string line;
    size_t w = 0;
    if (!cfg_.reward_model.empty()) line = fmt::format("the reward model x {:g}", weights_[w++]);
    for (const auto& rule : rules_) line += fmt::format("{}{} x {:g}", line.empty() ? "" : " + ", rule.spec(), weights_[w++]);
    std::fprintf(stderr, "[rlhf] reward: %s\n", line.c_str());
  }
}

// Prompts are encoded as the reward model was trained unless told otherwise.
void PolicyTrainer::choose_encoding() {
  if (has_rm()) enc_ = rm_info().encode;
  data::PromptForms forms;
  forms.add_rows(prompt_rows_);
  forms.add_rows(eval_rows_);
  enc_.format = has_rm() ? data::choose_prompt_format(cfg_.prompt_format.value_or(""), rm_info().encode.format,
                                                      "the reward model in " + cfg_.reward_model, forms, "--prompt-format")
                         : data::choose_prompt_format(cfg_.prompt_format.value_or(""), std::nullopt, "", forms,
                                                      "--prompt-format");
  if (cfg_.instruction) enc_.instruction = *cfg_.instruction;
  enc_.prompt_sequence_length = cfg_.prompt_sequence_length;
  enc_.target_sequence_length = cfg_.target_sequence_length;
  if (has_rm() && (enc_.format != rm_info().encode.format || enc_.instruction != rm_info().encode.instruction))
    std::fprintf(stderr,
                 "[rlhf] warning: prompts are formatted differently from the reward model's training "
                 "(format %s vs %s, instruction \"%s\" vs \"%s\")\n",
                 data::prompt_format_name(enc_.format), data::prompt_format_name(rm_info().encode.format),
                 enc_.instruction.c_str(), rm_info().encode.instruction.c_str());
  eos_ = completion_eos_id(policy_model());
  pad_ = policy_model().pad_id;
  // The reward model reads the policy's ids as they are when it shares the tokenizer and the
  // prompt encoding; otherwise the completion text is re-encoded its way.
  same_encoding_ = has_rm() && roles_.shared_base() && enc_.format == rm_info().encode.format &&
                   enc_.instruction == rm_info().encode.instruction &&
                   enc_.prompt_sequence_length <= rm_info().encode.prompt_sequence_length;
}

void PolicyTrainer::encode_prompts() {
  data::Encoder encoder(*policy_model().tokenizer, policy_model().chat_template, eos_, enc_);
  for (const auto& r : prompt_rows_) prompt_ids_.push_back(encoder.prompt_ids(r.prompt, r.where));
  for (const auto& r : eval_rows_) eval_ids_.push_back(encoder.prompt_ids(r.prompt, r.where));
  for (size_t i = 0; i < prompt_ids_.size(); ++i)
    if (prompt_ids_[i].empty()) fail("{}: the prompt encodes to no tokens", prompt_rows_[i].where);
  for (size_t i = 0; i < eval_ids_.size(); ++i)
    if (eval_ids_[i].empty()) fail("{}: the prompt encodes to no tokens", eval_rows_[i].where);
  if (enc_.prompt_sequence_length + enc_.target_sequence_length > policy_model().config.max_position)
    fail("--prompt-sequence-length {} + --target-sequence-length {} exceed the model's context ({})",
         enc_.prompt_sequence_length, enc_.target_sequence_length, policy_model().config.max_position);
  Sha256 hash;
  for (const auto& v : prompt_ids_) {
    const uint64_t n = v.size();
    hash.update(&n, sizeof n);
    hash.update(v.data(), v.size() * sizeof(int32_t));
  }
  data_sha256_ = hash.hex();
}

// What must not change between a run and its resume: the settings that change the result,
// the inputs' hashes, and what was resolved from them.
json PolicyTrainer::fingerprint() const {
  json f = settings_json(policy_settings(), cfg_, /*result_only=*/true);
  f["prompt_format"] = data::prompt_format_name(enc_.format);
  f["instruction"] = enc_.instruction;
  f["base_sha256"] = roles_.policy_base_sha256;
  f["dtype_resolved"] = dtype_name(policy_model().net->dtype());  // what "auto" became on this machine
  if (has_rm()) {
    const TrainedFolder rm = read_reward_model_info(cfg_.reward_model);
    f["reward_model_sha256"] = sha256_files(rm.content_files());
  }
  f["data_sha256"] = data_sha256_;
  f["steps"] = steps_;
  return f;
}

// ---------------------------------------------------------------------------------------
// The loop (ppo, grpo, rloo).

PolicyTrainSummary PolicyTrainer::train() {
  measure_reference_scores();
  if (run_.start() == 0) evaluate(0);
  const bool reuse = first_update_gives_old_logprobs();
  const bool own = !reuse && each_update_forward_gives_old_logprobs();
  for (int64_t step = run_.start(); step < steps_; ++step) {
    StepClock clock;
    const double lr = peak_lr_ * (1.0 - static_cast<double>(step) / static_cast<double>(steps_));
    Rollouts batch = generate_rollouts(step);
    clock.lap("time/generate");
    score_rollouts(batch, prompt_rows_, prompt_json_);
    clock.lap("time/score");
    compute_logprobs_and_values(batch, step, /*policy=*/!reuse && !own);
    clock.lap("time/logprobs");
    std::vector<PolicyForward> first;  // the first update's forwards, graphs kept (reuse only)
    if (reuse) first = first_forward(batch, step);
    compute_advantages(batch);
    const UpdateStats update = ppo_update(batch, step, lr, std::move(first));
    if (own) {  // the update's forwards filled in this rank's rows of the old log-probs
      run_.all_reduce({batch.old_logp, batch.entropy});
      measure_kl(batch);
    }
    if (cfg_.adaptive_kl) kl_ctl_.update(batch.mean_kl, B_);  // ppo only (check_policy_config)
    clock.lap("time/train");
    const int64_t done = step + 1;
    log_step(done, batch, update, lr, clock);
    if (done % cfg_.checkpoint_every == 0 && done != steps_) save_checkpoint(done);
    if (cfg_.eval_every > 0 && done % cfg_.eval_every == 0 && done != steps_) evaluate(done);
  }
  run_.finish_progress();
  return finish();
}

// P prompts from the epoch stream, each completed N times by the policy at the rollout
// temperature: rollout p·N + g is prompt p's g-th completion (a group is N consecutive rows).
Rollouts PolicyTrainer::generate_rollouts(int64_t step) {
  Rollouts r;
  r.samples.resize(static_cast<size_t>(B_));
  for (int64_t i = 0; i < B_; ++i) {
    Sample& s = r.samples[static_cast<size_t>(i)];
    s.row = (*prompts_)[step * P_ + i / N_];
    s.prompt = &prompt_ids_[s.row];
  }
  complete(r.samples, cfg_.temperature, mix_seed(cfg_.seed, 0x5a3b1e, static_cast<uint64_t>(step)));
  return r;
}

// Completions of the samples' prompts with the policy. Sample i samples with its own seed
// (seed, i), so its completion is the same whichever batch or rank generates it: with N ranks
// each completes a contiguous 1/N of the samples, and all of them are then shared.
void PolicyTrainer::complete(std::vector<Sample>& samples, double temperature, uint64_t seed, bool reference) {
  const size_t n = samples.size(), ranks = static_cast<size_t>(run_.world()), rank = static_cast<size_t>(run_.rank());
  const size_t begin = n * rank / ranks, end = n * (rank + 1) / ranks;
  complete_shard(samples, begin, end, temperature, seed, reference);
  if (ranks == 1) return;
  std::string mine;  // per sample: the stopped flag, the token count, the tokens
  for (size_t i = begin; i < end; ++i) {
    const uint32_t count = static_cast<uint32_t>(samples[i].response.size());
    mine.push_back(samples[i].stopped ? 1 : 0);
    mine.append(reinterpret_cast<const char*>(&count), sizeof count);
    mine.append(reinterpret_cast<const char*>(samples[i].response.data()), count * sizeof(int32_t));
  }
  const std::vector<std::string> all = run_.all_gather(mine);
  for (size_t r = 0; r < ranks; ++r) {
    const std::string& bytes = all[r];
    size_t at = 0;
    for (size_t i = n * r / ranks; i < n * (r + 1) / ranks; ++i) {
      uint32_t count = 0;
      if (at + 1 + sizeof count > bytes.size()) fail("rank {} sent a truncated rollout shard", r);
      samples[i].stopped = bytes[at] != 0;
      std::memcpy(&count, bytes.data() + at + 1, sizeof count);
      at += 1 + sizeof count;
      if (at + size_t{count} * sizeof(int32_t) > bytes.size()) fail("rank {} sent a truncated rollout shard", r);
      samples[i].response.resize(count);
      std::memcpy(samples[i].response.data(), bytes.data() + at, count * sizeof(int32_t));
      at += count * sizeof(int32_t);
    }
  }
}

// Completions of samples [begin, end), in generation batches, by the policy or the reference.
void PolicyTrainer::complete_shard(std::vector<Sample>& samples, size_t begin, size_t end, double temperature,
                                   uint64_t seed, bool reference) {
  for (size_t g0 = begin; g0 < end; g0 += static_cast<size_t>(G_)) {
    const size_t g1 = std::min(end, g0 + static_cast<size_t>(G_));
    std::vector<std::vector<int32_t>> batch;
    SamplingConfig sampling;
    sampling.temperature = temperature;
    sampling.max_new_tokens = enc_.target_sequence_length;
    GenerateOptions gopt;
    for (size_t i = g0; i < g1; ++i) {
      batch.push_back(*samples[i].prompt);
      gopt.row_seeds.push_back(mix_seed(seed, i));
    }
    gopt.stop_ids = policy_model().stop_ids;
    gopt.pad_id = pad_;
    if (!reference) gopt.adapters = {&models().policy()};
    Generation gen = generate(*policy_model().net, batch, sampling, gopt);
    for (size_t i = g0; i < g1; ++i) {
      samples[i].response = std::move(gen.tokens[i - g0]);
      samples[i].stopped = gen.stopped[i - g0];
      if (samples[i].response.empty()) samples[i].response.push_back(eos_), samples[i].stopped = true;
    }
  }
}

// Reward normalisation (N+): the reward model's scores of reward_normalization_samples
// completions of the training prompts, sampled from the reference (the untuned policy) at the
// rollout temperature with seeds of their own. A pure function of the run's inputs, so a
// resumed run computes the same numbers again.
void PolicyTrainer::measure_reference_scores() {
  const int64_t n = cfg_.reward_normalization_samples;
  if (n == 0 || !has_rm()) return;
  Rollouts r;
  r.samples.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    Sample& s = r.samples[static_cast<size_t>(i)];
    s.row = (*prompts_)[i];
    s.prompt = &prompt_ids_[s.row];
  }
  complete(r.samples, cfg_.temperature, mix_seed(cfg_.seed, 0x40b5e), /*reference=*/true);
  std::vector<uint8_t> stopped;
  for (const auto& s : r.samples) stopped.push_back(s.stopped);
  r.stopped = torch::tensor(stopped, torch::kUInt8).to(torch::kBool);
  const auto raw = torch::tensor(reward_model_scores(r.samples, prompt_rows_), torch::kFloat64);
  const double mean = raw.mean().item<double>(), stdev = raw.std().item<double>();
  score_mean_ = mean;
  if (std::isfinite(stdev) && stdev > 1e-6) {
    score_std_ = stdev;
  } else {
    std::fprintf(stderr, "[rlhf] warning: the reward model gave the untuned policy's %lld completions the same score "
                 "(%.4g): scores are centred, not scaled\n", (long long)n, mean);
  }
  std::fprintf(stderr,
               "[rlhf] reward normalisation: the untuned policy's %lld completions score %.4f +- %.4f "
               "(EOS in %.0f%%); scores are standardised by these\n",
               (long long)n, mean, stdev, 100.0 * r.stopped.to(torch::kFloat64).mean().item<double>());
}

std::vector<bool> PolicyTrainer::my_share(const std::vector<std::vector<size_t>>& mbs,
                                          const std::vector<Sample>& samples) const {
  std::vector<double> costs;  // a micro-batch's padded tokens
  for (const auto& mb : mbs) {
    size_t prompt = 0, response = 0;
    for (size_t i : mb) prompt = std::max(prompt, samples[i].prompt->size()), response = std::max(response, samples[i].response.size());
    costs.push_back(static_cast<double>(mb.size() * (prompt + response)));
  }
  return run_.my_share(costs);
}

// The reward model's raw score of each completion.
std::vector<double> PolicyTrainer::reward_model_scores(const std::vector<Sample>& samples,
                                                       const std::vector<data::PromptRow>& rows) {
  torch::NoGradGuard no_grad;
  auto& rm = *roles_.rm;
  // Chunks of M samples, each scored by one rank; the others' scores stay 0 until summed.
  std::vector<std::vector<size_t>> chunks;
  for (size_t s0 = 0; s0 < samples.size(); s0 += static_cast<size_t>(M_)) {
    chunks.emplace_back();
    for (size_t i = s0; i < std::min(samples.size(), s0 + static_cast<size_t>(M_)); ++i) chunks.back().push_back(i);
  }
  const std::vector<bool> mine = my_share(chunks, samples);
  std::vector<double> raw_scores(samples.size(), 0.0);
  for (size_t k = 0; k < chunks.size(); ++k) {
    if (!mine[k]) continue;
    const size_t s0 = chunks[k].front(), s1 = chunks[k].back() + 1;
    std::vector<std::vector<int32_t>> seqs;
    for (size_t i = s0; i < s1; ++i) {
      const Sample& s = samples[i];
      std::vector<int32_t> body = response_body(s);
      std::vector<int32_t> seq;
      if (same_encoding_) {
        // The reward model reads a completion at its EOS, as it was trained; one cut by the
        // length limit is read as train-reward encodes a too-long completion (its first
        // target_sequence_length - 1 tokens, then EOS), and gets the penalty unless it is off.
        const size_t keep = static_cast<size_t>(std::max<int64_t>(1, enc_.target_sequence_length - 1));
        if (body.size() > keep) body.resize(keep);
        seq = *s.prompt;
        seq.insert(seq.end(), body.begin(), body.end());
        seq.push_back(rm_info().eos_id);
      } else {
        seq = rm.encoder->prompt_ids(rows[s.row].prompt, rows[s.row].where);
        auto c = rm.encoder->completion_ids(policy_model().tokenizer->decode(body, /*skip_special=*/true));
        seq.insert(seq.end(), c.begin(), c.end());
      }
      seqs.push_back(std::move(seq));
    }
    auto sb = pack_sequences(seqs, rm_info().pad_id, /*left_pad=*/false, rm.base->net->device());
    auto scores = rm.reward->score(sb).to(torch::kCPU);
    for (size_t i = s0; i < s1; ++i) raw_scores[i] = scores[static_cast<int64_t>(i - s0)].item<float>();
  }
  run_.all_reduce(raw_scores);
  return raw_scores;
}

// Each completion's reward: Σ w_i r_i over the reward model (its score standardised by the
// untuned policy's, see measure_reference_scores) and the rules, then the missing-EOS penalty
// (ppo.h). raw_scores: the same sum with the reward model's score as it is.
void PolicyTrainer::score_rollouts(Rollouts& r, const std::vector<data::PromptRow>& rows,
                                   const std::vector<json>& row_json) {
  std::vector<Sample>& samples = r.samples;
  const size_t n = samples.size();
  std::vector<float> raw(n, 0.0f);
  std::vector<uint8_t> stopped;
  for (const auto& s : samples) stopped.push_back(s.stopped);
  torch::Tensor combined = torch::zeros({static_cast<int64_t>(n)}, torch::kFloat32);
  size_t w = 0;
  if (has_rm()) {
    const std::vector<double> rm = reward_model_scores(samples, rows);
    const double weight = weights_[w++];
    std::vector<float> rm_raw(rm.begin(), rm.end());
    combined = weight * ((torch::tensor(rm_raw, torch::kFloat32) - score_mean_) / score_std_);
    for (size_t i = 0; i < n; ++i) raw[i] = static_cast<float>(weight * rm_raw[i]);
  }
  std::vector<double> rule_scores(n * rules_.size(), 0.0);
  std::vector<float> rule_sum(n, 0.0f);
  if (!rules_.empty()) {
    // Rules read text: cheap next to the models, so every rank scores every completion.
    for (size_t i = 0; i < n; ++i) {
      const Sample& s = samples[i];
      const std::vector<int32_t> body = response_body(s);
      const std::string text = policy_model().tokenizer->decode(body, /*skip_special=*/true);
      data::RuleInput in{.completion = text,
                         .tokens = static_cast<int64_t>(body.size()),
                         .max_tokens = enc_.target_sequence_length,
                         .row = &row_json[s.row]};
      for (size_t k = 0; k < rules_.size(); ++k) {
        const double x = rules_[k].score(in);
        rule_scores[i * rules_.size() + k] = x;
        raw[i] += static_cast<float>(weights_[w + k] * x);
        rule_sum[i] += static_cast<float>(weights_[w + k] * x);
      }
    }
    combined = combined + torch::tensor(rule_sum, torch::kFloat32);
  }
  for (size_t i = 0; i < n; ++i) samples[i].raw_score = raw[i];
  r.rule_scores = torch::tensor(rule_scores, torch::kFloat64).view({static_cast<int64_t>(n), static_cast<int64_t>(rules_.size())});
  r.raw_scores = torch::tensor(raw, torch::kFloat32);
  r.stopped = torch::tensor(stopped, torch::kUInt8).to(torch::kBool);
  r.scores = cfg_.eos_penalty ? ppo::apply_eos_penalty(combined, r.stopped, cfg_.missing_eos_penalty, eos_mode_)
                              : combined;
  for (size_t i = 0; i < samples.size(); ++i) samples[i].score = r.scores[static_cast<int64_t>(i)].item<float>();
  r.raw_scores = r.raw_scores.to(dev_), r.scores = r.scores.to(dev_);
}

// Whether the first update's own forward gives the old log-probs and values exactly: its
// minibatch is the whole batch (one minibatch), this rank's share of it is one micro-batch (a
// forward kept with its graph until the advantages are known costs no more memory than the
// update's), and no dropout makes a training forward differ from a scoring one. Otherwise
// they are computed by a forward of their own without gradients (the N+ and TRL way).
bool PolicyTrainer::first_update_gives_old_logprobs() const {
  const bool dropout = cfg_.lora.dropout > 0 ||
                       (models().layout() == ValueModel::kSeparate && models().value_adapter().config.dropout > 0);
  // (the number of passes does not matter: the first pass's first update is the one that is reused)
  const int64_t per_rank = (B_ + run_.world() - 1) / run_.world();
  return cfg_.num_mini_batches == 1 && M_ >= per_rank && !dropout;
}

// Whether each micro-batch's update forward gives its own old log-probs (logp.detach(), ratio
// exactly 1, as TRL's GRPO with one iteration): GRPO's advantages come from the rewards alone,
// so with one pass and one minibatch the old log-probs are never needed before the update,
// whatever the micro-batches. The KL and entropy metrics are then measured after the update.
bool PolicyTrainer::each_update_forward_gives_old_logprobs() const {
  return method_ == Method::Grpo && cfg_.num_iterations == 1 && cfg_.num_mini_batches == 1;
}

// The reference's log-probs (when the KL is used or measured) and, with `policy`, the policy's
// log-probs, entropies and values of the rollouts, no gradients. The micro-batches are those
// the first PPO epoch's update will form: a sample's numbers depend on its micro-batch's shape
// in bf16, and with the same micro-batches the first minibatch's ratio is exactly 1.
void PolicyTrainer::compute_logprobs_and_values(Rollouts& r, int64_t step, bool policy) {
  const int64_t B = r.size(), T = r.width();
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(dev_);
  r.old_logp = torch::zeros({B, T}, f32), r.ref_logp = torch::zeros({B, T}, f32);
  r.old_values = torch::zeros({B, T}, f32), r.mask = torch::zeros({B, T}, f32), r.entropy = torch::zeros({B, T}, f32);
  r.kl_measured = cfg_.uses_reference();
  std::vector<std::vector<size_t>> mbs;
  for (const auto& minibatch : minibatches(step, 0))
    for (auto& mb : micro_batches(minibatch, r.samples, M_)) mbs.push_back(std::move(mb));
  torch::NoGradGuard no_grad;
  // Each rank computes its share of the micro-batches; the others' rows arrive in the sum.
  const std::vector<bool> mine = my_share(mbs, r.samples);
  for (size_t k = 0; k < mbs.size(); ++k) {
    if (!mine[k]) continue;
    const auto& mb = mbs[k];
    RolloutBatch rb = pack_samples(mb, r.samples, pad_, dev_);
    if (r.kl_measured) scatter_rows(r.ref_logp, mb, models().logprobs(rb, false, cfg_.temperature));
    scatter_rows(r.mask, mb, rb.mask);
    if (!policy) continue;
    const PolicyForward f = models().forward(rb, cfg_.temperature, /*entropy=*/true);
    scatter_rows(r.old_logp, mb, f.logp);
    scatter_rows(r.entropy, mb, f.entropy);
    scatter_rows(r.old_values, mb, f.values);
  }
  if (policy) {
    run_.all_reduce({r.old_logp, r.ref_logp, r.old_values, r.mask, r.entropy});
  } else {
    run_.all_reduce({r.ref_logp, r.mask});
  }
}

// The first update's forwards (first_update_gives_old_logprobs): this rank's micro-batch of
// the epoch-0 minibatch, with gradients. Their detached outputs are the old log-probs, values
// and entropies (summed over the ranks); the forwards themselves serve the first update.
std::vector<PolicyForward> PolicyTrainer::first_forward(Rollouts& r, int64_t step) {
  const auto mbs = micro_batches(minibatches(step, 0).front(), r.samples, M_);
  const std::vector<bool> mine = my_share(mbs, r.samples);
  std::vector<PolicyForward> out(mbs.size());
  for (size_t k = 0; k < mbs.size(); ++k) {
    if (!mine[k]) continue;
    RolloutBatch rb = pack_samples(mbs[k], r.samples, pad_, dev_);
    out[k] = models().forward(rb, cfg_.temperature, /*entropy=*/true);
    scatter_rows(r.old_logp, mbs[k], out[k].logp.detach());
    scatter_rows(r.entropy, mbs[k], out[k].entropy);
    scatter_rows(r.old_values, mbs[k], out[k].values.detach());
  }
  run_.all_reduce({r.old_logp, r.old_values, r.entropy});
  return out;
}

// The advantages, by method (grpo.h):
//   ppo   per-token rewards (score at the last token, -kl_coeff · KL), GAE, whitened;
//   grpo  each completion's reward against its group's mean (and std, --scale-rewards);
//   rloo  each completion's reward - kl_coeff · its summed KL, against the mean of the others.
void PolicyTrainer::compute_advantages(Rollouts& r) {
  measure_kl(r);  // (GRPO with the old log-probs from the update's forwards: measured again after it)
  r.kl_coeff = kl_ctl_.value;
  // Groups whose rewards are all equal (nothing to learn from them), when there are groups.
  if (N_ > 1)
    r.std_zero = grpo::group_advantages(r.scores.to(torch::kFloat64).cpu(), N_, grpo::ScaleRewards::Group).std_zero;
  if (method_ == Method::Grpo) {
    r.advantages = grpo::group_advantages(r.scores, N_, scale_rewards_).advantages.to(torch::kFloat32);
    return;
  }
  if (method_ == Method::Rloo) {
    const torch::Tensor ref = r.kl_measured ? r.ref_logp : torch::Tensor();
    r.advantages = grpo::rloo_advantages(grpo::rloo_rewards(r.scores, r.old_logp, ref, r.mask, r.kl_coeff), N_);
    return;
  }
  torch::Tensor rewards = ppo::token_rewards(r.scores, r.kl, r.mask, r.kl_coeff);
  auto [advantages, returns] = ppo::gae(rewards, r.old_values * r.mask, r.mask, cfg_.gamma, cfg_.lam);
  r.advantages = ppo::masked_whiten(advantages, r.mask);
  r.returns = returns;
}

// The KL of the rollouts' log-probs to the reference's: per token (k1) and summed per sequence,
// k1 and k3 means over the batch (0 when the reference is not run).
void PolicyTrainer::measure_kl(Rollouts& r) {
  r.kl = r.kl_measured ? ppo::kl_per_token(r.old_logp, r.ref_logp, r.mask) : torch::zeros_like(r.old_logp);
  if (r.kl_measured) r.mean_kl_k3 = ppo::kl_k3_per_token(r.old_logp, r.ref_logp, r.mask).sum(1).mean().item<double>();
  r.mean_kl = r.kl.sum(1).mean().item<double>();
}

// ppo_epochs passes over the rollouts in minibatches, one optimizer update each (skipped
// when the gradient norm is not finite). `first`, when given, holds the first update's
// forwards (first_forward).
UpdateStats PolicyTrainer::ppo_update(Rollouts& r, int64_t step, double lr, std::vector<PolicyForward> first) {
  UpdateStats u;
  const int64_t passes = ppo() ? cfg_.ppo_epochs : cfg_.num_iterations;
  for (int64_t epoch = 0; epoch < passes; ++epoch) {
    for (const auto& minibatch : minibatches(step, epoch)) {
      opt_->zero_grad();
      const MinibatchStats m = accumulate_gradients(r, minibatch, u.updates == 0 && !first.empty() ? &first : nullptr);
      first.clear();  // frees the first forwards' graphs
      run_.all_reduce_gradients(*opt_);
      const double grad_norm = opt_->clip_grad_norm(cfg_.max_grad_norm);
      if (run_.guard().step(*opt_, lr, grad_norm, step + 1)) u.grad_norm += grad_norm, ++u.applied;
      if (u.updates == 0) u.approxkl_first = m.approxkl, u.clipfrac_first = m.clipfrac;
      u.policy_loss += m.policy_loss, u.value_loss += m.value_loss, u.clipfrac += m.clipfrac;
      u.value_clipfrac += m.value_clipfrac, u.approxkl += m.approxkl;
      ++u.updates;
    }
  }
  return u;
}

// The minibatches of a PPO epoch: a permutation of the rollouts by (seed, step, epoch), cut
// into num_mini_batches parts.
std::vector<std::vector<size_t>> PolicyTrainer::minibatches(int64_t step, int64_t epoch) const {
  const int64_t mini = (B_ + cfg_.num_mini_batches - 1) / cfg_.num_mini_batches;
  auto order = data::permutation(static_cast<size_t>(B_), mix_seed(cfg_.seed, 0x99e0c, step, epoch));
  std::vector<std::vector<size_t>> out;
  for (int64_t m0 = 0; m0 < B_; m0 += mini) out.emplace_back(order.begin() + m0, order.begin() + std::min(B_, m0 + mini));
  return out;
}

// Gradients of the clipped policy loss + vf_coef · clipped value loss over one minibatch,
// accumulated over its micro-batches, each weighted by its share of the minibatch's tokens.
// `forwards`, when given, holds each micro-batch's forward already made (first_forward).
MinibatchStats PolicyTrainer::accumulate_gradients(Rollouts& r, const std::vector<size_t>& minibatch,
                                                   std::vector<PolicyForward>* forwards) {
  MinibatchStats m;
  const double tokens = gather_rows(r.mask, minibatch, r.width()).sum().item<double>();
  // grpo and rloo: each micro-batch's loss is its share of the minibatch's (grpo.h LossScale).
  const grpo::LossScale scale{.sequences = static_cast<double>(minibatch.size()),
                              .tokens = std::max(1.0, tokens),
                              .max_length = enc_.target_sequence_length};
  const bool grpo_kl = method_ == Method::Grpo && r.kl_measured && r.kl_coeff > 0;
  const bool own = !forwards && each_update_forward_gives_old_logprobs();  // old log-probs = this forward's
  const auto mbs = micro_batches(minibatch, r.samples, M_);
  const std::vector<bool> mine = my_share(mbs, r.samples);
  for (size_t k = 0; k < mbs.size(); ++k) {
    if (!mine[k]) continue;  // another rank's; the gradients are summed over the ranks
    const auto& mb = mbs[k];
    RolloutBatch rb = pack_samples(mb, r.samples, pad_, dev_);
    const int64_t w = rb.response.size(1);
    const double share = rb.mask.sum().item<double>() / std::max(1.0, tokens);
    const PolicyForward f = forwards ? std::move((*forwards)[k]) : models().forward(rb, cfg_.temperature, own);
    if (!ppo()) {
      const torch::Tensor old = own ? f.logp.detach() : gather_rows(r.old_logp, mb, w);
      const torch::Tensor adv = gather_items(r.advantages, mb);
      if (own) scatter_rows(r.old_logp, mb, old), scatter_rows(r.entropy, mb, f.entropy);
      const grpo::Loss l =
          method_ == Method::Grpo
              ? grpo::grpo_loss(f.logp, old, grpo_kl ? gather_rows(r.ref_logp, mb, w) : torch::Tensor(), adv, rb.mask,
                                cfg_.cliprange, cfg_.clip_high(), r.kl_coeff, loss_type_, scale)
              : grpo::rloo_loss(f.logp, old, adv, rb.mask, cfg_.cliprange, cfg_.clip_high(), scale.sequences);
      l.loss.backward();
      // The clip share is of tokens (grpo) or of sequences (rloo): weighted alike.
      const double part = method_ == Method::Grpo ? share : static_cast<double>(mb.size()) / scale.sequences;
      m.policy_loss += l.loss.item<double>();
      m.clipfrac += part * l.clipfrac.item<double>(), m.approxkl += share * l.approxkl.item<double>();
      continue;
    }
    auto pl = ppo::policy_loss(f.logp, gather_rows(r.old_logp, mb, w), gather_rows(r.advantages, mb, w), rb.mask,
                               cfg_.cliprange);
    auto vl = ppo::value_loss(f.values, gather_rows(r.old_values, mb, w), gather_rows(r.returns, mb, w), rb.mask,
                              cfg_.cliprange_value);
    ((pl.loss + cfg_.vf_coef * vl.loss) * share).backward();
    m.policy_loss += share * pl.loss.item<double>(), m.value_loss += share * vl.loss.item<double>();
    m.clipfrac += share * pl.clipfrac.item<double>(), m.value_clipfrac += share * vl.clipfrac.item<double>();
    m.approxkl += share * pl.approxkl.item<double>();
  }
  std::vector<double> sums = {m.policy_loss, m.value_loss, m.clipfrac, m.value_clipfrac, m.approxkl};
  run_.all_reduce(sums);
  return {sums[0], sums[1], sums[2], sums[3], sums[4]};
}

void PolicyTrainer::log_step(int64_t done, const Rollouts& r, const UpdateStats& u, double lr,
                             const StepClock& clock) {
  const double dt = clock.total();
  run_.train_seconds += dt;
  step_times_.push_back(dt);
  const double n = static_cast<double>(u.updates);
  const double reward = r.scores.mean().item<double>();
  const double lengths = r.mask.sum(1).mean().item<double>();
  const double eos_fraction = r.stopped.to(torch::kFloat64).mean().item<double>();
  const double kl_penalty = r.kl_coeff * r.mean_kl;
  std::map<std::string, double> m = {
      {"reward", reward},
      {"kl_loss", kl_penalty},
      {"rl_loss", (u.policy_loss + cfg_.vf_coef * u.value_loss) / n},
      {"objective/entropy", (-r.old_logp * r.mask).sum(1).mean().item<double>()},
      {"objective/scores", r.raw_scores.mean().item<double>()},
      {"objective/rlhf_reward", reward - kl_penalty},
      {"objective/non_score_reward", -kl_penalty},
      {"policy/entropy", ppo::masked_mean(r.entropy, r.mask).item<double>()},
      {"policy/approxkl", u.approxkl / n},
      {"policy/clipfrac", u.clipfrac / n},
      {"policy/approxkl_first", u.approxkl_first},
      {"policy/clipfrac_first", u.clipfrac_first},
      {"loss/policy", u.policy_loss / n},
      {"response_length", lengths},
      {"completions/mean_length", lengths},
      {"reward_std", r.scores.numel() > 1 ? r.scores.to(torch::kFloat64).std().item<double>() : 0.0},
      {"eos_fraction", eos_fraction},
      {"learning_rate", lr},
      {"kl_coeff", r.kl_coeff},
      {"train/skipped_steps", static_cast<double>(u.updates - u.applied)},
      {"time/step", dt},
  };
  if (r.std_zero.defined()) m["frac_reward_zero_std"] = r.std_zero.to(torch::kFloat64).mean().item<double>();
  if (ppo()) {
    m["loss/value"] = u.value_loss / n;
    m["val/clipfrac"] = u.value_clipfrac / n;
    m["val/mean"] = ppo::masked_mean(r.old_values, r.mask).item<double>();
  }
  for (size_t k = 0; k < rules_.size(); ++k)
    m["rewards/" + rules_[k].spec() + "/mean"] = r.rule_scores.select(1, static_cast<int64_t>(k)).mean().item<double>();
  m.insert(clock.laps.begin(), clock.laps.end());
  run_.add_collective_metrics(m);
  if (r.kl_measured) {  // never a 0 standing for "not computed"
    m["objective/kl"] = r.mean_kl;          // k1: TRL's estimate (a small batch's mean can be negative)
    m["objective/kl_k3"] = r.mean_kl_k3;    // k3: never negative
  }
  m["objective/score_mean_reference"] = score_mean_;
  m["objective/score_std_reference"] = score_std_;
  if (u.applied > 0) m["grad_norm"] = u.grad_norm / static_cast<double>(u.applied);
  run_.logger().log(done, m);
  last_reward_ = reward;
  last_kl_ = r.kl_measured ? r.mean_kl : std::numeric_limits<double>::quiet_NaN();
  last_kl_k3_ = r.kl_measured ? r.mean_kl_k3 : std::numeric_limits<double>::quiet_NaN();
  run_.progress(done, r.kl_measured ? fmt::format("reward {:.3f} kl(k3) {:.3f} len {:.1f}", reward, r.mean_kl_k3, lengths)
                                    : fmt::format("reward {:.3f} len {:.1f}", reward, lengths));
}

// ---------------------------------------------------------------------------------------
// Around the steps.

// Greedy completions of the evaluation prompts, scored, written to eval/step-N.jsonl.
void PolicyTrainer::evaluate(int64_t step) {
  if (eval_rows_.empty()) return;
  const fs::path path = run_.out() / "eval" / (checkpoint::step_name(step) + ".jsonl");
  std::vector<double> written = {run_.writer() && fs::exists(path) ? 1.0 : 0.0};  // rank 0's word
  run_.all_reduce(written);
  if (written[0] > 0) return;  // written before a resume
  Rollouts r;
  r.samples.resize(eval_rows_.size());
  for (size_t i = 0; i < r.samples.size(); ++i) r.samples[i].prompt = &eval_ids_[i], r.samples[i].row = i;
  complete(r.samples, 0.0, mix_seed(cfg_.seed, 0xe7a1));
  score_rollouts(r, eval_rows_, eval_json_);
  std::string lines;
  double reward = 0, raw = 0, length = 0, eos_share = 0, words = 0;
  for (size_t i = 0; i < r.samples.size(); ++i) {
    const Sample& s = r.samples[i];
    const std::string text = policy_model().tokenizer->decode(response_body(s), /*skip_special=*/true);
    json row = json::parse(eval_rows_[i].json);
    row["prediction"] = text;
    row["reward"] = s.score;
    row["score"] = s.raw_score;
    row["stopped"] = s.stopped;
    row["response_tokens"] = s.response.size();
    lines += row.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";  // invalid UTF-8 -> U+FFFD
    reward += s.score, raw += s.raw_score, length += static_cast<double>(s.response.size());
    eos_share += s.stopped ? 1 : 0, words += static_cast<double>(text::count_words(text));
  }
  if (!run_.writer()) return;
  fs::create_directories(path.parent_path());
  write_file_atomic(path.string(), lines);
  const double n = static_cast<double>(r.samples.size());
  run_.logger().log(step, {{"eval/reward", reward / n}, {"eval/scores", raw / n}, {"eval/response_length", length / n},
                           {"eval/eos_fraction", eos_share / n}, {"eval/words", words / n}});
  std::fprintf(stderr, "[rlhf] eval at step %lld: reward %.4f, %.1f words, EOS %.0f%% (%s)\n", (long long)step,
               reward / n, words / n, 100 * eos_share / n, path.c_str());
}

void PolicyTrainer::save_checkpoint(int64_t step) {
  // Sampling and minibatch order are pure functions of (seed, step): no other random state exists.
  json state = {{"kl_coeff", kl_ctl_.value}, {"rng", {{"seed", cfg_.seed}, {"derivation", "mix(seed, step, use)"}}}};
  run_.save_checkpoint(step, state, [&](const std::string& dir) {
    save_adapter(dir, models().policy(),
                 {.base_reference = policy_model().reference, .task_type = "CAUSAL_LM", .modules_to_save = {}});
    models().save_value(dir, policy_model().reference);
  });
}

// The last checkpoint, the final evaluation, the policy folder (policy.json last).
PolicyTrainSummary PolicyTrainer::finish() {
  if (run_.final_checkpoint_missing()) save_checkpoint(steps_);
  evaluate(steps_);

  PolicyTrainSummary sum;
  sum.steps = steps_;
  sum.step_seconds_median = median(step_times_);
  sum.final_reward = last_reward_;
  sum.final_kl_k1 = last_kl_;
  sum.final_kl_k3 = last_kl_k3_;
  json summary = {{"steps", steps_},
                  {"prompts", prompt_ids_.size()},
                  {"train_seconds", run_.train_seconds},
                  {"step_seconds_median", sum.step_seconds_median},
                  {"final/reward", last_reward_},
                  {"final/kl_k3", json_or_null(last_kl_k3_)},
                  {"final/kl_k1", json_or_null(last_kl_)},
                  {"method", cfg_.method}};
  if (has_rm())
    summary["reward_normalization"] = {
        {"samples", cfg_.reward_normalization_samples}, {"mean", score_mean_}, {"std", score_std_}};
  if (!run_.writer()) return sum;  // rank 0 writes the folder
  save_adapter(cfg_.output, models().policy(),
               {.base_reference = policy_model().reference, .task_type = "CAUSAL_LM", .modules_to_save = {}});
  models().save_value(cfg_.output, policy_model().reference);
  run_.write_summary(summary);

  TrainedFolder policy;
  policy.kind = TrainedFolder::Kind::Policy;
  policy.base_reference = policy_model().reference;
  policy.base_path = fs::absolute(policy_model().path).string();
  policy.base_format = policy_model().format;
  policy.base_sha256 = roles_.policy_base_sha256;
  policy.lora = cfg_.lora;
  policy.encode = enc_;
  policy.eos_id = eos_;
  policy.pad_id = pad_;
  policy.task_type = "CAUSAL_LM";
  policy.training = {{"method", cfg_.method},
                     {"settings", run_.fingerprint()},
                     {"prompt_dataset", cfg_.prompt_dataset},
                     {"reward_model", has_rm() ? json(fs::absolute(cfg_.reward_model).string()) : json(nullptr)},
                     {"reward_rules", cfg_.reward_rule},
                     {"summary", summary}};
  write_policy_folder_manifest(cfg_.output, policy);  // last: marks the folder complete
  std::fprintf(stderr, "[rlhf] done: reward %.4f%s; %s per step (median); policy in %s\n", last_reward_,
               std::isfinite(last_kl_k3_) ? fmt::format(", KL {:.4f} (k3)", last_kl_k3_).c_str() : "",
               Progress::format_duration(sum.step_seconds_median).c_str(), cfg_.output.c_str());
  return sum;
}

}  // namespace

PolicyRoles load_policy_roles(const PolicyTrainConfig& cfg) {
  LoadOptions load;
  load.dtype = parse_dtype(cfg.dtype);
  load.device = parse_device(cfg.device);
  PolicyRoles r;
  if (cfg.reward_model.empty()) {  // rule rewards only: the policy's base alone
    const std::string ref = cfg.large_model_reference.empty() ? std::string(kDefaultModel) : cfg.large_model_reference;
    r.second = load_model(ref, load);
    r.policy_base = r.second.get();
    r.policy_base_sha256 = model_content_hash(r.second->path);
    r.models = std::make_unique<PolicyModels>(
        *r.policy_base->net, nullptr, cfg.lora, cfg.seed, ValueInit::kFresh,
        cfg.has_value_model() ? parse_value_model(cfg.value_model, "--value-model") : ValueModel::kNone);
    r.policy_base->net->set_gradient_checkpointing(cfg.gradient_checkpointing);
    return r;
  }
  const RewardModelInfo info = read_reward_model_info(cfg.reward_model);
  bool shared = true;
  if (!cfg.large_model_reference.empty()) {
    ModelFiles files = read_model(cfg.large_model_reference, /*weights=*/false);
    r.policy_base_sha256 = model_content_hash(files.path);
    shared = r.policy_base_sha256 == info.base_sha256;
  }
  r.rm = load_reward_model(cfg.reward_model, load, shared ? cfg.large_model_reference : "");
  if (shared) {
    r.policy_base = r.rm->base.get();
    r.policy_base_sha256 = info.base_sha256;
  } else {
    std::fprintf(stderr,
                 "[rlhf] the reward model was trained on %s, the policy is %s: loading the policy as a second model\n",
                 info.base_reference.c_str(), cfg.large_model_reference.c_str());
    r.second = load_model(cfg.large_model_reference, load);
    r.policy_base = r.second.get();
  }
  // The value model starts as the reward model only on the reward model's own base weights.
  if (cfg.has_value_model())
    r.models = std::make_unique<PolicyModels>(*r.policy_base->net, *r.rm->reward, cfg.lora, cfg.seed,
                                              shared ? ValueInit::kFromReward : ValueInit::kFresh,
                                              parse_value_model(cfg.value_model, "--value-model"));
  else
    r.models = std::make_unique<PolicyModels>(*r.policy_base->net, r.rm->reward.get(), cfg.lora, cfg.seed,
                                              ValueInit::kFresh, ValueModel::kNone);
  r.policy_base->net->set_gradient_checkpointing(cfg.gradient_checkpointing);
  return r;
}

PolicyTrainSummary train_policy(const PolicyTrainConfig& config) { return PolicyTrainer(config).train(); }

}  // namespace rlhf
