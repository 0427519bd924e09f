#include "rlhf/train/policy_trainer.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <numeric>
#include <sstream>

#include "rlhf/data/dataset.h"
#include "rlhf/data/encode.h"
#include "rlhf/model/generate.h"
#include "rlhf/model/loader.h"
#include "rlhf/model/model.h"
#include "rlhf/track/metrics.h"
#include "rlhf/train/adapter_io.h"
#include "rlhf/train/checkpoint.h"
#include "rlhf/train/optim.h"
#include "rlhf/train/policy_model.h"
#include "rlhf/train/ppo.h"
#include "rlhf/train/reward_artifact.h"
#include "rlhf/train/tensor_file.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"
#include "rlhf/util/hash.h"
#include "rlhf/util/progress.h"

namespace rlhf {
namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void check_config(const PolicyTrainConfig& c) {
  if (c.prompt_dataset.empty()) fail("--prompt-dataset is required");
  if (c.reward_model.empty()) fail("--reward-model is required");
  if (c.output.empty()) fail("--output is required");
  if (c.train_steps <= 0 && c.epochs <= 0)
    fail("--reinforcement-learning-train-steps must be positive (got {})", c.train_steps);
  if (c.epochs < 0) fail("--reinforcement-learning-epochs must not be negative (got {})", c.epochs);
  if (c.batch_size <= 0) fail("--batch-size must be positive (got {})", c.batch_size);
  if (c.micro_batch_size <= 0) fail("--micro-batch-size must be positive (got {})", c.micro_batch_size);
  if (c.generation_batch_size < 0) fail("--generation-batch-size must not be negative");
  if (c.num_mini_batches <= 0 || c.num_mini_batches > c.batch_size)
    fail("--num-mini-batches must be in [1, batch size] (got {})", c.num_mini_batches);
  if (c.ppo_epochs <= 0) fail("--ppo-epochs must be positive (got {})", c.ppo_epochs);
  if (!(c.learning_rate_multiplier > 0)) fail("--reinforcement-learning-rate-multiplier must be positive");
  if (c.kl_coeff < 0) fail("--kl-coeff must not be negative (got {})", c.kl_coeff);
  if (c.adaptive_kl && (!(c.target_kl > 0) || !(c.kl_horizon > 0)))
    fail("--target-kl and --kl-horizon must be positive with --adaptive-kl");
  if (c.adaptive_kl && c.kl_coeff == 0) fail("--adaptive-kl needs a positive --kl-coeff to start from");
  if (c.gamma < 0 || c.gamma > 1 || c.lam < 0 || c.lam > 1) fail("--gamma and --lam must be in [0, 1]");
  if (!(c.cliprange > 0) || !(c.cliprange_value > 0)) fail("--cliprange and --cliprange-value must be positive");
  if (c.vf_coef < 0) fail("--vf-coef must not be negative");
  if (!(c.temperature > 0)) fail("--temperature must be positive for rollouts (got {})", c.temperature);
  if (c.lora.rank <= 0) fail("--lora-rank must be positive (got {})", c.lora.rank);
  if (c.prompt_sequence_length < 1) fail("--prompt-sequence-length must be at least 1");
  if (c.target_sequence_length < 2) fail("--target-sequence-length must be at least 2 (a token and EOS)");
  if (c.checkpoint_every <= 0) fail("--checkpoint-every must be positive");
  if (c.eval_every < 0) fail("--eval-every must not be negative");
}

int64_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) * 1024;
}

