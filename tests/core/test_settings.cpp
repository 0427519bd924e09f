// The settings tables: every row complete, the docs' reference table current, and a flag and
// a spec key given the same text setting the same value, for every row of both trainers.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "rlhf/pipeline/spec.h"
#include "rlhf/train/dpo_config.h"
#include "rlhf/train/policy_config.h"
#include "rlhf/train/reward_config.h"
#include "rlhf/util/error.h"
#include "settings_flags.h"

namespace rlhf {
namespace {

namespace fs = std::filesystem;

template <class Config>
void expect_complete(const SettingsTable<Config>& t) {
  std::set<std::string> names, flags, keys;
  for (const auto& r : t.rows) {
    EXPECT_FALSE(r.name.empty());
    EXPECT_EQ(r.flag.rfind("--", 0), 0u) << r.name << ": no flag";
    EXPECT_FALSE(r.spec_key.empty()) << r.name << ": no spec key";
    EXPECT_GE(r.help.size(), 8u) << r.name << ": no help";
    EXPECT_TRUE(names.insert(r.name).second) << "two rows named " << r.name;
    EXPECT_TRUE(flags.insert(r.flag).second) << "two rows with flag " << r.flag;
    EXPECT_TRUE(keys.insert(r.spec_key).second) << "two rows with spec key " << r.spec_key;
    EXPECT_NE(r.ref(nullptr).index(), std::variant_npos);
    // The default itself passes the row's own checks.
    Config d{};
    EXPECT_NO_THROW(check_setting(r, t.ref(r, d))) << r.name;
  }
}

TEST(Settings, EveryRowHasAFlagASpecKeyAndHelp) {
  expect_complete(reward_settings());
  expect_complete(policy_settings());
  expect_complete(dpo_settings());
  // A key both trainers read is the same setting in both: same flag, same kind of value.
  for (const auto& a : reward_settings().rows)
    for (const auto& b : policy_settings().rows)
      if (a.spec_key == b.spec_key) {
        EXPECT_EQ(a.flag, b.flag) << a.spec_key;
        EXPECT_EQ(a.name, b.name) << a.spec_key;
        EXPECT_EQ(a.choices, b.choices) << a.spec_key;
      }
}

// What docs/settings.md must say: both tables, generated.
std::string settings_reference() {
  std::string out =
      "# Settings reference\n\n"
      "Every setting of the trainers, from their settings tables (`src/rlhf/train/reward_config.cpp`, "
      "`src/rlhf/train/policy_config.cpp`). A setting is given as a flag of the command or as a key of the "
      "pipeline spec (nested keys under `advanced:`); both read the same text the same way and are checked "
      "by the same rules. A spec key that both trainers have sets both. This file is generated: the test "
      "`Settings.DocsTableIsCurrent` fails when it is stale, and `RLHF_UPDATE_DOCS=1` makes it write the "
      "current table.\n\n";
  out += "## `rlhf train-reward` (pipeline stage `train_reward`)\n\n" + settings_markdown(reward_settings());
  out += "\n## `rlhf train-policy` (pipeline stage `train_policy`)\n\n" + settings_markdown(policy_settings());
  out += "\n## `rlhf train-dpo`\n\n" + settings_markdown(dpo_settings());
  return out;
}

TEST(Settings, DocsTableIsCurrent) {
  const fs::path path = fs::path(RLHF_SOURCE_DIR) / "docs" / "settings.md";
  const std::string want = settings_reference();
  if (const char* u = std::getenv("RLHF_UPDATE_DOCS"); u && std::string(u) == "1") {
    fs::create_directories(path.parent_path());
    std::ofstream(path) << want;
  }
  std::ifstream in(path);
  ASSERT_TRUE(in) << path << " is missing; run this test with RLHF_UPDATE_DOCS=1";
  std::stringstream got;
  got << in.rdbuf();
  EXPECT_EQ(got.str(), want) << path << " is stale; run this test with RLHF_UPDATE_DOCS=1";
  // Every row appears, by flag and spec key.
  for (const auto& r : reward_settings().rows) EXPECT_NE(got.str().find("`" + r.spec_key + "`"), std::string::npos);
  for (const auto& r : policy_settings().rows) EXPECT_NE(got.str().find("`" + r.spec_key + "`"), std::string::npos);
  for (const auto& r : dpo_settings().rows) EXPECT_NE(got.str().find("`" + r.spec_key + "`"), std::string::npos);
}

// A value of the row other than its default, as text (and as the flag's arguments).
std::string sample_text(const SettingRow& r, SettingRef def) {
  return std::visit(
      [&](auto* p) -> std::string {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, int64_t>) return std::to_string(*p == static_cast<int64_t>(r.min) ? *p + 1 : static_cast<int64_t>(r.min));
        else if constexpr (std::is_same_v<T, uint64_t>) return std::to_string(*p + 7);
        else if constexpr (std::is_same_v<T, double>) {
          double v = *p * 0.5;
          if (v == *p || v < r.min || (r.open_min && v == r.min)) v = r.min + 0.25;
          return fmt::format("{}", v);
        } else if constexpr (std::is_same_v<T, bool>) return *p ? "false" : "true";
        else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          if (r.name == "reward_rule") return "max-words=5,prefer-shorter";
          if (r.name == "reward_weights") return "0.5";  // one reward (the reward model's) unless rules are given
          return "k_proj,o_proj";
        }
        else {
          std::string cur;
          if constexpr (std::is_same_v<T, std::string>) cur = *p;
          else cur = p->value_or("");
          if (r.name == "device") return "cuda:1";
          if (r.choices.empty()) return "Say it in five words.";
          for (const auto& c : r.choices)
            if (c != cur) return c;
          return cur;
        }
      },
      def);
}

