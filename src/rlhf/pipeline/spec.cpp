#include "rlhf/pipeline/spec.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <set>

#include <fmt/format.h>

#include "rlhf/eval/autosxs.h"
#include "rlhf/eval/rules.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"

namespace rlhf::pipeline {
namespace {

namespace fs = std::filesystem;
constexpr size_t kMaxSpecBytes = size_t(1) << 20;

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t prev = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cur = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] == b[j - 1] ? 0 : 1)});
      prev = cur;
    }
  }
  return row[b.size()];
}

// Reads the keys of one YAML mapping, each once, and rejects the keys nobody asked for.
class Block {
 public:
  Block(YAML::Node node, std::string prefix, const std::string& source, const std::string& base_dir)
      : node_(std::move(node)), prefix_(std::move(prefix)), source_(source), base_dir_(base_dir) {}

  [[noreturn]] void bad(const std::string& key, const std::string& what) const {
    YAML::Node v = node_[key];
    const int line = v && v.Mark().line >= 0 ? v.Mark().line + 1 : (node_.Mark().line >= 0 ? node_.Mark().line + 1 : 0);
    if (line > 0) fail("{}:{}: key '{}{}': {}", source_, line, prefix_, key, what);
    fail("{}: key '{}{}': {}", source_, prefix_, key, what);
  }
  bool has(const std::string& key) const { return node_[key] && !node_[key].IsNull(); }
  YAML::Node get(const std::string& key) {
    known_.insert(key);
    return node_[key];
  }

  void text(const std::string& key, std::string& out) {
    YAML::Node v = get(key);
    if (!v || v.IsNull()) return;
    if (!v.IsScalar()) bad(key, "must be a string");
    out = v.Scalar();
  }
  void path(const std::string& key, std::string& out) {
    text(key, out);
    if (out.empty() || !has(key)) return;
    if (out.front() != '/' && !base_dir_.empty()) out = (fs::path(base_dir_) / out).lexically_normal().string();
  }
  void integer(const std::string& key, int64_t& out, int64_t min, int64_t max = std::numeric_limits<int64_t>::max()) {
    YAML::Node v = get(key);
    if (!v || v.IsNull()) return;
    int64_t x = 0;
    if (!v.IsScalar() || !YAML::convert<int64_t>::decode(v, x) || v.Tag() == "!")
      bad(key, fmt::format("must be an integer, not \"{}\"", v.IsScalar() ? v.Scalar() : std::string("a list or mapping")));
    if (x < min || x > max)
      bad(key, max == std::numeric_limits<int64_t>::max() ? fmt::format("must be at least {} (it is {})", min, x)
                                                          : fmt::format("must be in [{}, {}] (it is {})", min, max, x));
    out = x;
  }
  void unsigned_integer(const std::string& key, uint64_t& out) {
    int64_t x = static_cast<int64_t>(out);
    integer(key, x, 0);
    out = static_cast<uint64_t>(x);
  }
  // A number in [min, max] (min excluded when open_min).
  void number(const std::string& key, double& out, double min, double max, bool open_min = false) {
    YAML::Node v = get(key);
    if (!v || v.IsNull()) return;
    double x = 0;
    if (!v.IsScalar() || !YAML::convert<double>::decode(v, x) || !std::isfinite(x) || v.Tag() == "!")
      bad(key, fmt::format("must be a number, not \"{}\"", v.IsScalar() ? v.Scalar() : std::string("a list or mapping")));
    if (x < min || x > max || (open_min && x == min)) {
      std::string range = max == std::numeric_limits<double>::max() ? fmt::format("{} {}", open_min ? "greater than" : "at least", min)
                                                                    : fmt::format("in {}{}, {}]", open_min ? "(" : "[", min, max);
      bad(key, fmt::format("must be {} (it is {})", range, x));
    }
    out = x;
  }
  void boolean(const std::string& key, bool& out) {
    YAML::Node v = get(key);
    if (!v || v.IsNull()) return;
    bool x = false;
    if (!v.IsScalar() || !YAML::convert<bool>::decode(v, x)) bad(key, "must be true or false");
    out = x;
  }
  void choice(const std::string& key, std::string& out, std::initializer_list<const char*> allowed) {
    text(key, out);
    if (!has(key)) return;
    for (const char* a : allowed)
      if (out == a) return;
    std::string list;
    for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
    bad(key, fmt::format("is \"{}\"; it must be one of {}", out, list));
  }
  // A nested mapping, or nothing when the key is absent.
  std::optional<Block> block(const std::string& key) {
    YAML::Node v = get(key);
    if (!v || v.IsNull()) return std::nullopt;
    if (!v.IsMap()) bad(key, "must be a mapping of keys to values");
    return Block(v, prefix_ + key + ".", source_, base_dir_);
  }
  // Every key of the mapping was asked for; else the first stranger is named (with a guess).
  void done() const {
    for (const auto& kv : node_) {
      const std::string k = kv.first.as<std::string>();
      if (known_.count(k)) continue;
      std::string guess;
      size_t best = 3;
      for (const auto& n : known_)
        if (size_t d = edit_distance(k, n); d < best) best = d, guess = n;
      const int line = kv.first.Mark().line + 1;
      fail("{}:{}: key '{}{}' is unknown{}", source_, line, prefix_, k,
           guess.empty() ? std::string() : fmt::format(" (did you mean '{}{}'?)", prefix_, guess));
    }
  }

