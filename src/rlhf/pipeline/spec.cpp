#include "rlhf/pipeline/spec.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <set>

#include <fmt/format.h>

#include "rlhf/data/remote.h"
#include "rlhf/data/reward_rules.h"
#include "rlhf/eval/autosxs.h"
#include "rlhf/eval/rules.h"
#include "rlhf/pipeline/spec_yaml.h"
#include "rlhf/text/utf8.h"
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
    // Relative to the spec's folder; a URI of object storage (s3://, gs://) stays as it is.
    if (out.front() != '/' && !base_dir_.empty() && !data::is_remote_path(out))
      out = (fs::path(base_dir_) / out).lexically_normal().string();
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
      if (!kv.first.IsScalar())  // YAML allows a mapping or a list as a key; a spec does not
        fail("{}:{}: a key in {} is a {}, not a name", source_, kv.first.Mark().line + 1,
             prefix_.empty() ? std::string("the spec") : "'" + prefix_.substr(0, prefix_.size() - 1) + "'",
             kv.first.IsMap() ? "mapping" : kv.first.IsSequence() ? "list" : "null");
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


// The keys of the trainers' settings tables within one block ("" or "advanced."): each value
// is parsed by the table's own parser into every config that has the key, and the configs are
// checked as the trainers check them, the errors naming the key.
class TableKeys {
 public:
  TableKeys(PipelineSpec& s, std::string source) : s_(s), source_(std::move(source)) {}

  void read(Block& block, const std::string& prefix) {
    std::set<std::string> keys;
    for (const auto& r : reward_settings().rows) keys.insert(r.spec_key);
    for (const auto& r : policy_settings().rows) keys.insert(r.spec_key);
    for (const auto& r : dpo_settings().rows) keys.insert(r.spec_key);
    keys.erase("method");  // the pipeline's own (read_method): dpo is no train-policy method
    for (const auto& full : keys) {
      if (full.rfind(prefix, 0) != 0 || full.find('.', prefix.size()) != std::string::npos) continue;
      const std::string key = full.substr(prefix.size());
      YAML::Node v = block.get(key);
      if (!v || v.IsNull()) continue;
      std::string text;
      std::vector<std::string> items;  // a list's values as given, for parse_setting_list
      if (v.IsScalar()) {
        text = v.Scalar();
        items = {text};
        // A quoted scalar is text: "10" is not the number 10.
        if (v.Tag() == "!" && !is_text_key(full))
          block.bad(key, fmt::format("must be {}, not the quoted text \"{}\"", range_of(full), text));
      } else if (v.IsSequence()) {
        for (const auto& item : v) {
          if (!item.IsScalar()) block.bad(key, "must be a list of values");
          text += (text.empty() ? "" : ",") + item.Scalar();
          items.push_back(item.Scalar());
        }
      } else {
        block.bad(key, "must be a value, not a mapping");
      }
      if (v.IsSequence() && !is_list_key(full)) block.bad(key, "must be one value, not a list");
      try {
        assign(reward_settings(), s_.reward, full, text, items, reward_given_);
        assign(policy_settings(), s_.policy, full, text, items, policy_given_);
        assign(dpo_settings(), s_.dpo, full, text, items, dpo_given_);
      } catch (const SettingError& e) {
        block.bad(key, e.what());
      }
      s_.given.insert(full);
      lines_[full] = v.Mark().line >= 0 ? v.Mark().line + 1 : 0;
    }
  }

  // method: ppo, grpo, rloo (train-policy's --method) or dpo.
  void read_method(Block& top) {
    top.choice("method", s_.method, {"ppo", "grpo", "rloo", "dpo"});
    if (!top.has("method")) return;
    s_.given.insert("method");
    lines_["method"] = top.get("method").Mark().line + 1;
    if (!s_.dpo_method()) {
      s_.policy.method = s_.method;
      policy_given_.insert("method");
    }
  }

  // rewards: a YAML list of rule specs (a lone one is a list of one), each checked here and
  // naming its line; the same setting as the train-policy key reward_rules.
  void read_rewards(Block& top) {
    YAML::Node v = top.get("rewards");
    if (v && !v.IsNull() && !v.IsScalar() && !v.IsSequence()) top.bad("rewards", "must be a list of rules");
    if (v && !v.IsNull()) {
      if (s_.given.count("reward_rules")) top.bad("rewards", "give rewards or reward_rules, not both");
      std::vector<std::string> items;
      if (v.IsScalar()) items.push_back(v.Scalar());
      for (const auto& item : v) {
        if (!item.IsScalar()) top.bad("rewards", "must be a list of rules, each a text such as max-words=50");
        items.push_back(item.Scalar());
      }
      // Each item is one rule, never split: a regex may hold commas.
      const SettingRow* row = policy_settings().find("reward_rule");
      s_.policy.reward_rule = items;
      try {
        check_setting(*row, policy_settings().ref(*row, s_.policy));
      } catch (const SettingError& e) {
        top.bad("rewards", e.what());
      }
      policy_given_.insert("reward_rule");
      s_.given.insert("rewards");
      lines_["rewards"] = v.Mark().line + 1;
    }
    // Each rule parses, by the rule rewards' own parser (whichever key gave them).
    const std::string key = s_.given.count("rewards") ? "rewards" : "reward_rules";
    const YAML::Node node = top.get(key);
    for (size_t i = 0; i < s_.policy.reward_rule.size(); ++i) {
      try {
        (void)data::RewardRule::parse(s_.policy.reward_rule[i], "rule");
      } catch (const Error& e) {
        int line = lines_.count(key) ? lines_[key] : 0;
        if (node && node.IsSequence() && i < node.size() && node[i].Mark().line >= 0) line = node[i].Mark().line + 1;
        if (line > 0) fail("{}:{}: key '{}': {}", source_, line, key, e.what());
        top.bad(key, e.what());
      }
    }
  }

