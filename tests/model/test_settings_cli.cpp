// The trainers' command lines come from their settings tables: `--help` lists exactly the
// table's rows (plus the inputs and outputs), and bad values are refused before any work, in
// plain numbers, naming the flag.
#include <gtest/gtest.h>

#include <regex>
#include <set>

#include "rlhf/train/policy_config.h"
#include "rlhf/train/reward_config.h"
#include "test_util.h"

namespace rlhf {
namespace {

using testing::capture;
using testing::cli;

// Every option name (--x, -x) the help text declares.
std::set<std::string> help_options(const std::string& help) {
  std::set<std::string> out;
  std::istringstream in(help);
  std::string line;
  const std::regex name(R"((^|[ ,])(--?[A-Za-z][A-Za-z0-9-]*))");
  while (std::getline(in, line)) {
    if (line.size() < 3 || line[0] != ' ' || line.find_first_not_of(' ') == std::string::npos) continue;
    const std::string body = line.substr(line.find_first_not_of(' '));
    if (body[0] != '-') continue;
    const std::string names = body.substr(0, body.find("  "));  // the names column
    for (std::sregex_iterator it(names.begin(), names.end(), name), end; it != end; ++it) out.insert((*it)[2]);
  }
  return out;
}

template <class Config>
std::set<std::string> table_options(const SettingsTable<Config>& t, std::set<std::string> io) {
  for (const auto& r : t.rows) {
    std::stringstream ss(r.flag);
    for (std::string n; std::getline(ss, n, ',');) io.insert(n);
    if (!r.shortcut_flag.empty()) io.insert(r.shortcut_flag);
  }
  return io;
}

TEST(SettingsCli, HelpListsExactlyTheTable) {
  const std::set<std::string> common = {"-h", "--help", "--output", "-o", "--large-model-reference", "--model", "-m",
                                        "--eval-dataset", "--resume", "--no-progress",
                                        // the launcher's flags, in every command's help footer
                                        "--nproc-per-node", "--dist-timeout"};
  std::set<std::string> reward_io = common, policy_io = common;
  reward_io.insert("--preference-dataset");
  policy_io.insert({"--prompt-dataset", "--reward-model"});
  int rc = -1;
  const std::string reward_help = capture(cli() + " train-reward --help", &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(help_options(reward_help), table_options(reward_settings(), reward_io)) << reward_help;
  const std::string policy_help = capture(cli() + " train-policy --help", &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(help_options(policy_help), table_options(policy_settings(), policy_io)) << policy_help;
  // The help says each default and range.
  EXPECT_NE(policy_help.find("--kl-coeff"), std::string::npos);
  EXPECT_NE(policy_help.find("a number in [0, 1000000]; default 0.1"), std::string::npos) << policy_help;
}

TEST(SettingsCli, BadValuesAreRefusedBeforeAnyWork) {
  const auto dir = testing::scratch_dir();
  const std::string base = cli() + " train-reward --preference-dataset " + (dir / "none.jsonl").string() + " --output " +
                           (dir / "out").string();
  struct Case {
    std::string flags, needle;
  };
  const std::vector<Case> cases = {
      {"--batch-size 0", "--batch-size: must be an integer in [1, 1048576] (it is 0)"},
      {"--batch-size -3", "--batch-size: must be an integer in [1, 1048576] (it is -3)"},
      {"--threads 100000000", "--threads: must be an integer in [0, 1024] (it is 100000000)"},
      {"--seed -1", "--seed: must be a whole number"},
      {"--reward-model-learning-rate-multiplier nan", "--reward-model-learning-rate-multiplier: must be a number"},
      {"--margin inf", "--margin: must be a number in [-1000000, 1000000], not \"inf\""},
      {"--dtype fp16", "--dtype: is \"fp16\"; it must be one of fp32, bf16"},
      {"--reward-model-train-steps 10 --reward-model-epochs 2", "--reward-model-epochs: give the train steps or the epochs"},
      {"--batch-size 4 --micro-batch-size 8", "--micro-batch-size: must not exceed the batch size (8 > 4)"},
  };
  for (const auto& c : cases) {
    int rc = -1;
    const std::string out = capture(base + " " + c.flags, &rc, /*merge_stderr=*/true);
    EXPECT_NE(rc, 0) << c.flags;
    EXPECT_NE(out.find(c.needle), std::string::npos) << c.flags << "\n" << out;
    EXPECT_EQ(out.find("none.jsonl"), std::string::npos) << "the data was read before the flags were checked: " << out;
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "out"));
  int rc = -1;
  const std::string out = capture(cli() + " train-policy --prompt-dataset p --reward-model r --output " +
                                      (dir / "p").string() + " --temperature nan",
                                  &rc, true);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("--temperature: must be a number in (0, 100], not \"nan\""), std::string::npos) << out;
}

// A repeatable flag (--reward-rule) takes one value per occurrence, kept whole: the help says
// so, and a second word after it is not taken as a second value.
TEST(SettingsCli, RepeatableFlagsTakeOneValueEach) {
  const auto dir = testing::scratch_dir();
  size_t seen = 0;
  for (const auto& r : policy_settings().rows) {
    if (!r.repeatable) continue;
    ++seen;
    int rc = -1;
    const std::string help = capture(cli() + " train-policy --help", &rc);
    const size_t at = help.find(setting_flag(r));
    ASSERT_NE(at, std::string::npos) << help;
    EXPECT_NE(help.find("repeatable: one value per flag", at), std::string::npos) << help;
    const std::string out = capture(cli() + " train-policy --prompt-dataset p --output " + (dir / "p").string() + " " +
                                        setting_flag(r) + " 'regex=^(a|b),c' stray",
                                    &rc, true);
    EXPECT_NE(rc, 0);
    EXPECT_NE(out.find("stray"), std::string::npos) << out;
    EXPECT_FALSE(std::filesystem::exists(dir / "p"));
  }
  if (seen == 0) GTEST_SKIP() << "train-policy has no repeatable flag";
}

}  // namespace
}  // namespace rlhf
