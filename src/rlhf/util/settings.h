// A settings table: one row per setting of a trainer, saying everything about it once — its
// member, its CLI flag, its key in the pipeline spec, its allowed range or set, its help. The
// member initialiser of the config struct is the default. From the table come the flags and
// their help, the spec's keys and their errors, the range checks, the settings that enter a
// cache key or a resume fingerprint, and the reference table in docs/settings.md.
//
// Values are parsed from text by one function (parse_setting), so a flag and a spec key
// given the same text set the same value. Torch-free.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace rlhf {

// Where a setting's value lives in a config.
using SettingRef = std::variant<int64_t*, uint64_t*, double*, bool*, std::string*, std::optional<std::string>*,
                                std::vector<std::string>*>;

// Names (SettingRow::name) of settings, e.g. those given explicitly.
using SettingNames = std::set<std::string>;

// A setting's value broke a rule. `setting` is the row's name; callers say it as the flag or
// the spec key (with file and line).
class SettingError : public std::runtime_error {
 public:
  SettingError(std::string setting, const std::string& problem)
      : std::runtime_error(problem), setting_(std::move(setting)) {}
  const std::string& setting() const { return setting_; }

 private:
  std::string setting_;
};

struct SettingRow {
  std::string name;      // the member ("kl_coeff", "lora.rank"); the name in fingerprints and cache keys
  std::string flag;      // "--kl-coeff"; further names after commas ("--model,-m")
  std::string spec_key;  // "kl_coeff" or "advanced.ppo_epochs"
  std::string help;
  // Numbers: the allowed closed range, min excluded when open_min. Integers are whole.
  double min = 0, max = 0;
  bool open_min = false;
  std::vector<std::string> choices;  // text: the allowed values (empty = any text)
  bool negated_flag = false;         // bool given as --no-X: the flag sets false
  // A list whose values may hold commas (regexes, rule specs): each occurrence of the flag is
  // one value, never split (--reward-rule A --reward-rule B); in the spec a YAML list, one value
  // per item (a lone scalar is a list of one). Lists that are not repeatable (lora.targets,
  // reward_weights) split on commas. A list may be empty (none given) unless it is a pick from
  // `choices` and not repeatable: lora.targets needs at least one.
  bool repeatable = false;
  // A flag that sets this setting to a fixed value (e.g. --center-rewards = 0.01).
  std::string shortcut_flag, shortcut_value, shortcut_help;
  bool result = true;  // the value changes what is trained (enters cache keys and fingerprints)
  std::function<SettingRef(void*)> ref;
};

template <class Config>
struct SettingsTable {
  std::string command;  // "train-reward"
  std::vector<SettingRow> rows;

  SettingRef ref(const SettingRow& r, Config& c) const { return r.ref(&c); }
  SettingRef ref(const SettingRow& r, const Config& c) const { return r.ref(const_cast<Config*>(&c)); }
  const SettingRow* find(const std::string& name) const {
    for (const auto& r : rows)
      if (r.name == name) return &r;
    return nullptr;
  }
};

// Sets the value at `ref` from text; throws SettingError(row.name, ...) when the text is not a
// value of the row's kind, or is out of its range or set. Lists are comma-separated, except a
// repeatable row's, for which the text is one value.
void parse_setting(const SettingRow& row, SettingRef ref, const std::string& text);
// Sets a list from its values as given (the flag's occurrences, the spec's YAML items): a
// repeatable row takes each as one value; another list splits each on commas. Then checks it.
void parse_setting_list(const SettingRow& row, SettingRef ref, const std::vector<std::string>& values);
// Checks the value at `ref` against the row (range, set, finiteness); throws SettingError.
void check_setting(const SettingRow& row, SettingRef ref);
// The value as JSON (null for an unset optional) and as the text parse_setting reads back
// (a repeatable list's values joined by commas: for reading, not for reading back).
nlohmann::json setting_json(SettingRef ref);
std::string setting_text(SettingRef ref);
// The allowed values in words ("an integer in [1, 1048576]", "one of raw, chat, auto").
std::string setting_range_text(const SettingRow& row, SettingRef ref);
// Whether the row holds a bool / a list.
bool is_bool(SettingRef ref);
bool is_list(SettingRef ref);

template <class Config>
void check_settings(const SettingsTable<Config>& t, const Config& c) {
  for (const auto& r : t.rows) check_setting(r, t.ref(r, c));
}
// The first name of a row's flag, as the user types it ("--batch-size"); by the row's name.
std::string setting_flag(const SettingRow& row);
template <class Config>
std::string setting_flag(const SettingsTable<Config>& t, const std::string& name) {
  const SettingRow* r = t.find(name);
  return r ? setting_flag(*r) : name;
}
// Throws rlhf::Error "--flag: problem".
[[noreturn]] void fail_with_flag(const std::string& flag, const std::string& problem);
// Runs `check(config, given)` (check_reward_config, check_policy_config) and turns a
// SettingError into the rlhf::Error a command-line user reads: the setting named by its flag.
template <class Config, class Check>
void check_naming_flags(const SettingsTable<Config>& t, const Config& c, const SettingNames& given, Check check) {
  try {
    check(c, given);
  } catch (const SettingError& e) {
    fail_with_flag(setting_flag(t, e.setting()), e.what());
  }
}
// The settings as {name: value}; only those that change the result when result_only.
template <class Config>
nlohmann::json settings_json(const SettingsTable<Config>& t, const Config& c, bool result_only) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& r : t.rows)
    if (!result_only || r.result) j[r.name] = setting_json(t.ref(r, c));
  return j;
}
// The table as Markdown rows (flag, spec key, default, allowed, help); `defaults` gives the
// default values.
template <class Config>
std::string settings_markdown(const SettingsTable<Config>& t) {
  std::string out = "| flag | spec key | default | allowed | what it does |\n|---|---|---|---|---|\n";
  const Config d{};
  auto cell = [](std::string s) {
    std::string o;
    for (char ch : s) o += ch == '|' ? std::string("\\|") : std::string(1, ch);
    return o;
  };
  for (const auto& r : t.rows) {
    SettingRef v = t.ref(r, d);
    std::string flag = r.flag.substr(0, r.flag.find(','));
    if (!r.shortcut_flag.empty()) flag += "`, `" + r.shortcut_flag;
    std::string def = setting_text(v);
    if (std::holds_alternative<std::optional<std::string>*>(v) && !std::get<std::optional<std::string>*>(v)->has_value())
      def = "(unset)";
    else if (r.repeatable && def.empty())
      def = "(none)";
    out += "| `" + flag + "` | `" + r.spec_key + "` | " + (def.empty() ? "\"\"" : "`" + cell(def) + "`") + " | " +
           cell(setting_range_text(r, v)) + " | " + cell(r.help) + " |\n";
  }
  return out;
}

}  // namespace rlhf