  // The checks the trainers apply, naming the spec key of the setting at fault.
  void check(Block& top) {
    auto run = [&](const auto& table, const auto& config, const SettingNames& given, auto fn) {
      try {
        fn(config, given);
      } catch (const SettingError& e) {
        const SettingRow* r = table.find(e.setting());
        const std::string full = r ? r->spec_key : e.setting();
        auto it = lines_.find(full);
        if (it != lines_.end() && it->second > 0) fail("{}:{}: key '{}': {}", source_, it->second, full, e.what());
        top.bad(full, e.what());
      }
    };
    run(reward_settings(), s_.reward, reward_given_, check_reward_config);
    apply_method_defaults(s_.policy, policy_given_);  // kl_coeff: the method's unless given
    run(policy_settings(), s_.policy, policy_given_, check_policy_config);
    // reward_weights: numbers, one per reward (the reward model's first when one is trained).
    run(policy_settings(), s_.policy, policy_given_, [&](const PolicyTrainConfig& c, const SettingNames&) {
      if (s_.dpo_method()) return;
      PolicyTrainConfig with = c;
      with.reward_model = s_.trains_reward_model() ? "reward_model" : "";
      (void)with.weights();
    });
    if (s_.dpo_method()) run(dpo_settings(), s_.dpo, dpo_given_, check_dpo_config);
  }

 private:
  // The first row with this spec key, and where its value lives in a default config.
  static std::pair<const SettingRow*, SettingRef> row_of(const std::string& full) {
    static RewardTrainConfig reward;
    static PolicyTrainConfig policy;
    static DpoTrainConfig dpo;
    for (const auto& r : reward_settings().rows)
      if (r.spec_key == full) return {&r, reward_settings().ref(r, reward)};
    for (const auto& r : policy_settings().rows)
      if (r.spec_key == full) return {&r, policy_settings().ref(r, policy)};
    for (const auto& r : dpo_settings().rows)
      if (r.spec_key == full) return {&r, dpo_settings().ref(r, dpo)};
    return {nullptr, SettingRef{}};
  }
  static bool is_text_key(const std::string& full) {
    const SettingRef ref = row_of(full).second;
    return std::holds_alternative<std::string*>(ref) || std::holds_alternative<std::optional<std::string>*>(ref) ||
           is_list(ref);
  }
  static std::string range_of(const std::string& full) {
    const auto [row, ref] = row_of(full);
    return row ? setting_range_text(*row, ref) : "a value";
  }
  static bool is_list_key(const std::string& full) { return is_list(row_of(full).second); }
  template <class Config>
  static void assign(const SettingsTable<Config>& t, Config& c, const std::string& full, const std::string& text,
                     const std::vector<std::string>& items, SettingNames& given) {
    for (const auto& r : t.rows)
      if (r.spec_key == full) {
        if (is_list(t.ref(r, c))) parse_setting_list(r, t.ref(r, c), items);
        else parse_setting(r, t.ref(r, c), text);
        given.insert(r.name);
      }
  }

  PipelineSpec& s_;
  SettingNames reward_given_, policy_given_, dpo_given_;
  std::string source_;
  std::map<std::string, int> lines_;
};

}  // namespace

