#include "rlhf/annotate/agreement.h"

#include <algorithm>
#include <cmath>

namespace rlhf::annotate {

Kappa cohen_kappa(const std::vector<std::pair<int, int>>& votes, int categories) {
  Kappa k;
  k.items = votes.size();
  if (votes.empty() || categories < 1) return k;
  std::vector<double> first(categories, 0.0), second(categories, 0.0);
  double agree = 0;
  for (const auto& [a, b] : votes) {
    if (a < 0 || a >= categories || b < 0 || b >= categories) continue;
    first[a] += 1;
    second[b] += 1;
    agree += a == b;
  }
  const double n = static_cast<double>(votes.size());
  const double p_o = agree / n;
  double p_e = 0;
  for (int c = 0; c < categories; ++c) p_e += (first[c] / n) * (second[c] / n);
  if (std::abs(1 - p_e) < 1e-12) return k;  // both gave one and the same category throughout
  k.value = (p_o - p_e) / (1 - p_e);
  return k;
}

Kappa fleiss_kappa(const std::vector<std::vector<int>>& counts) {
  Kappa k;
  size_t categories = 0;
  for (const auto& row : counts) categories = std::max(categories, row.size());
  std::vector<double> totals(categories, 0.0);
  double all_votes = 0, sum_p = 0;
  for (const auto& row : counts) {
    double n = 0;
    for (int c : row) n += c;
    if (n < 2) continue;
    double same = 0;
    for (size_t c = 0; c < row.size(); ++c) {
      same += double(row[c]) * (row[c] - 1);
      totals[c] += row[c];
    }
    sum_p += same / (n * (n - 1));
    all_votes += n;
    ++k.items;
  }
  if (k.items == 0) return k;
  const double p_bar = sum_p / double(k.items);
  double p_e = 0;
  for (double t : totals) p_e += (t / all_votes) * (t / all_votes);
  if (std::abs(1 - p_e) < 1e-12) return k;
  k.value = (p_bar - p_e) / (1 - p_e);
  return k;
}

}  // namespace rlhf::annotate
