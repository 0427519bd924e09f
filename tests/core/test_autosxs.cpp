// AutoSxS without a model: the input reader (JSONL, array columns, human votes) and its
// errors, the judge's prompt, and the summary and files it writes.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "rlhf/eval/autosxs.h"
#include "rlhf/eval/metrics.h"
#include "rlhf/util/error.h"
#include "test_util.h"

namespace rlhf::eval {
namespace {

using nlohmann::json;
constexpr Choice A = Choice::A, B = Choice::B, T = Choice::Tie;

TEST(AutoSxsInput, JsonlArrayColumnsAndVotes) {
  auto dir = rlhf::testing::scratch_dir();
  {
    std::ofstream f(dir / "pairs.jsonl");
    f << R"({"id": 7, "input_text": "Summarize: x", "response_a": "a1", "response_b": "b1", "human": "B"})" "\n\n"
      << R"({"inputs": {"inputs_pretokenized": "ctx2"}, "response_a": "a2", "response_b": "b2", "human": 0})" "\n";
  }
  AutoSxsColumns cols;
  cols.human = {"human"};
  auto rows = read_autosxs_input((dir / "pairs.jsonl").string(), cols);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].id, "7");
  EXPECT_EQ(rows[0].context, "Summarize: x");
  EXPECT_EQ(rows[0].human, B);
  EXPECT_EQ(rows[1].id, "3");  // the line number
  EXPECT_EQ(rows[1].context, "ctx2");
  EXPECT_EQ(rows[1].human, A);

  // One JSON array, PandaLM's columns: two context fields, a three-annotator vote with a map.
  {
    std::ofstream f(dir / "panda.json");
    f << R"([{"idx": 0, "instruction": "Fix the grammar.", "input": "he go home", "response1": "He goes home.",
              "response2": "he go home", "annotator1": 1, "annotator2": 1, "annotator3": 2},
             {"idx": 1, "instruction": "Name a colour.", "input": "", "response1": "Blue", "response2": "Seven",
              "annotator1": 2, "annotator2": 0, "annotator3": 1},
             {"idx": 2, "instruction": "Add.", "input": "2+2", "response1": "5", "response2": "4",
              "annotator1": 2, "annotator2": 2, "annotator3": 0}])";
  }
  AutoSxsColumns pc;
  pc.id = "idx";
  pc.context = {"instruction", "input"};
  pc.response_a = "response1";
  pc.response_b = "response2";
  pc.human = {"annotator1", "annotator2", "annotator3"};
  pc.human_labels = parse_label_map("1=A,2=B,0=TIE");
  rows = read_autosxs_input((dir / "panda.json").string(), pc);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].context, "Fix the grammar.\n\nhe go home");
  EXPECT_EQ(rows[0].human, A);
  EXPECT_EQ(rows[1].context, "Name a colour.");  // an empty input is skipped
  EXPECT_EQ(rows[1].human, T);                   // no majority
  EXPECT_EQ(rows[2].human, B);
  EXPECT_EQ(rows[2].id, "2");
}

