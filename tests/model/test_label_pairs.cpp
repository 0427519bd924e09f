// The pairs `rlhf label` writes always train: a pair with an empty (or only whitespace)
// candidate is left out and counted, by a rule and by the judge, and a kept tie is a line the
// preference reader reads, marked as a tie.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "judge_fixture.h"
#include "rlhf/data/dataset.h"
#include "test_util.h"

namespace rlhf::eval {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using rlhf::testing::capture;
using rlhf::testing::cli;
using rlhf::testing::read_jsonl;

// Four pairs: two real ones, one whose candidate_1 is empty, one whose candidate_0 is only
// whitespace (as when the model stopped at once).
fs::path write_pairs(const fs::path& dir) {
  std::ofstream f(dir / "pairs.jsonl");
  f << json{{"input_text", "p1"}, {"candidate_0", "one two three"}, {"candidate_1", "one two three four five six"}}.dump()
    << "\n"
    << json{{"input_text", "p2"}, {"candidate_0", "a long enough answer"}, {"candidate_1", ""}}.dump() << "\n"
    << json{{"input_text", "p3"}, {"candidate_0", " \n\t"}, {"candidate_1", "an answer"}}.dump() << "\n"
    << json{{"input_text", "p4"}, {"candidate_0", "a b c d e f g"}, {"candidate_1", "a b"}}.dump() << "\n";
  return dir / "pairs.jsonl";
}

TEST(LabelPairs, EmptyCandidatesAreLeftOutAndCountedSoTheOutputTrains) {
  auto dir = rlhf::testing::scratch_dir();
  const fs::path pairs = write_pairs(dir);
  const std::string out = (dir / "prefs.jsonl").string();
  int status = 0;
  const std::string log =
      capture(cli() + " label --pairs " + pairs.string() + " --rule prefer-shorter --output " + out, &status, true);
  ASSERT_EQ(status, 0) << log;
  auto rows = read_jsonl(out);
  ASSERT_EQ(rows.size(), 2u) << log;
  EXPECT_EQ(rows[0]["input_text"], "p1");
  EXPECT_EQ(rows[1]["input_text"], "p4");
  EXPECT_NE(log.find("2 with an empty candidate"), std::string::npos) << log;
  EXPECT_NE(log.find("pairs.jsonl:2"), std::string::npos) << log;  // the first one, named
  // What train-reward reads: every line.
  EXPECT_EQ(data::read_preference_dataset(out).size(), 2u);
}

TEST(LabelPairs, TheJudgeIsNotAskedAboutAnEmptyCandidate) {
  auto dir = rlhf::testing::scratch_dir();
  const fs::path pairs = write_pairs(dir);
  const std::string model = rlhf::testing::tiny_judge(dir / "judge").string();
  const std::string out = (dir / "prefs.jsonl").string();
  int status = 0;
  const std::string log = capture(cli() + " label --pairs " + pairs.string() + " --judge " + model +
                                      " --keep-ties --threads 1 --quiet --output " + out,
                                  &status, true);
  ASSERT_EQ(status, 0) << log;
  auto rows = read_jsonl(out);
  ASSERT_EQ(rows.size(), 2u) << log;
  for (const auto& r : rows) {
    EXPECT_NE(r["input_text"], "p2");
    EXPECT_NE(r["input_text"], "p3");
  }
  EXPECT_EQ(data::read_preference_dataset(out).size(), 2u);
}

TEST(LabelPairs, AKeptTieIsMarkedAndReadByThePreferenceReader) {
  auto dir = rlhf::testing::scratch_dir();
  {
    std::ofstream f(dir / "pairs.jsonl");
    f << json{{"input_text", "p1"}, {"candidate_0", "x y"}, {"candidate_1", "z w"}}.dump() << "\n"  // both within: a tie
      << json{{"input_text", "p2"}, {"candidate_0", "a b c d e f g"}, {"candidate_1", "a b"}}.dump() << "\n";
  }
  const std::string out = (dir / "prefs.jsonl").string();
  int status = 0;
  const std::string log = capture(cli() + " label --pairs " + (dir / "pairs.jsonl").string() +
                                      " --rule max-words=5 --keep-ties --output " + out,
                                  &status, true);
  ASSERT_EQ(status, 0) << log;
  auto rows = read_jsonl(out);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].value("tie", false), true);  // a rule's tie: choice 0, a coin
  EXPECT_EQ(rows[0]["choice"], 0);
  EXPECT_DOUBLE_EQ(rows[0]["confidence"].get<double>(), 0.0);
  EXPECT_FALSE(rows[1].contains("tie"));
  EXPECT_EQ(rows[1]["choice"], 1);
  EXPECT_NE(log.find("1 ties kept"), std::string::npos) << log;
  EXPECT_EQ(data::read_preference_dataset(out).size(), 2u);
}

}  // namespace
}  // namespace rlhf::eval
