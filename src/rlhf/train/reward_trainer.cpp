#include "rlhf/train/reward_trainer.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <numeric>

#include "rlhf/data/dataset.h"
#include "rlhf/model/loader.h"
#include "rlhf/model/model.h"
#include "rlhf/track/metrics.h"
#include "rlhf/train/checkpoint.h"
#include "rlhf/train/optim.h"
#include "rlhf/train/reward_artifact.h"
#include "rlhf/train/reward_model.h"
#include "rlhf/train/tensor_file.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"
#include "rlhf/util/hash.h"
#include "rlhf/util/progress.h"

namespace rlhf {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

void check_config(const RewardTrainConfig& c) {
  if (c.preference_dataset.empty()) fail("--preference-dataset is required");
  if (c.output.empty()) fail("--output is required");
  if (c.train_steps <= 0 && c.epochs <= 0) fail("--reward-model-train-steps must be positive (got {})", c.train_steps);
  if (c.epochs < 0) fail("--reward-model-epochs must not be negative (got {})", c.epochs);
  if (c.batch_size <= 0) fail("--batch-size must be positive (got {})", c.batch_size);
  if (c.micro_batch_size <= 0) fail("--micro-batch-size must be positive (got {})", c.micro_batch_size);
  if (!(c.learning_rate_multiplier > 0)) fail("--reward-model-learning-rate-multiplier must be positive");
  if (c.warmup_ratio < 0 || c.warmup_ratio > 1) fail("--warmup-ratio must be in [0, 1]");
  if (c.validation_fraction < 0 || c.validation_fraction >= 1) fail("--validation-fraction must be in [0, 1)");
  if (c.validation_every < 0 || c.checkpoint_every <= 0) fail("--validation-every must be >= 0 and --checkpoint-every > 0");
  if (c.lora.rank <= 0) fail("--lora-rank must be positive (got {})", c.lora.rank);
  if (c.prompt_sequence_length < 1) fail("--prompt-sequence-length must be at least 1");
  if (c.target_sequence_length < 2) fail("--target-sequence-length must be at least 2 (a token and EOS)");
}

int64_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) * 1024;
}

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

// Micro-batches of pairs sorted by packed length (less padding), original order on ties.
std::vector<std::vector<const data::PreferencePair*>> micro_batches(std::vector<const data::PreferencePair*> pairs,
                                                                    int64_t size) {
  auto len = [](const data::PreferencePair* p) { return p->prompt.size() + p->chosen.size() + p->rejected.size(); };
  std::stable_sort(pairs.begin(), pairs.end(), [&](auto* a, auto* b) { return len(a) < len(b); });
  std::vector<std::vector<const data::PreferencePair*>> out;
  for (size_t i = 0; i < pairs.size(); i += size)
    out.emplace_back(pairs.begin() + i, pairs.begin() + std::min(pairs.size(), i + static_cast<size_t>(size)));
  return out;
}

// Accuracy and loss over pairs, no gradients.
PairStats evaluate(const RewardModel& rm, const std::vector<data::PreferencePair>& pairs, int64_t micro, int32_t pad,
                   torch::Device device) {
  torch::NoGradGuard no_grad;
  std::vector<const data::PreferencePair*> ptrs;
  for (const auto& p : pairs) ptrs.push_back(&p);
  PairStats s;
  for (const auto& mb : micro_batches(ptrs, micro)) {
    auto batch = pack_pairs(mb, pad, device);
    auto [rc, rr] = rm.score_pairs(batch);
    s.add(rc, rr, reward_pair_losses(rc, rr), batch.real_tokens);
  }
  return s;
}

void save_checkpoint(const fs::path& root, int64_t step, const RewardModel& rm, const AdamW& opt, const json& state,
                     const std::string& base_reference, int64_t keep) {
  checkpoint::save(root.string(), step, keep, state, [&](const std::string& dir) {
    rm.save_weights(dir, base_reference);
    save_tensors(dir + "/optimizer.safetensors", opt.state());
  });
}

}  // namespace

