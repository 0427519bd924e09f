// Judged-comparison math (win rates, agreement with humans, the two-order verdict), the
// labeling rules and the AutoSxS input reader, against cases worked out by hand.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "rlhf/eval/autosxs.h"
#include "rlhf/eval/metrics.h"
#include "rlhf/eval/rules.h"
#include "rlhf/util/error.h"
#include "test_util.h"

namespace rlhf::eval {
namespace {

using nlohmann::json;
constexpr Choice A = Choice::A, B = Choice::B, T = Choice::Tie;

TEST(EvalMetrics, WinRates) {
  WinRates w = win_rates({A, A, B, T, A, B, T, A});
  EXPECT_EQ(w.n, 8u);
  EXPECT_EQ(w.a, 4u);
  EXPECT_EQ(w.b, 2u);
  EXPECT_EQ(w.ties, 2u);
  EXPECT_DOUBLE_EQ(w.a_rate, 0.5);
  EXPECT_DOUBLE_EQ(w.b_rate, 0.25);
  EXPECT_DOUBLE_EQ(w.tie_rate, 0.25);
  EXPECT_EQ(win_rates({}).n, 0u);
  EXPECT_DOUBLE_EQ(win_rates({}).a_rate, 0.0);
}

TEST(EvalMetrics, AgreementTwoClasses) {
  // human: A A A A B B B B B B ; judge: A A A B A B B B B A
  // confusion [human][judge]: A->A 3, A->B 1, B->A 2, B->B 4.
  // accuracy 7/10; precision(A) 3/5; recall(A) 3/4; F1 = 2·0.6·0.75/1.35 = 2/3.
  // p_e = (4/10)(5/10) + (6/10)(5/10) = 0.5; kappa = (0.7 - 0.5) / 0.5 = 0.4.
  std::vector<Choice> human = {A, A, A, A, B, B, B, B, B, B};
  std::vector<Choice> judge = {A, A, A, B, A, B, B, B, B, A};
  Agreement g = agreement(judge, human);
  EXPECT_EQ(g.n, 10u);
  EXPECT_EQ(g.confusion[0][0], 3u);
  EXPECT_EQ(g.confusion[0][1], 1u);
  EXPECT_EQ(g.confusion[1][0], 2u);
  EXPECT_EQ(g.confusion[1][1], 4u);
  EXPECT_NEAR(g.accuracy, 0.7, 1e-12);
  EXPECT_NEAR(g.precision, 0.6, 1e-12);
  EXPECT_NEAR(g.recall, 0.75, 1e-12);
  EXPECT_NEAR(g.f1, 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(g.cohens_kappa, 0.4, 1e-12);
}

TEST(EvalMetrics, AgreementWithTies) {
  // Human ties are left out; the judge's ties count as a third answer.
  // kept: human A A B B B, judge A T B T A -> confusion A->A 1, A->T 1, B->B 1, B->T 1, B->A 1.
  // accuracy 2/5; precision(A) = 1/2; recall(A) = 1/2; F1 = 1/2.
  // marginals: human A 2/5, B 3/5, T 0; judge A 2/5, B 1/5, T 2/5 -> p_e = 0.16 + 0.12 = 0.28;
  // kappa = (0.4 - 0.28) / 0.72 = 1/6.
  std::vector<Choice> human = {A, T, A, B, B, T, B};
  std::vector<Choice> judge = {A, A, T, B, T, B, A};
  Agreement g = agreement(judge, human);
  EXPECT_EQ(g.n, 5u);
  EXPECT_EQ(g.human_ties, 2u);
  EXPECT_EQ(g.judge_ties, 2u);
  EXPECT_NEAR(g.accuracy, 0.4, 1e-12);
  EXPECT_NEAR(g.precision, 0.5, 1e-12);
  EXPECT_NEAR(g.recall, 0.5, 1e-12);
  EXPECT_NEAR(g.f1, 0.5, 1e-12);
  EXPECT_NEAR(g.cohens_kappa, 1.0 / 6.0, 1e-12);
}

TEST(EvalMetrics, KappaEdgeCases) {
  // Perfect agreement on one class: p_e = 1, kappa defined as 1.
  EXPECT_DOUBLE_EQ(agreement({A, A, A}, {A, A, A}).cohens_kappa, 1.0);
  // Perfect agreement on two classes: kappa 1.
  EXPECT_NEAR(agreement({A, B, A, B}, {A, B, A, B}).cohens_kappa, 1.0, 1e-12);
  // Systematic disagreement: p_o = 0, p_e = 0.5 -> kappa -1.
  EXPECT_NEAR(agreement({B, A, B, A}, {A, B, A, B}).cohens_kappa, -1.0, 1e-12);
  // A judge that always says A against balanced humans: kappa 0, recall 1, precision 0.5.
  Agreement g = agreement({A, A, A, A}, {A, B, A, B});
  EXPECT_NEAR(g.cohens_kappa, 0.0, 1e-12);
  EXPECT_NEAR(g.recall, 1.0, 1e-12);
  EXPECT_NEAR(g.precision, 0.5, 1e-12);
  // Only human ties: nothing compared.
  EXPECT_EQ(agreement({A, B}, {T, T}).n, 0u);
}

TEST(EvalMetrics, ParseChoice) {
  EXPECT_EQ(parse_choice(json("A")), A);
  EXPECT_EQ(parse_choice(json(" b ")), B);
  EXPECT_EQ(parse_choice(json("tie")), T);
  EXPECT_EQ(parse_choice(json(0)), A);  // the seed's choice: 0 = candidate_0 = A
  EXPECT_EQ(parse_choice(json(1)), B);
  EXPECT_FALSE(parse_choice(json(2)).has_value());
  EXPECT_FALSE(parse_choice(json("C")).has_value());
  EXPECT_FALSE(parse_choice(json(true)).has_value());
}

TEST(EvalMetrics, BothOrdersCancelPositionBias) {
  // Agreeing readings: the mean decides, confidence = |2p - 1|.
  Verdict v = combine_orders(0.9, 0.7);
  EXPECT_EQ(v.choice, A);
  EXPECT_NEAR(v.prob_a, 0.8, 1e-12);
  EXPECT_NEAR(v.confidence, 0.6, 1e-12);
  v = combine_orders(0.2, 0.4);
  EXPECT_EQ(v.choice, B);
  EXPECT_NEAR(v.confidence, 0.4, 1e-12);
  // A judge that always picks the first position: P(A) = 0.9 when A is first, 0.1 when A is
  // second: the readings disagree -> a tie, confidence 0.
  v = combine_orders(0.9, 0.1);
  EXPECT_EQ(v.choice, T);
  EXPECT_NEAR(v.confidence, 0.0, 1e-12);
  // Disagreeing but lopsided readings are still a tie (the position decided one of them).
  v = combine_orders(0.95, 0.45);
  EXPECT_EQ(v.choice, T);
  EXPECT_NEAR(v.prob_a, 0.7, 1e-12);
  // One undecided reading: the other decides.
  EXPECT_EQ(combine_orders(0.5, 0.8).choice, A);
  EXPECT_EQ(combine_orders(0.5, 0.5).choice, T);
}

TEST(EvalRules, MaxWords) {
  LabelRule r = LabelRule::parse("max-words=5");
  EXPECT_EQ(r.label("one two three", "one two three four five six").choice, A);
  EXPECT_EQ(r.label("a b c d e f g", "a b c d e").choice, B);        // exactly 5 is within
  EXPECT_EQ(r.label("a b", "c d").choice, T);                         // both within
  EXPECT_EQ(r.label("a b c d e f", "a b c d e f g").choice, T);       // neither
  EXPECT_DOUBLE_EQ(r.label("a", "a b c d e f").confidence, 1.0);
  EXPECT_DOUBLE_EQ(r.label("a", "b").confidence, 0.0);
  EXPECT_EQ(count_words("  tabs\tand\nnewlines  count  "), 4);
}

TEST(EvalRules, RegexAndPreferShorter) {
  LabelRule r = LabelRule::parse("regex=^I ");
  EXPECT_EQ(r.label("I lost my keys.", "The poster lost keys.").choice, A);
  EXPECT_EQ(r.label("Keys lost.", "I lost them").choice, B);
  EXPECT_EQ(r.label("I a", "I b").choice, T);
  LabelRule s = LabelRule::parse("prefer-shorter");
  RuleLabel l = s.label("one two three four", "one two");
  EXPECT_EQ(l.choice, B);
  EXPECT_NEAR(l.confidence, 0.5, 1e-12);
  EXPECT_EQ(s.label("abc def", "abcdef gh").choice, A);  // same words: fewer characters
  EXPECT_EQ(s.label("abc", "xyz").choice, T);
}

TEST(EvalRules, BadSpecs) {
  for (const char* bad : {"max-words=", "max-words=0", "max-words=5x", "regex=", "regex=([", "shortest", ""}) {
    try {
      LabelRule::parse(bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--rule"), std::string::npos) << e.what();
    }
  }
}

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
  // By probability alone (0.5 counts as B): row 0 right, row 1 (0.5) wrong, row 2 right.
  ASSERT_TRUE(s.agreement_by_probability.has_value());
  EXPECT_EQ(s.agreement_by_probability->judge_ties, 0u);
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

}  // namespace
}  // namespace rlhf::eval