 private:
  YAML::Node node_;
  std::string prefix_;
  const std::string& source_;
  const std::string& base_dir_;
  std::set<std::string> known_;
};

}  // namespace

PipelineSpec parse_spec(const std::string& text, const std::string& source, const std::string& base_dir) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    fail("{}:{}: not valid YAML: {}", source, e.mark.line + 1, e.msg);
  }
  if (!root || root.IsNull()) fail("{}: the spec is empty", source);
  if (!root.IsMap()) fail("{}: the spec must be a mapping of keys to values", source);
  PipelineSpec s;
  s.path = source;
  Block b(root, "", source, base_dir);
  b.path("preference_dataset", s.preference_dataset);
  b.path("prompt_dataset", s.prompt_dataset);
  b.path("eval_dataset", s.eval_dataset);
  b.text("large_model_reference", s.large_model_reference);
  if (b.has("large_model_reference") && !s.large_model_reference.empty()) {
    // A path relative to the spec when it names a file or folder next to it.
    const fs::path rel = fs::path(base_dir) / s.large_model_reference;
    if (s.large_model_reference.front() != '/' && !base_dir.empty() && fs::exists(rel))
      s.large_model_reference = rel.lexically_normal().string();
  }
  b.integer("prompt_sequence_length", s.prompt_sequence_length, 1, 1 << 20);
  b.integer("target_sequence_length", s.target_sequence_length, 2, 1 << 20);
  b.integer("reward_model_train_steps", s.reward_model_train_steps, 1);
  b.number("reward_model_epochs", s.reward_model_epochs, 0, 1e6, /*open_min=*/true);
  b.integer("reinforcement_learning_train_steps", s.reinforcement_learning_train_steps, 1);
  b.number("reinforcement_learning_epochs", s.reinforcement_learning_epochs, 0, 1e6, true);
  b.number("reward_model_learning_rate_multiplier", s.reward_model_learning_rate_multiplier, 0, 1e6, true);
  b.number("reinforcement_learning_rate_multiplier", s.reinforcement_learning_rate_multiplier, 0, 1e6, true);
  b.number("kl_coeff", s.kl_coeff, 0, 1e6);
  b.text("instruction", s.instruction);
  if (b.has("reward_model_train_steps") && b.has("reward_model_epochs"))
    b.bad("reward_model_epochs", "give reward_model_train_steps or reward_model_epochs, not both");
  if (b.has("reinforcement_learning_train_steps") && b.has("reinforcement_learning_epochs"))
    b.bad("reinforcement_learning_epochs", "give reinforcement_learning_train_steps or reinforcement_learning_epochs, not both");

  if (auto r = b.block("rlaif")) {
    RlaifSpec& l = s.rlaif;
    l.enabled = true;
    r->path("prompt_dataset", l.prompt_dataset);
    r->text("rule", l.rule);
    r->text("judge", l.judge);
    r->choice("task", l.task, {"summarization", "question_answering"});
    YAML::Node t = r->get("temperatures");
    if (t && !t.IsNull()) {
      if (!t.IsSequence() || t.size() != 2) r->bad("temperatures", "must be a list of two numbers, e.g. [0.7, 1.0]");
      for (size_t i = 0; i < 2; ++i) {
        double x = 0;
        if (!t[i].IsScalar() || !YAML::convert<double>::decode(t[i], x) || !std::isfinite(x) || x < 0)
          r->bad("temperatures", "must be a list of two non-negative numbers, e.g. [0.7, 1.0]");
        l.temperatures[i] = x;
      }
    }
    r->number("min_confidence", l.min_confidence, 0, 1);
    r->boolean("keep_ties", l.keep_ties);
    if (l.rule.empty() == l.judge.empty()) r->bad(l.rule.empty() ? "rule" : "judge", "give one labeler: rule or judge");
    if (!l.rule.empty()) {
      try {
        (void)eval::LabelRule::parse(l.rule);
      } catch (const Error& e) {
        r->bad("rule", e.what());
      }
    }
    if (l.prompt_dataset.empty()) r->bad("prompt_dataset", "is required: the prompts whose candidate pairs are labeled");
    r->done();
  }
  if (auto a = b.block("autosxs")) {
    AutoSxsSpec& x = s.autosxs;
    x.enabled = true;
    a->text("judge", x.judge);
    a->choice("task", x.task, {"summarization", "question_answering"});
    a->integer("explanation_tokens", x.explanation_tokens, 0, 4096);
    a->done();
  }
  if (auto v = b.block("advanced")) {
    AdvancedSpec& x = s.advanced;
    v->choice("prompt_format", x.prompt_format, {"raw", "chat", "auto"});
    v->integer("reward_model_batch_size", x.reward_model_batch_size, 1);
    v->integer("reward_model_micro_batch_size", x.reward_model_micro_batch_size, 1);
    v->integer("reward_model_lora_rank", x.reward_model_lora_rank, 1, 4096);
    v->number("validation_fraction", x.validation_fraction, 0, 0.9);
    v->integer("reinforcement_learning_batch_size", x.reinforcement_learning_batch_size, 1);
    v->integer("reinforcement_learning_micro_batch_size", x.reinforcement_learning_micro_batch_size, 1);
    v->integer("policy_lora_rank", x.policy_lora_rank, 1, 4096);
    v->integer("ppo_epochs", x.ppo_epochs, 1, 1000);
    v->integer("num_mini_batches", x.num_mini_batches, 1);
    v->number("cliprange", x.cliprange, 0, 10, true);
    v->number("cliprange_value", x.cliprange_value, 0, 1e6, true);
    v->number("vf_coef", x.vf_coef, 0, 1e6);
    v->number("gamma", x.gamma, 0, 1);
    v->number("lam", x.lam, 0, 1);
    v->number("temperature", x.temperature, 0, 100, true);
    v->number("missing_eos_penalty", x.missing_eos_penalty, -1e6, 1e6);
    v->boolean("eos_penalty", x.eos_penalty);
    v->integer("checkpoint_every", x.checkpoint_every, 1);
    v->integer("inference_batch_size", x.inference_batch_size, 1, 4096);
    v->integer("max_eval_prompts", x.max_eval_prompts, 1);
    v->integer("max_words", x.max_words, 1);
    v->choice("export_format", x.export_format, {"hf", "gguf", "none"});
    v->unsigned_integer("seed", x.seed);
    v->choice("dtype", x.dtype, {"fp32", "bf16", "fp16"});
    v->text("device", x.device);
    v->integer("threads", x.threads, 0, 4096);
    if (x.reward_model_micro_batch_size > x.reward_model_batch_size)
      v->bad("reward_model_micro_batch_size", "must not exceed reward_model_batch_size");
    if (x.reinforcement_learning_micro_batch_size > x.reinforcement_learning_batch_size)
      v->bad("reinforcement_learning_micro_batch_size", "must not exceed reinforcement_learning_batch_size");
    if (x.reinforcement_learning_batch_size % x.num_mini_batches != 0)
      v->bad("num_mini_batches", "must divide reinforcement_learning_batch_size");
    v->done();
  }
  b.done();

  if (s.prompt_dataset.empty()) b.bad("prompt_dataset", "is required: the prompts RL tuning completes");
  if (s.rlaif.enabled && !s.preference_dataset.empty())
    b.bad("preference_dataset", "give preference_dataset or an rlaif block that labels one, not both");
  if (!s.rlaif.enabled && s.preference_dataset.empty())
    b.bad("preference_dataset", "is required (or an rlaif block that labels one)");
  if (s.autosxs.enabled && s.eval_dataset.empty())
    b.bad("autosxs", "needs eval_dataset: the judge compares the untuned and tuned completions of its prompts");
  return s;
}