// A repeatable list's sample: values holding commas, which must stay whole.
const std::vector<std::string> kRepeatableSample = {"regex=^(yes|no),\\s", "max-words=50"};

template <class Config>
Config from_flags(const SettingsTable<Config>& t, const SettingRow& r, const std::string& text) {
  Config c{};
  CLI::App app;
  cli::SettingFlags flags(&app, t, c);
  std::vector<std::string> args;
  if (is_bool(t.ref(r, c))) {
    if ((text == "true") != r.negated_flag) args.push_back(r.flag.substr(0, r.flag.find(',')));
  } else {
    args.push_back(r.flag.substr(0, r.flag.find(',')));
    if (r.repeatable) {
      args.pop_back();
      for (const auto& v : kRepeatableSample) args.insert(args.end(), {setting_flag(r), v});
    } else if (is_list(t.ref(r, c))) {
      std::stringstream ss(text);
      for (std::string item; std::getline(ss, item, ',');) args.push_back(item);
    } else {
      args.push_back(text);
    }
  }
  std::reverse(args.begin(), args.end());  // CLI11 takes them last first
  app.parse(args);
  flags.apply();
  return c;
}

template <class Config>
void expect_flag_equals_spec(const SettingsTable<Config>& t, Config pipeline::PipelineSpec::*member) {
  const Config d{};
  for (const auto& r : t.rows) {
    const std::string text = sample_text(r, t.ref(r, d));
    Config via_flag = from_flags(t, r, text);
    std::string yaml = "preference_dataset: p.jsonl\nprompt_dataset: q.jsonl\n";
    const bool nested = r.spec_key.rfind("advanced.", 0) == 0;
    const std::string key = nested ? r.spec_key.substr(9) : r.spec_key;
    std::string value = is_list(t.ref(r, d)) ? "[" + text + "]" : (r.name == "instruction" ? "\"" + text + "\"" : text);
    if (r.repeatable) value = "['" + kRepeatableSample[0] + "', '" + kRepeatableSample[1] + "']";
    yaml += nested ? "advanced:\n  " + key + ": " + value + "\n" : key + ": " + value + "\n";
    pipeline::PipelineSpec spec;
    try {
      spec = pipeline::parse_spec(yaml, "spec.yaml", "/data");
    } catch (const Error& e) {
      ADD_FAILURE() << r.spec_key << " = " << text << ": " << e.what();
      continue;
    }
    const auto flag_value = setting_json(t.ref(r, via_flag));
    EXPECT_EQ(flag_value, setting_json(t.ref(r, spec.*member))) << r.flag << " / " << r.spec_key << " = " << text;
    if (r.repeatable) EXPECT_EQ(flag_value, nlohmann::json(kRepeatableSample)) << r.flag;
    EXPECT_NE(flag_value, setting_json(t.ref(r, d))) << r.flag << ": the sample is the default";
  }
}

TEST(Settings, FlagAndSpecKeySetTheSameValue) {
  expect_flag_equals_spec(reward_settings(), &pipeline::PipelineSpec::reward);
  expect_flag_equals_spec(policy_settings(), &pipeline::PipelineSpec::policy);
}

// A table of lists: a repeatable one (values may hold commas), a pick from a set, free text.
struct ListConfig {
  std::vector<std::string> rules;
  std::vector<std::string> targets = {"q_proj"};
  std::vector<std::string> weights;
};
const SettingsTable<ListConfig>& list_settings() {
  static const SettingsTable<ListConfig> t = [] {
    SettingsTable<ListConfig> t{.command = "lists"};
    t.rows.push_back({.name = "rules", .flag = "--rule", .spec_key = "rules", .help = "rules, each whole",
                      .repeatable = true, .ref = [](void* c) -> SettingRef { return &static_cast<ListConfig*>(c)->rules; }});
    t.rows.push_back({.name = "targets", .flag = "--targets", .spec_key = "targets", .help = "a pick of modules",
                      .choices = {"q_proj", "k_proj", "v_proj"},
                      .ref = [](void* c) -> SettingRef { return &static_cast<ListConfig*>(c)->targets; }});
    t.rows.push_back({.name = "weights", .flag = "--weights", .spec_key = "weights", .help = "numbers as text",
                      .ref = [](void* c) -> SettingRef { return &static_cast<ListConfig*>(c)->weights; }});
    return t;
  }();
  return t;
}

