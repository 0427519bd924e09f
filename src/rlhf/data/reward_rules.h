// Rule rewards: scalar rewards of a completion computed from its text (and its prompt row),
// without a reward model — the verifiable rewards of `train-policy --reward-rule`. Each rule:
//   max-words=N      1 when the completion has at most N words, else 0
//   regex=PATTERN    1 when PATTERN (PCRE2, anywhere in the text) matches, else 0
//   prefer-shorter   a length penalty: -(completion tokens) / (the length limit), in [-1, 0]
//   exact-match=F    1 when the completion's final answer (final_answer) equals the prompt
//                    row's field F (a string or a number), else 0
//                    (a whole GSM8K answer field works: its final answer is compared)
//   contains=F       1 when the completion contains the row's field F (trimmed), else 0
// An empty (or only whitespace) completion is no answer: it scores the rule's lowest value
// (0, or -1 for prefer-shorter). Words as text::count_words counts them (Python's
// str.split()), as `rlhf label --rule` does. Torch-free.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace rlhf::data {

// What a rule sees of one completion.
struct RuleInput {
  std::string_view completion;             // the decoded text, special tokens skipped
  int64_t tokens = 0;                      // its length in tokens
  int64_t max_tokens = 0;                  // the length limit it was generated under (> 0)
  const nlohmann::json* row = nullptr;     // its prompt row (the dataset line), for F
};

// The final answer of a completion: the text after its last "####" when it has one (GSM8K's
// form), else the contents of its last \boxed{...}, else its last non-empty line; trimmed of
// whitespace and of one trailing period. After "####" the answer is the first line with words
// on it. Answers compare equal as text, or as numbers when
// both parse as numbers ("42" equals "42.0" and "1,000" equals "1000").
std::string final_answer(std::string_view completion);
bool answers_equal(std::string_view answer, std::string_view expected);

// A compiled PCRE2 pattern (UTF-8), searched for anywhere in a text; invalid UTF-8 in a text
// (a generation cut inside a character) matches no character but does not stop the search.
// The one regex of the rule rewards and of the labeling rules (eval/rules.h).
class RulePattern {
 public:
  // Throws rlhf::Error "<what>: the pattern is empty" / "<what>: bad pattern at offset N: ...".
  static RulePattern compile(const std::string& pattern, const std::string& what);
  bool matches(std::string_view text) const;

  RulePattern(RulePattern&&) noexcept;
  RulePattern& operator=(RulePattern&&) noexcept;
  ~RulePattern();

 private:
  RulePattern();
  struct Code;
  std::unique_ptr<Code> code_;
  std::string what_;
};

class RewardRule {
 public:
  // Parses a rule spec; throws rlhf::Error naming `flag` and what is wrong.
  static RewardRule parse(const std::string& spec, const std::string& flag = "--reward-rule");
  double score(const RuleInput& in) const;
  // Throws rlhf::Error "<where>: field \"F\" ..." when the row lacks what the rule reads
  // (exact-match / contains: field F holding a string or a number). Other rules accept any row.
  void check_row(const nlohmann::json& row, const std::string& where) const;
  // The row field the rule reads ("" for none).
  const std::string& field() const { return field_; }
  const std::string& spec() const { return spec_; }

  enum class Kind { MaxWords, Regex, PreferShorter, ExactMatch, Contains };
  Kind kind() const { return kind_; }
  size_t max_words() const { return max_words_; }  // max-words: N
  bool matches(std::string_view text) const;        // regex: whether the pattern matches

  RewardRule(RewardRule&&) noexcept;
  RewardRule& operator=(RewardRule&&) noexcept;
  ~RewardRule();

 private:
  RewardRule();
  Kind kind_ = Kind::PreferShorter;
  std::string spec_, field_;
  size_t max_words_ = 0;
  std::unique_ptr<RulePattern> pattern_;
};

// Parses every spec (errors name `flag` and the spec).
std::vector<RewardRule> parse_reward_rules(const std::vector<std::string>& specs,
                                           const std::string& flag = "--reward-rule");

}  // namespace rlhf::data
