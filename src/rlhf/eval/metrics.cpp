#include "rlhf/eval/metrics.h"

#include <algorithm>
#include <cctype>
#include <cmath>

namespace rlhf::eval {

const char* choice_name(Choice c) {
  switch (c) {
    case Choice::A: return "A";
    case Choice::B: return "B";
    case Choice::Tie: return "TIE";
  }
  return "?";
}

std::optional<Choice> parse_choice(const nlohmann::json& value) {
  if (value.is_number_integer()) {
    const auto v = value.get<int64_t>();
    if (v == 0) return Choice::A;
    if (v == 1) return Choice::B;
    return std::nullopt;
  }
  if (!value.is_string()) return std::nullopt;
  std::string s = value.get<std::string>();
  s.erase(std::remove_if(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c); }), s.end());
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
  if (s == "A") return Choice::A;
  if (s == "B") return Choice::B;
  if (s == "TIE" || s == "BOTH" || s == "NONE" || s.empty()) return Choice::Tie;
  return std::nullopt;
}

WinRates win_rates(const std::vector<Choice>& choices) {
  WinRates w;
  w.n = choices.size();
  for (Choice c : choices) (c == Choice::A ? w.a : c == Choice::B ? w.b : w.ties)++;
  if (w.n > 0) {
    w.a_rate = double(w.a) / w.n;
    w.b_rate = double(w.b) / w.n;
    w.tie_rate = double(w.ties) / w.n;
  }
  return w;
}

Agreement agreement(const std::vector<Choice>& judge, const std::vector<Choice>& human) {
  Agreement g;
  const size_t n = std::min(judge.size(), human.size());
  for (size_t i = 0; i < n; ++i) {
    if (human[i] == Choice::Tie) {
      g.human_ties++;
      continue;
    }
    g.confusion[size_t(human[i])][size_t(judge[i])]++;
    g.n++;
    if (judge[i] == Choice::Tie) g.judge_ties++;
  }
  if (g.n == 0) return g;
  const auto& m = g.confusion;
  const double total = double(g.n);
  const double agree = double(m[0][0] + m[1][1] + m[2][2]);
  g.accuracy = agree / total;
  // Positive class: A.
  const double tp = double(m[0][0]);
  const double predicted_a = double(m[0][0] + m[1][0] + m[2][0]);
  const double human_a = double(m[0][0] + m[0][1] + m[0][2]);
  g.precision = predicted_a > 0 ? tp / predicted_a : 0;
  g.recall = human_a > 0 ? tp / human_a : 0;
  g.f1 = g.precision + g.recall > 0 ? 2 * g.precision * g.recall / (g.precision + g.recall) : 0;
  double expected = 0;
  for (size_t k = 0; k < 3; ++k) {
    const double row = double(m[k][0] + m[k][1] + m[k][2]);
    const double col = double(m[0][k] + m[1][k] + m[2][k]);
    expected += (row / total) * (col / total);
  }
  if (1.0 - expected <= 1e-12) g.cohens_kappa = g.accuracy >= 1.0 ? 1.0 : 0.0;
  else g.cohens_kappa = (g.accuracy - expected) / (1.0 - expected);
  return g;
}

Verdict combine_orders(double p_first, double p_second) {
  Verdict v;
  v.prob_a = 0.5 * (p_first + p_second);
  v.confidence = std::min(1.0, std::abs(2.0 * v.prob_a - 1.0));
  const bool disagree = (p_first - 0.5) * (p_second - 0.5) < 0;
  if (disagree || v.prob_a == 0.5) v.choice = Choice::Tie;
  else v.choice = v.prob_a > 0.5 ? Choice::A : Choice::B;
  return v;
}

}  // namespace rlhf::eval