ListConfig lists_from_flags(std::vector<std::string> args, SettingNames* given = nullptr) {
  ListConfig c;
  CLI::App app;
  cli::SettingFlags flags(&app, list_settings(), c);
  std::reverse(args.begin(), args.end());  // CLI11 takes them last first
  app.parse(args);
  const SettingNames g = flags.apply();
  if (given) *given = g;
  return c;
}

TEST(Settings, RepeatableListsKeepEachValueWhole) {
  using V = std::vector<std::string>;
  const auto& t = list_settings();
  ListConfig c;
  // Each occurrence of the flag is one value, commas and all; other lists split on commas.
  SettingNames given;
  c = lists_from_flags({"--rule", "regex=^(a|b),c", "--rule", "max-words=5", "--targets", "q_proj,v_proj", "--targets",
                        "k_proj", "--weights", "1, 0.5"},
                       &given);
  EXPECT_EQ(c.rules, (V{"regex=^(a|b),c", "max-words=5"}));
  EXPECT_EQ(c.targets, (V{"q_proj", "v_proj", "k_proj"}));
  EXPECT_EQ(c.weights, (V{"1", "0.5"}));
  EXPECT_EQ(given, (SettingNames{"rules", "targets", "weights"}));
  EXPECT_EQ(lists_from_flags({"--rule=regex=x,y"}).rules, (V{"regex=x,y"}));
  // One value per occurrence: a second word is not taken as a second rule.
  EXPECT_THROW(lists_from_flags({"--rule", "max-words=5", "prefer-shorter"}), CLI::ParseError);
  // The same through the parsers the spec reader uses.
  parse_setting_list(*t.find("rules"), t.ref(*t.find("rules"), c), {"regex=a,b", "regex=c"});
  EXPECT_EQ(c.rules, (V{"regex=a,b", "regex=c"}));
  parse_setting(*t.find("rules"), t.ref(*t.find("rules"), c), "regex=a,b");  // one text, one value
  EXPECT_EQ(c.rules, (V{"regex=a,b"}));
  parse_setting_list(*t.find("targets"), t.ref(*t.find("targets"), c), {"q_proj, k_proj", "v_proj"});
  EXPECT_EQ(c.targets, (V{"q_proj", "k_proj", "v_proj"}));
  // Empty: none given is fine for free text; a pick from a set needs one.
  const ListConfig d;
  EXPECT_NO_THROW(check_settings(t, d));
  parse_setting_list(*t.find("rules"), t.ref(*t.find("rules"), c), {});
  EXPECT_TRUE(c.rules.empty());
  try {
    parse_setting_list(*t.find("targets"), t.ref(*t.find("targets"), c), {});
    ADD_FAILURE() << "an empty pick was accepted";
  } catch (const SettingError& e) {
    EXPECT_EQ(e.setting(), "targets");
    EXPECT_STREQ(e.what(), "needs at least one value");
  }
  try {
    parse_setting_list(*t.find("rules"), t.ref(*t.find("rules"), c), {"max-words=5", ""});
    ADD_FAILURE() << "an empty value was accepted";
  } catch (const SettingError& e) {
    EXPECT_STREQ(e.what(), "holds an empty value");
  }
  try {
    lists_from_flags({"--targets", "q_proj,o_proj"});
    ADD_FAILURE() << "a value outside the set was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--targets: is \"o_proj\""), std::string::npos) << e.what();
  }
  // What the help and docs say of them.
  EXPECT_EQ(setting_range_text(*t.find("rules"), t.ref(*t.find("rules"), c)),
            "text, repeatable: one value per flag, a YAML list in the spec");
  EXPECT_EQ(setting_range_text(*t.find("weights"), t.ref(*t.find("weights"), c)), "comma-separated text");
  const std::string md = settings_markdown(t);
  EXPECT_NE(md.find("| `--rule` | `rules` | `(none)` | text, repeatable"), std::string::npos) << md;
}

