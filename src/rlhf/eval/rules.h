// Labeling rules for `rlhf label --rule`: quick, checkable preferences without a judge model.
//   max-words=N     the candidate with at most N words wins; both or neither: a tie
//   regex=PATTERN   the candidate that matches PATTERN (PCRE2, anywhere in the text) wins;
//                   both or neither: a tie
//   prefer-shorter  the candidate with fewer words wins (then fewer characters); equal: a tie
// Whatever the rule, an empty (or only whitespace) candidate is no answer and never wins: it
// loses to a real one with confidence 1, and two of them tie.
// Words as text::count_words counts them (Python's str.split()). A decisive label has
// confidence 1, except prefer-shorter, whose confidence is the relative difference in length
// (1 - shorter/longer). The specs are parsed and matched as the rule rewards do
// (data/reward_rules.h); the rules that read a prompt row's field are not labeling rules.
#pragma once
#include <string>

#include "rlhf/data/reward_rules.h"
#include "rlhf/eval/metrics.h"

namespace rlhf::eval {

struct RuleLabel {
  Choice choice = Choice::Tie;  // A = candidate_0, B = candidate_1
  double confidence = 0;
};

class LabelRule {
 public:
  // Parses a rule spec; throws rlhf::Error naming what is wrong.
  static LabelRule parse(const std::string& spec);
  RuleLabel label(const std::string& candidate_0, const std::string& candidate_1) const;
  const std::string& spec() const { return rule_.spec(); }

 private:
  explicit LabelRule(data::RewardRule rule) : rule_(std::move(rule)) {}
  data::RewardRule rule_;
};

}  // namespace rlhf::eval
