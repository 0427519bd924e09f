// Metrics of judged comparisons: who won (win rates, ties) and how well a judge agrees with
// human labels (accuracy, precision, recall, F1, Cohen's kappa). Pure functions, no model.
#pragma once
#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace rlhf::eval {

enum class Choice { A = 0, B = 1, Tie = 2 };
const char* choice_name(Choice c);  // "A", "B", "TIE"

// A human (or judge) label as a dataset gives it: "A"/"B"/"TIE" (any case; also "tie",
// "both", "none", ""), or the seed's choice 0/1 (0 = candidate_0 = response A). nullopt for
// anything else.
std::optional<Choice> parse_choice(const nlohmann::json& value);

struct WinRates {
  size_t n = 0, a = 0, b = 0, ties = 0;
  double a_rate = 0, b_rate = 0, tie_rate = 0;  // shares of n (0 when n = 0)
};
WinRates win_rates(const std::vector<Choice>& choices);

// Judge against humans, over the rows whose human label is A or B (human ties are left out,
// counted in human_ties). The judge's TIE is a third answer: never correct, never "A".
// precision, recall and F1 take "A is better" as the positive class. Cohen's kappa is over
// the three answers: (p_o - p_e) / (1 - p_e), p_e from the two sides' marginals; when
// p_e = 1 it is 1 if every row agrees, else 0.
struct Agreement {
  size_t n = 0;                   // rows compared
  size_t human_ties = 0;          // rows left out
  size_t judge_ties = 0;          // among the n
  std::array<std::array<size_t, 3>, 3> confusion{};  // [human][judge], index = Choice
  double accuracy = 0, precision = 0, recall = 0, f1 = 0, cohens_kappa = 0;
};
Agreement agreement(const std::vector<Choice>& judge, const std::vector<Choice>& human);

// One verdict from the judge's two readings of a pair: p_first = P(A better) with A shown
// first, p_second = P(A better) with A shown second (each P(letter of A) / (P("A") + P("B"))).
// prob_a is their mean; confidence = |2·prob_a - 1| (0 = cannot separate, 1 = certain). The
// choice is A or B by prob_a, and TIE when the two readings disagree on the winner (the
// judge followed the position, not the content) or prob_a is exactly 0.5.
struct Verdict {
  Choice choice = Choice::Tie;
  double prob_a = 0.5, confidence = 0;
};
Verdict combine_orders(double p_first, double p_second);

}  // namespace rlhf::eval