TEST(AutoSxsInput, ErrorsNameFileLineAndField) {
  auto dir = rlhf::testing::scratch_dir();
  auto expect_error = [&](const std::string& content, const std::string& needle, AutoSxsColumns cols = {}) {
    std::ofstream(dir / "bad.jsonl") << content;
    try {
      read_autosxs_input((dir / "bad.jsonl").string(), cols);
      ADD_FAILURE() << "accepted: " << content;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error("{\"input_text\": \"x\", \"response_a\": \"a\", \"response_b\": \"b\"}\n{oops\n", "bad.jsonl:2");
  expect_error("{\"input_text\": \"x\", \"response_a\": \"a\"}\n", "bad.jsonl:1: field 'response_b' is missing");
  expect_error("{\"input_text\": \"x\", \"response_a\": 3, \"response_b\": \"b\"}\n", "field 'response_a' must be a string");
  expect_error("{\"response_a\": \"a\", \"response_b\": \"b\"}\n", "field 'input_text' is missing");
  AutoSxsColumns h;
  h.human = {"pref"};
  expect_error("{\"input_text\": \"x\", \"response_a\": \"a\", \"response_b\": \"b\", \"pref\": \"maybe\"}\n",
               "field 'pref' is \"maybe\"", h);
  expect_error("", "holds no rows");
  for (const char* bad : {"1=A,2", "1=C", "=A", ""}) EXPECT_THROW(parse_label_map(bad), Error) << bad;
}

TEST(AutoSxsPrompt, ShowsBothResponsesAndTheCriteria) {
  std::string p = judge_prompt(JudgeTask::Summarization, "TEXT", "first one", "second one");
  EXPECT_LT(p.find("TEXT"), p.find("Response A:\nfirst one"));
  EXPECT_LT(p.find("Response A:\nfirst one"), p.find("Response B:\nsecond one"));
  EXPECT_NE(p.find("Grounded"), std::string::npos);
  EXPECT_NE(p.find("Brief"), std::string::npos);
  EXPECT_TRUE(p.ends_with("Answer with one letter."));
  std::string q = judge_prompt(JudgeTask::QuestionAnswering, "Q", "x", "y");
  EXPECT_NE(q.find("Relevant"), std::string::npos);
  EXPECT_EQ(q.find("Brief"), std::string::npos);
  EXPECT_EQ(parse_task("qa"), JudgeTask::QuestionAnswering);
  EXPECT_THROW(parse_task("translation"), Error);
}

TEST(AutoSxsOutput, SummaryAndFiles) {
  auto dir = rlhf::testing::scratch_dir();
  std::vector<Judgment> js;
  auto add = [&](Choice c, std::optional<Choice> human) {
    Judgment j;
    j.id = std::to_string(js.size());
    j.verdict.choice = c;
    j.verdict.confidence = 0.5;
    j.human = human;
    js.push_back(j);
  };
  add(A, A);
  add(B, A);
  add(T, B);
  add(A, T);
  js[0].verdict.prob_a = 0.8;  // A, right
  js[2].verdict.prob_a = 0.4;  // the tie leans to B: right by probability
  AutoSxsSummary s = summarize(js, "judge-x", JudgeTask::Summarization);
  EXPECT_EQ(s.wins.a, 2u);
  ASSERT_TRUE(s.agreement.has_value());
  EXPECT_EQ(s.agreement->n, 3u);
  EXPECT_NEAR(s.agreement->accuracy, 1.0 / 3.0, 1e-12);
  // By probability alone (0.5 is a tie): row 0 right, row 1 (0.5) a tie, row 2 right.
  ASSERT_TRUE(s.agreement_by_probability.has_value());
  EXPECT_EQ(s.agreement_by_probability->judge_ties, 1u);
  EXPECT_NEAR(s.agreement_by_probability->accuracy, 2.0 / 3.0, 1e-12);
  const std::string out = (dir / "out").string();
  write_autosxs_output(out, js, s);
  json m = json::parse(rlhf::testing::read_text(dir / "out" / "metrics.json"));
  EXPECT_EQ(m["model_a_wins"], 2);
  EXPECT_NEAR(m["human_agreement"]["accuracy"].get<double>(), 1.0 / 3.0, 1e-12);
  std::ifstream f(dir / "out" / "judgments.jsonl");
  std::string line;
  size_t n = 0;
  while (std::getline(f, line)) {
    json row = json::parse(line);
    EXPECT_TRUE(row.contains("choice") && row.contains("confidence") && row.contains("explanation"));
    ++n;
  }
  EXPECT_EQ(n, 4u);
  // A second run replaces its own earlier output; anything else is refused.
  write_autosxs_output(out, js, s);
  std::filesystem::create_directories(dir / "other");
  std::ofstream(dir / "other" / "keep.txt") << "x";
  EXPECT_THROW(write_autosxs_output((dir / "other").string(), js, s), Error);
  EXPECT_TRUE(std::filesystem::exists(dir / "other" / "keep.txt"));
}

// Judgments from the two readings alone, as the judge combines them.
std::vector<Judgment> judged(const std::vector<std::pair<double, double>>& readings) {
  std::vector<Judgment> js;
  for (const auto& [first, second] : readings) {
    Judgment j;
    j.id = std::to_string(js.size() + 1);
    j.prob_a_first = first;
    j.prob_a_second = second;
    j.verdict = combine_orders(first, second);
    js.push_back(j);
  }
  return js;
}

TEST(AutoSxsPositionConsistency, BothOrdersMustChooseTheSameResponse) {
  // Both A, both B: consistent. Opposite choices: not. A 0.5 chooses neither, even when the
  // other order decides (the verdict is then that order's choice, not a tie).
  const auto js = judged({{0.9, 0.6}, {0.2, 0.4}, {0.8, 0.3}, {0.1, 0.7}, {0.5, 0.8}, {0.5, 0.5}, {0.3, 0.5}});
  EXPECT_EQ(js[4].verdict.choice, A);
  const AutoSxsSummary s = summarize(js, "judge", JudgeTask::Summarization);
  EXPECT_EQ(s.position_consistency_pairs, 7u);
  EXPECT_NEAR(s.position_consistency, 2.0 / 7.0, 1e-12);
  EXPECT_NE(s.judge_warning.find("28.6% of 7 pairs"), std::string::npos) << s.judge_warning;
  EXPECT_NE(s.judge_warning.find("--judge"), std::string::npos);
  EXPECT_NE(s.judge_warning.find("autosxs.judge"), std::string::npos);
  EXPECT_NE(format_summary(s).find("position consistency 28.6% of 7 pairs"), std::string::npos) << format_summary(s);
  const json m = s.to_json();
  EXPECT_NEAR(m.at("position_consistency").get<double>(), 2.0 / 7.0, 1e-12);
  EXPECT_EQ(m.at("position_consistency_pairs"), 7);
  EXPECT_EQ(m.at("judge_warning"), s.judge_warning);

  // A judge that always prefers the response shown first: all ties, consistency 0.
  const AutoSxsSummary first = summarize(judged({{0.7, 0.3}, {0.6, 0.2}}), "judge", JudgeTask::Summarization);
  EXPECT_EQ(first.wins.ties, 2u);
  EXPECT_EQ(first.position_consistency, 0.0);
  EXPECT_FALSE(first.judge_warning.empty());
}

TEST(AutoSxsPositionConsistency, TheWarningStartsBelowTheThreshold) {
  ASSERT_EQ(kMinPositionConsistency, 0.5);
  // 2 of 4 consistent: at the threshold, no warning; 1 of 4: below it.
  AutoSxsSummary at = summarize(judged({{0.9, 0.8}, {0.2, 0.1}, {0.9, 0.1}, {0.5, 0.5}}), "j", JudgeTask::Summarization);
  EXPECT_EQ(at.position_consistency, 0.5);
  EXPECT_TRUE(at.judge_warning.empty()) << at.judge_warning;
  EXPECT_FALSE(at.to_json().contains("judge_warning"));
  AutoSxsSummary below = summarize(judged({{0.9, 0.8}, {0.2, 0.6}, {0.9, 0.1}, {0.5, 0.5}}), "j", JudgeTask::Summarization);
  EXPECT_EQ(below.position_consistency, 0.25);
  EXPECT_NE(below.judge_warning.find("25.0% of 4 pairs (below 50%)"), std::string::npos) << below.judge_warning;
  // No pairs: nothing to warn about.
  AutoSxsSummary none = summarize({}, "j", JudgeTask::Summarization);
  EXPECT_EQ(none.position_consistency_pairs, 0u);
  EXPECT_TRUE(none.judge_warning.empty());

  // metrics.json carries the keys.
  auto dir = rlhf::testing::scratch_dir();
  write_autosxs_output((dir / "out").string(), judged({{0.9, 0.8}, {0.2, 0.6}, {0.9, 0.1}, {0.5, 0.5}}), below);
  const json m = json::parse(rlhf::testing::read_text(dir / "out" / "metrics.json"));
  EXPECT_EQ(m.at("position_consistency"), 0.25);
  EXPECT_EQ(m.at("position_consistency_pairs"), 4);
  EXPECT_EQ(m.at("judge_warning"), below.judge_warning);
}

}  // namespace
}  // namespace rlhf::eval