// A seed for one use (step, purpose, index) of the run's seed.
uint64_t mix_seed(uint64_t seed, uint64_t a, uint64_t b = 0, uint64_t c = 0) {
  uint64_t x = seed;
  for (uint64_t v : {a, b, c}) {
    x ^= v + 0x9e3779b97f4a7c15ULL + (x << 6) + (x >> 2);
    x = (x ^ (x >> 31)) * 0xbf58476d1ce4e5b9ULL;
  }
  return x ^ (x >> 29);
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int64_t count_words(const std::string& s) {
  std::istringstream in(s);
  std::string w;
  int64_t n = 0;
  while (in >> w) ++n;
  return n;
}

// One rollout: a prompt and the policy's completion of it.
struct Sample {
  const std::vector<int32_t>* prompt = nullptr;  // policy prompt ids
  size_t row = 0;                                // index into the prompt rows
  std::vector<int32_t> response;                 // generated ids, the stop id included
  bool stopped = false;                          // ended on a stop id
  float raw_score = 0;                           // reward-model score
  float score = 0;                               // after the EOS penalty
};

// Micro-batches of sample indices with similar lengths (less padding); order within the
// list is irrelevant to the results, the masks make every sample independent.
std::vector<std::vector<size_t>> micro_batches(std::vector<size_t> idx, const std::vector<Sample>& s, int64_t size) {
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
    return s[a].prompt->size() + s[a].response.size() < s[b].prompt->size() + s[b].response.size();
  });
  std::vector<std::vector<size_t>> out;
  for (size_t i = 0; i < idx.size(); i += size)
    out.emplace_back(idx.begin() + i, idx.begin() + std::min(idx.size(), i + static_cast<size_t>(size)));
  return out;
}

RolloutBatch pack(const std::vector<size_t>& idx, const std::vector<Sample>& s, int32_t pad, torch::Device device) {
  std::vector<const std::vector<int32_t>*> prompts, responses;
  for (size_t i : idx) prompts.push_back(s[i].prompt), responses.push_back(&s[i].response);
  return pack_rollouts(prompts, responses, pad, device);
}

// Rows `idx` of a [B, T] tensor, cut to the first `width` columns.
torch::Tensor rows(const torch::Tensor& t, const std::vector<size_t>& idx, int64_t width) {
  std::vector<int64_t> i64(idx.begin(), idx.end());
  auto index = torch::tensor(i64, torch::kInt64).to(t.device());
  return t.index_select(0, index).narrow(1, 0, width);
}

// Writes rows `idx` of `dst` [B, T] (first src.size(1) columns) from src.
void put_rows(torch::Tensor& dst, const std::vector<size_t>& idx, const torch::Tensor& src) {
  for (size_t k = 0; k < idx.size(); ++k)
    dst[static_cast<int64_t>(idx[k])].narrow(0, 0, src.size(1)).copy_(src[static_cast<int64_t>(k)]);
}

}  // namespace

PolicyRoles load_policy_roles(const PolicyTrainConfig& cfg) {
  LoadOptions load;
  load.dtype = parse_dtype(cfg.dtype);
  load.device = parse_device(cfg.device);
  if (load.dtype == torch::kFloat16) fail("--dtype fp16 is not supported for training (use fp32 or bf16)");
  PolicyRoles r;
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
  r.models = std::make_unique<PolicyModels>(*r.policy_base->net, *r.rm->reward, cfg.lora, cfg.seed);
  return r;
}