PipelineSpec parse_spec(const std::string& text, const std::string& source, const std::string& base_dir) {
  // The spec's strings go into JSON (the plan, manifests, cache keys), which holds UTF-8 only;
  // yaml-cpp passes any byte through.
  for (size_t i = 0, line = 1; i < text.size();) {
    const text::utf8::Step step = text::utf8::next(text, i);
    if (!step.valid) fail("{}:{}: invalid UTF-8 at byte {} of the file (a spec is UTF-8 text)", source, line, i);
    if (text[i] == '\n') ++line;
    i += step.len;
  }
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    fail("{}:{}: not valid YAML: {}", source, e.mark.line + 1, e.msg);
  }
  if (!root || root.IsNull()) fail("{}: the spec is empty", source);
  check_unique_keys(root, source);
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
  // The trainers' keys at the top level (instruction, lengths, steps, kl_coeff, ...).
  TableKeys trainer_keys(s, source);
  trainer_keys.read_method(b);
  trainer_keys.read(b, "");
  trainer_keys.read_rewards(b);

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
    trainer_keys.read(*v, "advanced.");
    AdvancedSpec& x = s.advanced;
    v->integer("inference_batch_size", x.inference_batch_size, 1, 4096);
    v->integer("max_words", x.max_words, 1);
    v->choice("export_format", x.export_format, {"hf", "gguf", "none"});
    v->done();
  }
  trainer_keys.check(b);
  b.done();

  if (s.prompt_dataset.empty() && !s.dpo_method())
    b.bad("prompt_dataset", fmt::format("is required: the prompts {} completes", s.method));
  if (s.rlaif.enabled && !s.preference_dataset.empty())
    b.bad("preference_dataset", "give preference_dataset or an rlaif block that labels one, not both");
  if (!s.rlaif.enabled && s.preference_dataset.empty()) {
    if (s.dpo_method()) b.bad("preference_dataset", "is required by method dpo (or an rlaif block that labels one)");
    if (s.policy.reward_rule.empty())
      b.bad("preference_dataset", "is required (or an rlaif block that labels one, or rewards: rules to tune by)");
  }
  if (s.dpo_method() && !s.policy.reward_rule.empty())
    b.bad(s.given.count("rewards") ? "rewards" : "reward_rules",
          "are for the online methods (ppo, grpo, rloo); dpo learns from preference_dataset");
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
            {"large_model_reference", large_model_reference}};
  auto put = [&](const std::string& key, const json& v) {
    if (key.rfind("advanced.", 0) == 0) j["advanced"][key.substr(9)] = v;
    else j[key] = v;
  };
  // The trainers' keys: one value, or each trainer's when they differ (a shared key left at
  // defaults that differ, e.g. checkpoint_every). An unset optional is the other's value.
  std::map<std::string, json> reward_values, policy_values;
  for (const auto& r : reward_settings().rows) reward_values[r.spec_key] = setting_json(reward_settings().ref(r, reward));
  for (const auto& r : policy_settings().rows) policy_values[r.spec_key] = setting_json(policy_settings().ref(r, policy));
  for (const auto& [key, v] : reward_values) {
    auto it = policy_values.find(key);
    if (it == policy_values.end() || it->second.is_null() || it->second == v) put(key, v);
    else put(key, json{{"train_reward", v}, {"train_policy", it->second}});
  }
  for (const auto& [key, v] : policy_values)
    if (!reward_values.count(key)) put(key, v);
  // The pipeline's method (train-policy's when not dpo) and train-dpo's own keys.
  j["method"] = method;
  for (const auto& r : dpo_settings().rows)
    if (!reward_values.count(r.spec_key) && !policy_values.count(r.spec_key))
      put(r.spec_key, setting_json(dpo_settings().ref(r, dpo)));
  if (rlaif.enabled)
    j["rlaif"] = {{"prompt_dataset", rlaif.prompt_dataset}, {"rule", rlaif.rule},       {"judge", rlaif.judge},
                  {"task", rlaif.task},                     {"temperatures", rlaif.temperatures},
                  {"min_confidence", rlaif.min_confidence}, {"keep_ties", rlaif.keep_ties}};
  if (autosxs.enabled)
    j["autosxs"] = {{"judge", autosxs.judge}, {"task", autosxs.task}, {"explanation_tokens", autosxs.explanation_tokens}};
  j["advanced"]["inference_batch_size"] = advanced.inference_batch_size;
  j["advanced"]["max_words"] = advanced.max_words;
  j["advanced"]["export_format"] = advanced.export_format;
  return j;
}

const std::vector<std::string>& spec_key_order() {
  static const std::vector<std::string> order = [] {
    // The seed's parameters in their usual order, then the trainers' other keys, then the rest.
    std::vector<std::string> o = {"preference_dataset", "prompt_dataset", "eval_dataset", "large_model_reference"};
    auto add = [&](const std::string& k) {
      if (std::find(o.begin(), o.end(), k) == o.end()) o.push_back(k);
    };
    for (const auto& r : reward_settings().rows)
      if (r.spec_key.find('.') == std::string::npos) add(r.spec_key);
    add("method");
    add("rewards");
    for (const auto& r : policy_settings().rows)
      if (r.spec_key.find('.') == std::string::npos) add(r.spec_key);
    for (const auto& r : dpo_settings().rows)
      if (r.spec_key.find('.') == std::string::npos) add(r.spec_key);
    add("rlaif");
    add("autosxs");
    for (const auto& r : reward_settings().rows) add(r.spec_key);
    for (const auto& r : policy_settings().rows) add(r.spec_key);
    for (const auto& r : dpo_settings().rows) add(r.spec_key);
    for (const char* k : {"advanced.inference_batch_size", "advanced.max_words", "advanced.export_format"}) add(k);
    return o;
  }();
  return order;
}

}  // namespace rlhf::pipeline
