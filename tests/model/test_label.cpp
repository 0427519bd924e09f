// RLAIF labeling (`rlhf label`) on a tiny model made here: rules label existing pairs, two
// sampled candidates per prompt are labeled by a rule or by the judge, the same seed gives
// the same pairs, and bad flags write nothing.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "judge_fixture.h"
#include "rlhf/data/dataset.h"
#include "rlhf/eval/rules.h"
#include "test_util.h"

namespace rlhf::eval {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using rlhf::testing::cli;
using rlhf::testing::read_text;
using rlhf::testing::read_jsonl;
using rlhf::testing::run;
using rlhf::testing::tiny_judge;

TEST(Label, RulesLabelExistingPairs) {
  auto dir = rlhf::testing::scratch_dir();
  {
    std::ofstream f(dir / "pairs.jsonl");
    f << json{{"input_text", "p1"}, {"candidate_0", "one two three"}, {"candidate_1", "one two three four five six"}}.dump() << "\n"
      << json{{"input_text", "p2"}, {"candidate_0", "a b c d e f g"}, {"candidate_1", "a b"}}.dump() << "\n"
      << json{{"input_text", "p3"}, {"candidate_0", "x y"}, {"candidate_1", "z w"}}.dump() << "\n"      // both within: tie
      << json{{"input_text", "p4"}, {"candidate_0", "same"}, {"candidate_1", "same"}}.dump() << "\n";   // identical
  }
  const std::string out = (dir / "prefs.jsonl").string();
  ASSERT_EQ(run(cli() + " label --pairs " + (dir / "pairs.jsonl").string() + " --rule max-words=5 --output " + out), 0);
  auto rows = read_jsonl(out);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["input_text"], "p1");
  EXPECT_EQ(rows[0]["choice"], 0);
  EXPECT_EQ(rows[1]["input_text"], "p2");
  EXPECT_EQ(rows[1]["choice"], 1);
  EXPECT_EQ(rows[0]["labeler"], "rule:max-words=5");
  EXPECT_DOUBLE_EQ(rows[0]["confidence"].get<double>(), 1.0);
  // The output is a preference dataset the reward trainer reads.
  auto prefs = data::read_preference_dataset(out);
  ASSERT_EQ(prefs.size(), 2u);
  EXPECT_EQ(prefs[0].chosen, "one two three");
  EXPECT_EQ(prefs[1].chosen, "a b");

  // A regex rule; with --keep-ties the undecided pair stays (identical ones never do).
  ASSERT_EQ(run(cli() + " label --pairs " + (dir / "pairs.jsonl").string() + " --rule 'regex=^a b$' --keep-ties --output " + out), 0);
  rows = read_jsonl(out);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[1]["choice"], 1);
  EXPECT_DOUBLE_EQ(rows[0]["confidence"].get<double>(), 0.0);

  // Bad flags: no labeler, two labelers, a bad rule; nothing written.
  fs::remove(out);
  const std::string base = cli() + " label --pairs " + (dir / "pairs.jsonl").string() + " --output " + out;
  for (const std::string extra : {"", " --rule max-words=5 --judge x", " --rule max-words=abc"}) {
    int status = 0;
    std::string err = rlhf::testing::capture(base + extra, &status, true);
    EXPECT_NE(status, 0) << extra;
    EXPECT_NE(err.find("error"), std::string::npos) << err;
    EXPECT_FALSE(fs::exists(out));
  }
}

TEST(Label, SamplesTwoCandidatesAndLabelsThem) {
  auto dir = rlhf::testing::scratch_dir();
  const std::string model = tiny_judge(dir / "model").string();
  {
    std::ofstream f(dir / "prompts.jsonl");
    for (int i = 0; i < 10; ++i) f << json{{"input_text", "say something " + std::to_string(i) + " ->"}}.dump() << "\n";
  }
  const std::string out = (dir / "prefs.jsonl").string();
  ASSERT_EQ(run(cli() + " label --prompt-dataset " + (dir / "prompts.jsonl").string() + " --model " + model +
                " --rule prefer-shorter --temperatures 0.8,1.2 --max-new-tokens 12 --batch-size 4 --seed 3 --threads 1 --quiet"
                " --output " + out),
            0);
  auto rows = read_jsonl(out);
  ASSERT_GE(rows.size(), 5u);  // sampled candidates rarely come out the same length
  LabelRule rule = LabelRule::parse("prefer-shorter");
  for (const auto& r : rows) {
    const std::string c0 = r["candidate_0"], c1 = r["candidate_1"];
    EXPECT_NE(c0, c1);
    RuleLabel l = rule.label(c0, c1);
    ASSERT_NE(l.choice, Choice::Tie);
    EXPECT_EQ(r["choice"], l.choice == Choice::A ? 0 : 1);
    EXPECT_TRUE(r["input_text"].get<std::string>().starts_with("say something"));
  }
  // Same seed, same pairs.
  const std::string again = (dir / "again.jsonl").string();
  ASSERT_EQ(run(cli() + " label --prompt-dataset " + (dir / "prompts.jsonl").string() + " --model " + model +
                " --rule prefer-shorter --temperatures 0.8,1.2 --max-new-tokens 12 --batch-size 4 --seed 3 --threads 1 --quiet"
                " --output " + again),
            0);
  EXPECT_EQ(read_text(out), read_text(again));

  // The judge labels the same prompts; every pair is kept with --keep-ties.
  ASSERT_EQ(run(cli() + " label --prompt-dataset " + (dir / "prompts.jsonl").string() + " --model " + model + " --judge " +
                model + " --keep-ties --temperatures 0.8,1.2 --max-new-tokens 12 --batch-size 4 --seed 3 --threads 1 --quiet"
                " --output " + again),
            0);
  rows = read_jsonl(again);
  EXPECT_GE(rows.size(), 8u);
  for (const auto& r : rows) EXPECT_EQ(r["labeler"], "judge:" + model);
}

}  // namespace
}  // namespace rlhf::eval