PolicyTrainSummary train_policy(const PolicyTrainConfig& cfg) {
  check_config(cfg);
  const fs::path out(cfg.output);
  if (!cfg.resume && (fs::exists(out / "policy.json") || fs::exists(out / "checkpoints")))
    fail("{} holds an earlier run; pass --resume to continue it, or choose another --output", cfg.output);

  // 1. The data, validated in full before any model is loaded.
  data::ReadOptions read_opts;
  read_opts.skip_invalid = cfg.skip_invalid;
  data::ReadReport report;
  std::vector<data::PromptRow> prompt_rows = data::read_prompt_dataset(cfg.prompt_dataset, read_opts, &report);
  std::fprintf(stderr, "[rlhf] prompt data: %zu prompts from %zu file(s)%s\n", prompt_rows.size(), report.files.size(),
               report.skipped ? fmt::format(", {} invalid lines skipped", report.skipped).c_str() : "");
  if (prompt_rows.empty()) fail("{}: no prompts", cfg.prompt_dataset);
  std::vector<data::PromptRow> eval_rows;
  if (!cfg.eval_dataset.empty()) {
    data::ReadOptions eval_opts = read_opts;
    eval_opts.max_rows = static_cast<size_t>(cfg.max_eval_prompts);
    eval_rows = data::read_prompt_dataset(cfg.eval_dataset, eval_opts);
  }

  // 2. The models: the reward model (and its base), the policy's base (shared when it is the same).
  PolicyRoles roles = load_policy_roles(cfg);
  const RewardModelInfo& rm_info = roles.rm->info;
  const bool shared_base = roles.shared_base();
  auto& rm = roles.rm;
  Model& policy_model = *roles.policy_base;
  const std::string base_hash = roles.policy_base_sha256;
  PolicyModels& models = *roles.models;

  // Prompts are encoded as the reward model was trained unless told otherwise.
  data::EncodeConfig enc = rm_info.encode;
  if (!cfg.prompt_format.empty() && cfg.prompt_format != "auto") enc.format = data::parse_prompt_format(cfg.prompt_format);
  else if (cfg.prompt_format == "auto")
    enc.format = prompt_rows.front().prompt.is_chat() ? data::PromptFormat::Chat : data::PromptFormat::Raw;
  if (cfg.instruction_set) enc.instruction = cfg.instruction;
  enc.prompt_sequence_length = cfg.prompt_sequence_length;
  enc.target_sequence_length = cfg.target_sequence_length;
  if (enc.format != rm_info.encode.format || enc.instruction != rm_info.encode.instruction)
    std::fprintf(stderr,
                 "[rlhf] warning: prompts are formatted differently from the reward model's training "
                 "(format %s vs %s, instruction \"%s\" vs \"%s\")\n",
                 data::prompt_format_name(enc.format), data::prompt_format_name(rm_info.encode.format),
                 enc.instruction.c_str(), rm_info.encode.instruction.c_str());
  const int32_t eos = completion_eos_id(policy_model);
  const int32_t pad = policy_model.pad_id;
  data::Encoder encoder(*policy_model.tokenizer, policy_model.chat_template, eos, enc);
  // The reward model reads the policy's ids as they are when it shares the tokenizer and the
  // prompt encoding; otherwise the completion text is re-encoded its way.
  const bool same_encoding = shared_base && enc.format == rm_info.encode.format &&
                             enc.instruction == rm_info.encode.instruction &&
                             enc.prompt_sequence_length <= rm_info.encode.prompt_sequence_length;

  std::vector<std::vector<int32_t>> prompt_ids, eval_ids;
  for (const auto& r : prompt_rows) prompt_ids.push_back(encoder.prompt_ids(r.prompt));
  for (const auto& r : eval_rows) eval_ids.push_back(encoder.prompt_ids(r.prompt));
  for (size_t i = 0; i < prompt_ids.size(); ++i)
    if (prompt_ids[i].empty()) fail("{}: the prompt encodes to no tokens", prompt_rows[i].where);
  for (size_t i = 0; i < eval_ids.size(); ++i)
    if (eval_ids[i].empty()) fail("{}: the prompt encodes to no tokens", eval_rows[i].where);
  if (enc.prompt_sequence_length + enc.target_sequence_length > policy_model.config.max_position)
    fail("--prompt-sequence-length {} + --target-sequence-length {} exceed the model's context ({})",
         enc.prompt_sequence_length, enc.target_sequence_length, policy_model.config.max_position);
  Sha256 data_hash;
  for (const auto& v : prompt_ids) {
    const uint64_t n = v.size();
    data_hash.update(&n, sizeof n);
    data_hash.update(v.data(), v.size() * sizeof(int32_t));
  }

  const int64_t n_prompts = static_cast<int64_t>(prompt_ids.size());
  const int64_t B = cfg.batch_size;
  const int64_t M = std::min(cfg.micro_batch_size, B);
  const int64_t G = cfg.generation_batch_size > 0 ? std::min(cfg.generation_batch_size, B) : B;
  const int64_t steps = cfg.epochs > 0 ? static_cast<int64_t>(std::ceil(
                                             static_cast<double>((n_prompts + B - 1) / B) * cfg.epochs))
                                       : cfg.train_steps;
  const double peak_lr = PolicyTrainConfig::kBaseLearningRate * cfg.learning_rate_multiplier;
  const bool use_ref = cfg.kl_coeff > 0;

  std::fprintf(stderr,
               "[rlhf] %lld prompts; %lld steps of %lld rollouts (micro-batches of %lld, %lld PPO epochs, %lld "
               "minibatch(es)); lr %.3g; kl_coeff %g%s; prompt format %s; value model %s\n",
               (long long)n_prompts, (long long)steps, (long long)B, (long long)M, (long long)cfg.ppo_epochs,
               (long long)cfg.num_mini_batches, peak_lr, cfg.kl_coeff, cfg.adaptive_kl ? " (adaptive)" : "",
               data::prompt_format_name(enc.format),
               models.value_from_reward() ? "initialised from the reward model" : "initialised fresh");
  AdamWConfig adam;
  adam.weight_decay = cfg.weight_decay;
  AdamW opt(models.parameters(), adam);
  ppo::AdaptiveKl kl_ctl{cfg.kl_coeff, cfg.target_kl, cfg.kl_horizon};

  json fingerprint = {
      {"base_sha256", base_hash}, {"reward_model_sha256", sha256_files({cfg.reward_model + "/reward_model.json",
                                                                         cfg.reward_model + "/adapter_model.safetensors",
                                                                         cfg.reward_model + "/reward_head.safetensors"})},
      {"data_sha256", data_hash.hex()}, {"steps", steps}, {"batch_size", B}, {"micro_batch_size", M},
      {"generation_batch_size", G}, {"num_mini_batches", cfg.num_mini_batches}, {"ppo_epochs", cfg.ppo_epochs},
      {"learning_rate", peak_lr}, {"weight_decay", cfg.weight_decay}, {"max_grad_norm", cfg.max_grad_norm},
      {"kl_coeff", cfg.kl_coeff}, {"adaptive_kl", cfg.adaptive_kl}, {"target_kl", cfg.target_kl},
      {"kl_horizon", cfg.kl_horizon}, {"gamma", cfg.gamma}, {"lam", cfg.lam}, {"cliprange", cfg.cliprange},
      {"cliprange_value", cfg.cliprange_value}, {"vf_coef", cfg.vf_coef}, {"temperature", cfg.temperature},
      {"eos_penalty", cfg.eos_penalty}, {"missing_eos_penalty", cfg.missing_eos_penalty}, {"seed", cfg.seed},
      {"lora_rank", cfg.lora.rank}, {"lora_alpha", cfg.lora.alpha}, {"lora_targets", cfg.lora.targets},
      {"dtype", cfg.dtype}, {"prompt_format", data::prompt_format_name(enc.format)},
      {"instruction", enc.instruction}, {"prompt_sequence_length", enc.prompt_sequence_length},
      {"target_sequence_length", enc.target_sequence_length}};

  int64_t start = 0;
  double train_seconds = 0;
  if (cfg.resume) {
    const std::string ckpt = checkpoint::latest(out.string());
    if (ckpt.empty()) {
      std::fprintf(stderr, "[rlhf] no checkpoint in %s: starting from the beginning\n", cfg.output.c_str());
    } else {
      json state = checkpoint::read_state(ckpt);
      checkpoint::check_fingerprint(state, fingerprint, ckpt);
      load_adapter(ckpt, const_cast<LoraAdapter&>(models.policy()));
      models.load_value(ckpt);
      start = state["step"].get<int64_t>();
      if (!state.contains("optimizer_steps") || !state["optimizer_steps"].is_number_integer())
        fail("{}/trainer_state.json: field 'optimizer_steps' is missing", ckpt);
      opt.load_state(load_tensors(ckpt + "/optimizer.safetensors", parse_device(cfg.device)),
                     state["optimizer_steps"].get<int64_t>(), ckpt + "/optimizer.safetensors");
      kl_ctl.value = state.value("kl_coeff", cfg.kl_coeff);
      train_seconds = state.value("train_seconds", 0.0);
      if (state.value("threads", 0) != torch::get_num_threads())
        std::fprintf(stderr, "[rlhf] note: the run used %d threads, this one %d: results may differ in the last bits\n",
                     state.value("threads", 0), torch::get_num_threads());
      std::fprintf(stderr, "[rlhf] resuming from %s (step %lld of %lld)\n", ckpt.c_str(), (long long)start,
                   (long long)steps);
    }
  }
  fs::create_directories(out);
  track::MetricsLogger logger((out / "logs").string(), cfg.resume ? start : -1);

  // Scores of samples by the reward model, with the EOS penalty. Samples whose completion is
  // empty (impossible with max_new_tokens >= 1) are not expected.
  const int32_t rm_eos = rm_info.eos_id;
  auto score_samples = [&](std::vector<Sample>& samples, const std::vector<data::PromptRow>& rows) {
    torch::NoGradGuard no_grad;
    for (size_t s0 = 0; s0 < samples.size(); s0 += static_cast<size_t>(M)) {
      const size_t s1 = std::min(samples.size(), s0 + static_cast<size_t>(M));
      std::vector<std::vector<int32_t>> seqs;
      for (size_t i = s0; i < s1; ++i) {
        const Sample& s = samples[i];
        std::vector<int32_t> seq;
        if (same_encoding) {
          // The reward model reads a completion at its EOS, as it was trained; one cut by the
          // length limit gets an EOS appended (its score is replaced by the penalty unless
          // the penalty is off).
          seq = *s.prompt;
          seq.insert(seq.end(), s.response.begin(), s.response.end() - (s.stopped ? 1 : 0));
          seq.push_back(rm_eos);
        } else {
          seq = rm->encoder->prompt_ids(rows[s.row].prompt);
          std::vector<int32_t> body(s.response.begin(), s.response.end() - (s.stopped ? 1 : 0));
          auto c = rm->encoder->completion_ids(policy_model.tokenizer->decode(body, /*skip_special=*/true));
          seq.insert(seq.end(), c.begin(), c.end());
        }
        seqs.push_back(std::move(seq));
      }
      auto sb = pack_sequences(seqs, rm_info.pad_id, /*left_pad=*/false, rm->base->net->device());
      auto r = rm->reward->score(sb).to(torch::kCPU);
      for (size_t i = s0; i < s1; ++i) {
        Sample& s = samples[i];
        s.raw_score = r[static_cast<int64_t>(i - s0)].item<float>();
        s.score = (cfg.eos_penalty && !s.stopped) ? static_cast<float>(cfg.missing_eos_penalty) : s.raw_score;
      }
    }
  };

  // Completions of prompt ids with the policy, in generation batches.
  auto complete = [&](std::vector<Sample>& samples, double temperature, uint64_t seed) {
    for (size_t g0 = 0; g0 < samples.size(); g0 += static_cast<size_t>(G)) {
      const size_t g1 = std::min(samples.size(), g0 + static_cast<size_t>(G));
      std::vector<std::vector<int32_t>> batch;
      for (size_t i = g0; i < g1; ++i) batch.push_back(*samples[i].prompt);
      SamplingConfig sampling;
      sampling.temperature = temperature;
      sampling.max_new_tokens = enc.target_sequence_length;
      sampling.seed = mix_seed(seed, g0);
      GenerateOptions gopt;
      gopt.stop_ids = policy_model.stop_ids;
      gopt.pad_id = pad;
      gopt.adapters = {&models.policy()};
      Generation gen = generate(*policy_model.net, batch, sampling, gopt);
      for (size_t i = g0; i < g1; ++i) {
        samples[i].response = std::move(gen.tokens[i - g0]);
        samples[i].stopped = gen.stopped[i - g0];
        if (samples[i].response.empty()) samples[i].response.push_back(eos), samples[i].stopped = true;
      }
    }
  };

  // Greedy completions of the evaluation prompts, scored, written to eval/step-N.jsonl.
  auto evaluate = [&](int64_t step) {
    if (eval_rows.empty()) return;
    const fs::path path = out / "eval" / (checkpoint::step_name(step) + ".jsonl");
    if (fs::exists(path)) return;  // written before a resume
    std::vector<Sample> samples(eval_rows.size());
    for (size_t i = 0; i < samples.size(); ++i) samples[i].prompt = &eval_ids[i], samples[i].row = i;
    complete(samples, 0.0, mix_seed(cfg.seed, 0xe7a1));
    score_samples(samples, eval_rows);
    const std::vector<Sample>& scored = samples;
    std::string lines;
    double reward = 0, raw = 0, length = 0, eos_share = 0, words = 0;
    for (size_t i = 0; i < scored.size(); ++i) {
      const Sample& s = scored[i];
      std::vector<int32_t> body(s.response.begin(), s.response.end() - (s.stopped ? 1 : 0));
      const std::string text = policy_model.tokenizer->decode(body, /*skip_special=*/true);
      json row = json::parse(eval_rows[i].json);
      row["prediction"] = text;
      row["reward"] = s.score;
      row["score"] = s.raw_score;
      row["stopped"] = s.stopped;
      row["response_tokens"] = s.response.size();
      lines += row.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";  // invalid UTF-8 -> U+FFFD
      reward += s.score, raw += s.raw_score, length += static_cast<double>(s.response.size());
      eos_share += s.stopped ? 1 : 0, words += static_cast<double>(count_words(text));
    }
    fs::create_directories(path.parent_path());
    write_file_atomic(path.string(), lines);
    const double n = static_cast<double>(scored.size());
    logger.log(step, {{"eval/reward", reward / n}, {"eval/scores", raw / n}, {"eval/response_length", length / n},
                      {"eval/eos_fraction", eos_share / n}, {"eval/words", words / n}});
    std::fprintf(stderr, "[rlhf] eval at step %lld: reward %.4f, %.1f words, EOS %.0f%% (%s)\n", (long long)step,
                 reward / n, words / n, 100 * eos_share / n, path.c_str());
  };

  auto trainer_state = [&](int64_t step) {
    return json{{"step", step}, {"optimizer_steps", opt.steps()}, {"train_seconds", train_seconds},
                {"kl_coeff", kl_ctl.value},
                {"threads", torch::get_num_threads()}, {"fingerprint", fingerprint},
                // Sampling and minibatch order are pure functions of (seed, step): no other random state exists.
                {"rng", {{"seed", cfg.seed}, {"derivation", "mix(seed, step, use)"}}}};
  };
  auto save_ckpt = [&](int64_t step) {
    checkpoint::save(out.string(), step, cfg.keep_checkpoints, trainer_state(step), [&](const std::string& dir) {
      save_adapter(dir, models.policy(), {.base_reference = policy_model.reference, .task_type = "CAUSAL_LM", .modules_to_save = {}});
      models.save_value(dir, policy_model.reference);
      save_tensors(dir + "/optimizer.safetensors", opt.state());
    });
  };

  // The prompt stream: epoch e is a permutation of the prompts by (seed, e).
  std::map<int64_t, std::vector<size_t>> epoch_order;
  auto prompt_at = [&](int64_t g) -> size_t {
    const int64_t epoch = g / n_prompts;
    auto it = epoch_order.find(epoch);
    if (it == epoch_order.end()) {
      epoch_order.clear();
      it = epoch_order
               .emplace(epoch, data::permutation(static_cast<size_t>(n_prompts), cfg.seed + static_cast<uint64_t>(epoch)))
               .first;
    }
    return it->second[static_cast<size_t>(g % n_prompts)];
  };

  if (start == 0) evaluate(0);
  std::unique_ptr<Progress> bar;
  if (cfg.progress) bar = std::make_unique<Progress>("train-policy", steps, "step", start);
  std::vector<double> step_times;
  double last_reward = 0, last_kl = 0;
  const torch::Device dev = parse_device(cfg.device);

  for (int64_t step = start; step < steps; ++step) {
    const auto t_step = Clock::now();
    const double lr = peak_lr * (1.0 - static_cast<double>(step) / static_cast<double>(steps));

    // 1. Rollouts.
    auto t0 = Clock::now();
    std::vector<Sample> samples(static_cast<size_t>(B));
    for (int64_t i = 0; i < B; ++i) {
      samples[i].row = prompt_at(step * B + i);
      samples[i].prompt = &prompt_ids[samples[i].row];
    }
    complete(samples, cfg.temperature, mix_seed(cfg.seed, 0x5a3b1e, static_cast<uint64_t>(step)));
    const double t_generate = seconds_since(t0);

    // 2. Scores, log-probs of the policy and the reference, values.
    t0 = Clock::now();
    score_samples(samples, prompt_rows);
    int64_t T = 0;
    for (const auto& s : samples) T = std::max<int64_t>(T, s.response.size());
    auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(dev);
    torch::Tensor old_logp = torch::zeros({B, T}, f32), ref_logp = torch::zeros({B, T}, f32),
                  old_values = torch::zeros({B, T}, f32), mask = torch::zeros({B, T}, f32),
                  entropy = torch::zeros({B, T}, f32);
    std::vector<size_t> all(static_cast<size_t>(B));
    std::iota(all.begin(), all.end(), 0);
    {
      torch::NoGradGuard no_grad;
      for (const auto& mb : micro_batches(all, samples, M)) {
        RolloutBatch rb = pack(mb, samples, pad, dev);
        torch::Tensor ent;
        put_rows(old_logp, mb, models.logprobs(rb, true, cfg.temperature, &ent));
        put_rows(entropy, mb, ent);
        if (use_ref) put_rows(ref_logp, mb, models.logprobs(rb, false, cfg.temperature));
        put_rows(old_values, mb, models.values(rb));
        put_rows(mask, mb, rb.mask);
      }
    }
    std::vector<float> score_vec, raw_vec;
    std::vector<uint8_t> stopped_vec;
    for (const auto& s : samples) score_vec.push_back(s.score), raw_vec.push_back(s.raw_score), stopped_vec.push_back(s.stopped);
    auto scores = torch::tensor(score_vec, torch::kFloat32).to(dev);
    auto raw_scores = torch::tensor(raw_vec, torch::kFloat32).to(dev);
    const double t_score = seconds_since(t0);

    // 3. Rewards and advantages.
    t0 = Clock::now();
    torch::Tensor kl = use_ref ? ppo::kl_per_token(old_logp, ref_logp, mask) : torch::zeros_like(old_logp);
    torch::Tensor rewards = ppo::token_rewards(scores, kl, mask, kl_ctl.value);
    auto [advantages, returns] = ppo::gae(rewards, old_values * mask, mask, cfg.gamma, cfg.lam);
    advantages = ppo::masked_whiten(advantages, mask);
    const double kl_coeff_used = kl_ctl.value;
    const double mean_kl = kl.sum(1).mean().item<double>();

    // 4. PPO epochs over minibatches, gradient accumulation over micro-batches.
    double sum_pg = 0, sum_vf = 0, sum_clip = 0, sum_vclip = 0, sum_akl = 0, sum_grad = 0;
    int64_t updates = 0;
    const int64_t mini = (B + cfg.num_mini_batches - 1) / cfg.num_mini_batches;
    for (int64_t epoch = 0; epoch < cfg.ppo_epochs; ++epoch) {
      auto order = data::permutation(static_cast<size_t>(B), mix_seed(cfg.seed, 0x99e0c, step, epoch));
      for (int64_t m0 = 0; m0 < B; m0 += mini) {
        std::vector<size_t> minibatch(order.begin() + m0, order.begin() + std::min(B, m0 + mini));
        const double mini_tokens = rows(mask, minibatch, T).sum().item<double>();
        opt.zero_grad();
        double pg = 0, vf = 0, clip = 0, vclip = 0, akl = 0;
        for (const auto& mb : micro_batches(minibatch, samples, M)) {
          RolloutBatch rb = pack(mb, samples, pad, dev);
          const int64_t w = rb.response.size(1);
          auto mk = rb.mask;
          const double share = mk.sum().item<double>() / std::max(1.0, mini_tokens);
          auto new_logp = models.logprobs(rb, true, cfg.temperature);
          auto new_values = models.values(rb);
          auto pl = ppo::policy_loss(new_logp, rows(old_logp, mb, w), rows(advantages, mb, w), mk, cfg.cliprange);
          auto vl = ppo::value_loss(new_values, rows(old_values, mb, w), rows(returns, mb, w), mk, cfg.cliprange_value);
          ((pl.loss + cfg.vf_coef * vl.loss) * share).backward();
          pg += share * pl.loss.item<double>(), vf += share * vl.loss.item<double>();
          clip += share * pl.clipfrac.item<double>(), vclip += share * vl.clipfrac.item<double>();
          akl += share * pl.approxkl.item<double>();
        }
        sum_grad += opt.clip_grad_norm(cfg.max_grad_norm);
        opt.step(lr);
        sum_pg += pg, sum_vf += vf, sum_clip += clip, sum_vclip += vclip, sum_akl += akl;
        ++updates;
      }
    }
    if (cfg.adaptive_kl) kl_ctl.update(mean_kl, B);
    const double t_train = seconds_since(t0);
    const double dt = seconds_since(t_step);
    train_seconds += dt;
    step_times.push_back(dt);

    // 5. Metrics.
    const double u = static_cast<double>(updates);
    const double reward = scores.mean().item<double>();
    const double lengths = mask.sum(1).mean().item<double>();
    double eos_fraction = 0;
    for (uint8_t s : stopped_vec) eos_fraction += s;
    eos_fraction /= static_cast<double>(B);
    const int64_t done = step + 1;
    std::map<std::string, double> m = {
        {"reward", reward},
        {"kl_loss", kl_coeff_used * mean_kl},
        {"rl_loss", (sum_pg + cfg.vf_coef * sum_vf) / u},
        {"objective/kl", mean_kl},
        {"objective/entropy", (-old_logp * mask).sum(1).mean().item<double>()},
        {"objective/scores", raw_scores.mean().item<double>()},
        {"objective/rlhf_reward", reward - kl_coeff_used * mean_kl},
        {"objective/non_score_reward", -kl_coeff_used * mean_kl},
        {"policy/entropy", ppo::masked_mean(entropy, mask).item<double>()},
        {"policy/approxkl", sum_akl / u},
        {"policy/clipfrac", sum_clip / u},
        {"loss/policy", sum_pg / u},
        {"loss/value", sum_vf / u},
        {"val/clipfrac", sum_vclip / u},
        {"val/mean", ppo::masked_mean(old_values, mask).item<double>()},
        {"response_length", lengths},
        {"eos_fraction", eos_fraction},
        {"learning_rate", lr},
        {"grad_norm", sum_grad / u},
        {"kl_coeff", kl_coeff_used},
        {"time/generate", t_generate},
        {"time/score", t_score},
        {"time/train", t_train},
        {"time/step", dt},
    };
    logger.log(done, m);
    last_reward = reward, last_kl = mean_kl;
    if (done % cfg.checkpoint_every == 0 && done != steps) save_ckpt(done);
    if (cfg.eval_every > 0 && done % cfg.eval_every == 0 && done != steps) evaluate(done);
    if (bar) bar->update(done, fmt::format("reward {:.3f} kl {:.3f} len {:.1f}", reward, mean_kl, lengths));
  }
  if (bar) bar->finish();

  // 6. The last checkpoint, the final evaluation, the policy.
  if (start < steps || !fs::exists(fs::path(checkpoint::latest(out.string())) / "trainer_state.json")) save_ckpt(steps);
  evaluate(steps);

  PolicyTrainSummary sum;
  sum.steps = steps;
  sum.step_seconds_median = median(step_times);
  sum.final_reward = last_reward;
  sum.final_kl = last_kl;
  json summary = {{"steps", steps},
                  {"prompts", n_prompts},
                  {"train_seconds", train_seconds},
                  {"step_seconds_median", sum.step_seconds_median},
                  {"final/reward", last_reward},
                  {"final/kl", last_kl},
                  {"peak_rss_bytes", peak_rss_bytes()},
                  {"threads", torch::get_num_threads()}};
  save_adapter(cfg.output, models.policy(), {.base_reference = policy_model.reference, .task_type = "CAUSAL_LM", .modules_to_save = {}});
  models.save_value(cfg.output, policy_model.reference);
  RewardModelInfo info;
  info.base_reference = policy_model.reference;
  info.base_path = fs::absolute(policy_model.path).string();
  info.base_format = policy_model.format;
  info.base_sha256 = base_hash;
  info.lora = cfg.lora;
  info.encode = enc;
  info.eos_id = eos;
  info.pad_id = pad;
  info.hidden_size = policy_model.config.hidden_size;
  info.training = {{"settings", fingerprint}, {"prompt_dataset", cfg.prompt_dataset},
                   {"reward_model", fs::absolute(cfg.reward_model).string()}, {"summary", summary}};
  json pj = info.to_json();
  pj["format"] = "rlhf.policy";
  pj.erase("head");
  write_file_atomic((out / "summary.json").string(), summary.dump(2) + "\n");
  write_file_atomic((out / "policy.json").string(), pj.dump(2) + "\n");  // last: marks the folder complete
  logger.flush();
  std::fprintf(stderr, "[rlhf] done: reward %.4f, KL %.4f; %s per step (median); policy in %s\n", last_reward,
               last_kl, Progress::format_duration(sum.step_seconds_median).c_str(), cfg.output.c_str());
  return sum;
}

}  // namespace rlhf