// The spec reader gives each YAML item of a repeatable key as one value, commas kept; a lone
// scalar is a list of one.
TEST(Settings, SpecListsOfRepeatableKeysKeepEachItemWhole) {
  using V = std::vector<std::string>;
  size_t seen = 0;
  for (const auto& r : policy_settings().rows) {
    if (!r.repeatable) continue;
    ++seen;
    const bool nested = r.spec_key.rfind("advanced.", 0) == 0;
    const std::string key = nested ? r.spec_key.substr(9) : r.spec_key;
    auto parse = [&](const std::string& value) {
      const std::string yaml = "preference_dataset: p.jsonl\nprompt_dataset: q.jsonl\n" +
                               (nested ? "advanced:\n  " + key + ": " + value + "\n" : key + ": " + value + "\n");
      pipeline::PipelineSpec spec = pipeline::parse_spec(yaml, "spec.yaml", "/data");
      return setting_json(policy_settings().ref(r, spec.policy)).get<V>();
    };
    EXPECT_EQ(parse("['regex=^(a|b),c', 'max-words=5']"), (V{"regex=^(a|b),c", "max-words=5"})) << r.spec_key;
    EXPECT_EQ(parse("\"regex=a,b\""), (V{"regex=a,b"})) << r.spec_key;
    EXPECT_EQ(parse("[]"), V{}) << r.spec_key;
  }
  for (const auto& r : reward_settings().rows) seen += r.repeatable;
  if (seen == 0) GTEST_SKIP() << "no repeatable row in the trainers' tables";
}

TEST(Settings, ValuesAreCheckedInPlainNumbers) {
  auto error = [](const std::string& name, const std::string& text) -> std::string {
    RewardTrainConfig c;
    const SettingRow* r = reward_settings().find(name);
    if (!r) return "no row " + name;
    try {
      parse_setting(*r, reward_settings().ref(*r, c), text);
    } catch (const SettingError& e) {
      EXPECT_EQ(e.setting(), name);
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(error("batch_size", "0"), "must be an integer in [1, 1048576] (it is 0)");
  EXPECT_EQ(error("train_steps", "0"), "must be an integer at least 1 (it is 0)");
  EXPECT_EQ(error("train_steps", "-5"), "must be an integer at least 1 (it is -5)");
  EXPECT_EQ(error("train_steps", "99999999999999999999999"),
            "must be an integer at least 1, not \"99999999999999999999999\"");
  EXPECT_EQ(error("threads", "1000000"), "must be an integer in [0, 1024] (it is 1000000)");
  EXPECT_EQ(error("seed", "-1"), "must be a whole number from 0 to 18446744073709551615, not \"-1\"");
  EXPECT_EQ(error("seed", "18446744073709551615"), "");  // every seed, past 2^53 too
  EXPECT_EQ(error("learning_rate_multiplier", "nan"), "must be a number in (0, 1000000], not \"nan\"");
  EXPECT_EQ(error("learning_rate_multiplier", "inf"), "must be a number in (0, 1000000], not \"inf\"");
  EXPECT_EQ(error("learning_rate_multiplier", "0"), "must be a number in (0, 1000000] (it is 0)");
  EXPECT_EQ(error("dtype", "fp16"), "is \"fp16\"; it must be one of fp32, bf16, float32, bfloat16, auto");
  EXPECT_EQ(error("skip_invalid", "maybe"), "must be true or false, not \"maybe\"");
  EXPECT_EQ(error("batch_size", "1e3"), "");  // a whole number written as a float
  EXPECT_EQ(error("batch_size", "2.5"), "must be an integer in [1, 1048576], not \"2.5\"");
}

TEST(Settings, CrossChecksNameTheSetting) {
  auto setting_of = [](auto check, const auto& config, const SettingNames& given) -> std::string {
    try {
      check(config, given);
    } catch (const SettingError& e) {
      return e.setting() + ": " + e.what();
    }
    return "";
  };
  RewardTrainConfig r;
  EXPECT_EQ(setting_of(check_reward_config, r, {}), "");
  EXPECT_EQ(setting_of(check_reward_config, r, {"train_steps", "epochs"}),
            "epochs: give the train steps or the epochs, not both");
  r.batch_size = 4;  // the default micro-batch (8) is cut to the batch; given explicitly it is an error
  EXPECT_EQ(setting_of(check_reward_config, r, {"batch_size"}), "");
  EXPECT_EQ(setting_of(check_reward_config, r, {"batch_size", "micro_batch_size"}),
            "micro_batch_size: must not exceed the batch size (8 > 4)");
  PolicyTrainConfig p;
  p.num_mini_batches = 3;
  EXPECT_EQ(setting_of(check_policy_config, p, {}), "num_mini_batches: must divide the batch size (3 does not divide 64)");
  p.num_mini_batches = 1, p.kl_coeff = 0, p.adaptive_kl = true;
  EXPECT_EQ(setting_of(check_policy_config, p, {}), "adaptive_kl: needs a positive kl_coeff to start from");
}

}  // namespace
}  // namespace rlhf
