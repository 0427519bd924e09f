// Agreement between annotators beyond chance (docs/annotate.md): Cohen's κ for two, Fleiss'
// κ for more. Votes are categories 0..C-1 (for pairs: candidate 0, candidate 1, tie); a
// skipped item gives no vote.
#pragma once
#include <cstddef>
#include <optional>
#include <utility>
#include <vector>

namespace rlhf::annotate {

struct Kappa {
  std::optional<double> value;  // absent: no item with two votes, or every vote in one category
  size_t items = 0;             // the items it was computed over
};

// Cohen's κ = (p_o - p_e) / (1 - p_e) over items both annotators voted on: p_o the share
// where they agree, p_e = sum_c p1(c) p2(c) from each one's shares of the categories.
Kappa cohen_kappa(const std::vector<std::pair<int, int>>& votes, int categories);

// Fleiss' κ = (P - P_e) / (1 - P_e) over items with at least two votes: `counts[i][c]` is how
// many voted c on item i; P the mean of sum_c n_ic (n_ic - 1) / (n_i (n_i - 1)), P_e = sum_c
// p_c^2 with p_c the share of all votes in c. Items with one vote or none are left out.
Kappa fleiss_kappa(const std::vector<std::vector<int>>& counts);

}  // namespace rlhf::annotate
