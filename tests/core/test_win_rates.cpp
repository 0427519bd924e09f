// Metrics of judged comparisons against cases worked out by hand: win rates, agreement with
// human labels (accuracy, precision, recall, F1, Cohen's kappa), reading a choice, and the
// verdict of both orders.
#include <gtest/gtest.h>

#include "rlhf/eval/metrics.h"

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

}  // namespace
}  // namespace rlhf::eval