PipelineSpec read_spec(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) fail("{}: no such spec file", path);
  const std::string text = read_file(path, kMaxSpecBytes);
  const fs::path dir = fs::absolute(path).parent_path();
  return parse_spec(text, path, dir.string());
}

nlohmann::json PipelineSpec::to_json() const {
  using nlohmann::json;
  json j = {{"preference_dataset", preference_dataset},
            {"prompt_dataset", prompt_dataset},
            {"eval_dataset", eval_dataset},
            {"large_model_reference", large_model_reference},
            {"prompt_sequence_length", prompt_sequence_length},
            {"target_sequence_length", target_sequence_length},
            {"reward_model_train_steps", reward_model_train_steps},
            {"reward_model_epochs", reward_model_epochs},
            {"reinforcement_learning_train_steps", reinforcement_learning_train_steps},
            {"reinforcement_learning_epochs", reinforcement_learning_epochs},
            {"reward_model_learning_rate_multiplier", reward_model_learning_rate_multiplier},
            {"reinforcement_learning_rate_multiplier", reinforcement_learning_rate_multiplier},
            {"kl_coeff", kl_coeff},
            {"instruction", instruction}};
  if (rlaif.enabled)
    j["rlaif"] = {{"prompt_dataset", rlaif.prompt_dataset}, {"rule", rlaif.rule},       {"judge", rlaif.judge},
                  {"task", rlaif.task},                     {"temperatures", rlaif.temperatures},
                  {"min_confidence", rlaif.min_confidence}, {"keep_ties", rlaif.keep_ties}};
  if (autosxs.enabled)
    j["autosxs"] = {{"judge", autosxs.judge}, {"task", autosxs.task}, {"explanation_tokens", autosxs.explanation_tokens}};
  const AdvancedSpec& a = advanced;
  j["advanced"] = {{"prompt_format", a.prompt_format},
                   {"reward_model_batch_size", a.reward_model_batch_size},
                   {"reward_model_micro_batch_size", a.reward_model_micro_batch_size},
                   {"reward_model_lora_rank", a.reward_model_lora_rank},
                   {"validation_fraction", a.validation_fraction},
                   {"reinforcement_learning_batch_size", a.reinforcement_learning_batch_size},
                   {"reinforcement_learning_micro_batch_size", a.reinforcement_learning_micro_batch_size},
                   {"policy_lora_rank", a.policy_lora_rank},
                   {"ppo_epochs", a.ppo_epochs},
                   {"num_mini_batches", a.num_mini_batches},
                   {"cliprange", a.cliprange},
                   {"cliprange_value", a.cliprange_value},
                   {"vf_coef", a.vf_coef},
                   {"gamma", a.gamma},
                   {"lam", a.lam},
                   {"temperature", a.temperature},
                   {"missing_eos_penalty", a.missing_eos_penalty},
                   {"eos_penalty", a.eos_penalty},
                   {"checkpoint_every", a.checkpoint_every},
                   {"inference_batch_size", a.inference_batch_size},
                   {"max_eval_prompts", a.max_eval_prompts},
                   {"max_words", a.max_words},
                   {"export_format", a.export_format},
                   {"seed", a.seed},
                   {"dtype", a.dtype},
                   {"device", a.device},
                   {"threads", a.threads}};
  return j;
}

}  // namespace rlhf::pipeline