RewardTrainSummary train_reward_model(const RewardTrainConfig& cfg) {
  check_config(cfg);
  const fs::path out(cfg.output);
  if (!cfg.resume && (fs::exists(out / "reward_model.json") || fs::exists(out / "checkpoints")))
    fail("{} holds an earlier run; pass --resume to continue it, or choose another --output", cfg.output);

  // 1. Every data file is read and validated before the model is loaded.
  data::ReadOptions read_opts;
  read_opts.skip_invalid = cfg.skip_invalid;
  data::ReadReport report;
  std::vector<data::PreferenceRow> rows = data::read_preference_dataset(cfg.preference_dataset, read_opts, &report);
  std::fprintf(stderr, "[rlhf] preference data: %zu pairs from %zu file(s)%s\n", rows.size(), report.files.size(),
               report.skipped ? fmt::format(", {} invalid lines skipped", report.skipped).c_str() : "");
  std::vector<data::PreferenceRow> val_rows;
  std::vector<size_t> train_index;
  if (!cfg.eval_dataset.empty() && data::has_preference_fields(cfg.eval_dataset)) {
    data::ReadOptions eval_opts = read_opts;
    eval_opts.max_rows = static_cast<size_t>(cfg.max_validation_pairs);
    val_rows = data::read_preference_dataset(cfg.eval_dataset, eval_opts);
    train_index.resize(rows.size());
    std::iota(train_index.begin(), train_index.end(), 0);
  } else {
    if (!cfg.eval_dataset.empty())
      std::fprintf(stderr, "[rlhf] %s has no preference fields: validating on a held-out split instead\n",
                   cfg.eval_dataset.c_str());
    auto split = data::holdout_split(rows.size(), cfg.validation_fraction, cfg.max_validation_pairs, cfg.seed);
    train_index = split.train;
    for (size_t i : split.validation) val_rows.push_back(rows[i]);
  }
  if (train_index.empty()) fail("{}: no training pairs left after the validation split", cfg.preference_dataset);

  // 2. The model and the encoding of the data.
  LoadOptions load;
  load.dtype = parse_dtype(cfg.dtype);
  load.device = parse_device(cfg.device);
  if (load.dtype == torch::kFloat16) fail("--dtype fp16 is not supported for training (use fp32 or bf16)");
  auto model = load_model(cfg.large_model_reference, load);
  const std::string base_hash = model_content_hash(model->path);

  data::EncodeConfig enc;
  bool chat_data = rows.front().prompt.is_chat();
  enc.format = cfg.prompt_format == "auto" ? (chat_data ? data::PromptFormat::Chat : data::PromptFormat::Raw)
                                           : data::parse_prompt_format(cfg.prompt_format);
  enc.instruction = cfg.instruction;
  enc.prompt_sequence_length = cfg.prompt_sequence_length;
  enc.target_sequence_length = cfg.target_sequence_length;
  const int32_t eos = completion_eos_id(*model);
  const int32_t pad = model->pad_id;
  data::Encoder encoder(*model->tokenizer, model->chat_template, eos, enc);
  std::vector<data::PreferencePair> train, validation;
  {
    Progress bar("encode", static_cast<int64_t>(train_index.size() + val_rows.size()), "pair");
    for (size_t i : train_index) {
      train.push_back(encoder.encode(rows[i]));
      if (train.size() % 256 == 0) bar.update(static_cast<int64_t>(train.size()));
    }
    for (const auto& r : val_rows) validation.push_back(encoder.encode(r));
    bar.update(static_cast<int64_t>(train.size() + validation.size()));
    bar.finish();
  }
  Sha256 data_hash;
  for (const auto& p : train)
    for (const auto* v : {&p.prompt, &p.chosen, &p.rejected}) {
      const uint64_t n = v->size();
      data_hash.update(&n, sizeof n);
      data_hash.update(v->data(), v->size() * sizeof(int32_t));
    }

  const int64_t n = static_cast<int64_t>(train.size());
  const int64_t B = cfg.batch_size, M = std::min(cfg.micro_batch_size, cfg.batch_size);
  const int64_t steps = cfg.epochs > 0
                            ? static_cast<int64_t>(std::ceil(static_cast<double>((n + B - 1) / B) * cfg.epochs))
                            : cfg.train_steps;
  const int64_t warmup = static_cast<int64_t>(std::ceil(cfg.warmup_ratio * static_cast<double>(steps)));
  const double peak_lr = RewardTrainConfig::kBaseLearningRate * cfg.learning_rate_multiplier;
  std::fprintf(stderr,
               "[rlhf] %lld training pairs, %lld validation pairs; %lld steps of %lld pairs (micro-batches of %lld), "
               "lr %.3g, warmup %lld steps; prompt format %s\n",
               (long long)n, (long long)validation.size(), (long long)steps, (long long)B, (long long)M, peak_lr,
               (long long)warmup, data::prompt_format_name(enc.format));

  RewardModel rm(*model->net, cfg.lora, cfg.seed);
  AdamWConfig adam;
  adam.weight_decay = cfg.weight_decay;
  AdamW opt(rm.parameters(), adam);

  // What must not change between a run and its resume.
  json fingerprint = {
      {"base_sha256", base_hash}, {"data_sha256", data_hash.hex()}, {"steps", steps}, {"batch_size", B},
      {"micro_batch_size", M}, {"learning_rate", peak_lr}, {"warmup_steps", warmup},
      {"weight_decay", cfg.weight_decay}, {"max_grad_norm", cfg.max_grad_norm}, {"margin", cfg.margin},
      {"center_rewards_coefficient", cfg.center_rewards_coefficient}, {"seed", cfg.seed},
      {"lora_rank", cfg.lora.rank}, {"lora_alpha", cfg.lora.alpha}, {"lora_targets", cfg.lora.targets},
      {"dtype", cfg.dtype}, {"prompt_format", data::prompt_format_name(enc.format)},
      {"instruction", enc.instruction}, {"prompt_sequence_length", enc.prompt_sequence_length},
      {"target_sequence_length", enc.target_sequence_length}};

  int64_t start = 0;
  double train_seconds = 0;
  int64_t trained_tokens = 0;
  if (cfg.resume) {
    const std::string ckpt = checkpoint::latest(out.string());
    if (ckpt.empty()) {
      std::fprintf(stderr, "[rlhf] no checkpoint in %s: starting from the beginning\n", cfg.output.c_str());
    } else {
      json state = checkpoint::read_state(ckpt);
      checkpoint::check_fingerprint(state, fingerprint, ckpt);
      rm.load_weights(ckpt);
      opt.load_state(load_tensors(ckpt + "/optimizer.safetensors", load.device), state["step"].get<int64_t>(),
                     ckpt + "/optimizer.safetensors");
      start = state["step"].get<int64_t>();
      train_seconds = state.value("train_seconds", 0.0);
      trained_tokens = state.value("trained_tokens", int64_t(0));
      if (state.value("threads", 0) != torch::get_num_threads())
        std::fprintf(stderr, "[rlhf] note: the run used %d threads, this one %d: results may differ in the last bits\n",
                     state.value("threads", 0), torch::get_num_threads());
      std::fprintf(stderr, "[rlhf] resuming from %s (step %lld of %lld)\n", ckpt.c_str(), (long long)start,
                   (long long)steps);
    }
  }
  fs::create_directories(out);
  track::MetricsLogger logger((out / "logs").string(), cfg.resume ? start : -1);

  auto trainer_state = [&](int64_t step) {
    return json{{"step", step}, {"train_seconds", train_seconds}, {"trained_tokens", trained_tokens},
                {"threads", torch::get_num_threads()}, {"fingerprint", fingerprint},
                // The data order is a pure function of (seed, step): no other random state exists.
                {"rng", {{"data_order", "permutation(train pairs, seed + epoch)"}, {"seed", cfg.seed}}}};
  };
  auto validate_and_log = [&](int64_t step) {
    if (validation.empty()) return PairStats{};
    PairStats v = evaluate(rm, validation, M * 2, pad, load.device);
    logger.log(step, {{"validation/accuracy", v.correct / v.pairs}, {"validation/loss", v.rank_loss / v.pairs},
                      {"validation/reward_margin", (v.chosen - v.rejected) / v.pairs}});
    return v;
  };

  // 3. The loop. Step s uses the pairs at positions s·B .. s·B + B - 1 of the epoch stream,
  // each epoch a fresh permutation of the training pairs.
  std::map<int64_t, std::vector<size_t>> epoch_order;
  auto pair_at = [&](int64_t g) -> const data::PreferencePair* {
    const int64_t epoch = g / n;
    auto it = epoch_order.find(epoch);
    if (it == epoch_order.end()) {
      epoch_order.clear();
      it = epoch_order.emplace(epoch, data::permutation(static_cast<size_t>(n), cfg.seed + static_cast<uint64_t>(epoch))).first;
    }
    return &train[it->second[static_cast<size_t>(g % n)]];
  };

  std::unique_ptr<Progress> bar;
  if (cfg.progress) bar = std::make_unique<Progress>("train-reward", steps, "step", start);
  PairStats last_val;
  for (int64_t step = start; step < steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    const double lr = warmup_linear_lr(peak_lr, step, warmup, steps);
    std::vector<const data::PreferencePair*> batch;
    for (int64_t i = 0; i < B; ++i) batch.push_back(pair_at(step * B + i));

    opt.zero_grad();
    PairStats s;
    for (const auto& mb : micro_batches(batch, M)) {
      PairBatch pb = pack_pairs(mb, pad, load.device);
      auto [rc, rr] = rm.score_pairs(pb, /*train=*/true);
      auto losses = reward_pair_losses(rc, rr, cfg.margin, cfg.center_rewards_coefficient);
      (losses.sum() / static_cast<double>(B)).backward();
      s.add(rc, rr, losses, pb.real_tokens);
    }
    const double grad_norm = opt.clip_grad_norm(cfg.max_grad_norm);
    opt.step(lr);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    train_seconds += dt;
    trained_tokens += s.tokens;

    const int64_t done = step + 1;
    std::map<std::string, double> m = {
        {"rank_loss", s.rank_loss / B},
        {"accuracy", s.correct / B},
        {"reward/chosen", s.chosen / B},
        {"reward/rejected", s.rejected / B},
        {"reward/margin", (s.chosen - s.rejected) / B},
        {"learning_rate", lr},
        {"grad_norm", grad_norm},
        {"throughput/pairs_per_second", B / dt},
        {"throughput/tokens_per_second", s.tokens / dt},
    };
    if (cfg.margin != 0 || cfg.center_rewards_coefficient != 0) m["loss"] = s.loss / B;
    logger.log(done, m);
    if (cfg.validation_every > 0 && done % cfg.validation_every == 0 && done != steps) last_val = validate_and_log(done);
    if (done % cfg.checkpoint_every == 0 && done != steps)
      save_checkpoint(out, done, rm, opt, trainer_state(done), model->reference, cfg.keep_checkpoints);
    if (bar) bar->update(done, fmt::format("rank_loss {:.4f} acc {:.3f}", s.rank_loss / B, s.correct / B));
  }
  if (bar) bar->finish();

  // 4. Final validation, the checkpoint of the last step, the centred head, the model.
  last_val = validate_and_log(steps);
  save_checkpoint(out, steps, rm, opt, trainer_state(steps), model->reference, cfg.keep_checkpoints);

  double mean_reward = 0;
  {
    std::vector<data::PreferencePair> sample;
    auto order = data::permutation(static_cast<size_t>(n), cfg.seed ^ 0xce17e5ULL);
    for (size_t i = 0; i < order.size() && static_cast<int64_t>(sample.size()) < cfg.centering_pairs; ++i)
      sample.push_back(train[order[i]]);
    PairStats c = evaluate(rm, sample, M * 2, pad, load.device);
    mean_reward = (c.chosen + c.rejected) / (2.0 * c.pairs);
    rm.shift_bias(-mean_reward);
  }

  RewardTrainSummary sum;
  sum.steps = steps;
  sum.train_pairs = n;
  sum.validation_pairs = static_cast<int64_t>(validation.size());
  sum.validation_accuracy = last_val.pairs ? last_val.correct / last_val.pairs : 0;
  sum.validation_loss = last_val.pairs ? last_val.rank_loss / last_val.pairs : 0;
  sum.train_seconds = train_seconds;
  sum.pairs_per_second = train_seconds > 0 ? static_cast<double>(steps * B) / train_seconds : 0;
  sum.tokens_per_second = train_seconds > 0 ? static_cast<double>(trained_tokens) / train_seconds : 0;
  json summary = {{"steps", sum.steps},
                  {"train_pairs", sum.train_pairs},
                  {"validation_pairs", sum.validation_pairs},
                  {"validation/accuracy", sum.validation_accuracy},
                  {"validation/loss", sum.validation_loss},
                  {"train_seconds", sum.train_seconds},
                  {"pairs_per_second", sum.pairs_per_second},
                  {"tokens_per_second", sum.tokens_per_second},
                  {"mean_reward_before_centering", mean_reward},
                  {"peak_rss_bytes", peak_rss_bytes()},
                  {"threads", torch::get_num_threads()}};

  rm.save_weights(cfg.output, model->reference);
  RewardModelInfo info;
  info.base_reference = model->reference;
  info.base_path = fs::absolute(model->path).string();
  info.base_format = model->format;
  info.base_sha256 = base_hash;
  info.lora = cfg.lora;
  info.encode = enc;
  info.eos_id = eos;
  info.pad_id = pad;
  info.hidden_size = model->config.hidden_size;
  info.training = {{"settings", fingerprint}, {"preference_dataset", cfg.preference_dataset},
                   {"eval_dataset", cfg.eval_dataset}, {"summary", summary}};
  write_file_atomic((out / "summary.json").string(), summary.dump(2) + "\n");
  write_reward_model_info(cfg.output, info);  // last: marks the folder complete
  logger.flush();
  std::fprintf(stderr, "[rlhf] done: validation accuracy %.4f, loss %.4f; %.2f pairs/s; model in %s\n",
               sum.validation_accuracy, sum.validation_loss, sum.pairs_per_second, cfg.output.c_str());
  return sum;
}

}  // namespace rlhf
