// The rule rewards of `train-policy --reward-rule` (max-words, regex, prefer-shorter,
// exact-match, contains), the final answer they read, their row checks and their errors,
// against cases worked out by hand.
#include <gtest/gtest.h>

#include <string>

#include "rlhf/data/reward_rules.h"
#include "rlhf/util/error.h"

namespace rlhf::data {
namespace {

double score(const RewardRule& r, std::string_view completion, const nlohmann::json* row = nullptr,
             int64_t tokens = 10, int64_t max_tokens = 40) {
  return r.score(RuleInput{completion, tokens, max_tokens, row});
}

std::string error_of(auto fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(RewardRules, MaxWords) {
  RewardRule r = RewardRule::parse("max-words=3");
  EXPECT_EQ(score(r, "one two three"), 1.0);  // exactly the limit is within
  EXPECT_EQ(score(r, "one two three four"), 0.0);
  EXPECT_EQ(score(r, "a\u00a0b\u00a0c\u00a0d"), 0.0);  // a no-break space separates words
  EXPECT_EQ(r.max_words(), 3u);
  EXPECT_EQ(r.field(), "");
}

TEST(RewardRules, RegexMatchesAnywhereAndMayHoldCommas) {
  RewardRule r = RewardRule::parse("regex=^(yes|no),\\s");
  EXPECT_EQ(score(r, "yes, it is"), 1.0);
  EXPECT_EQ(score(r, "no, never"), 1.0);
  EXPECT_EQ(score(r, "maybe, yes, it is"), 0.0);  // ^ anchors at the start of the text
  RewardRule any = RewardRule::parse("regex=[0-9]+");
  EXPECT_EQ(score(any, "the answer is 42 apples"), 1.0);
  EXPECT_EQ(score(any, "no digits"), 0.0);
  // A generation cut inside a character still matches elsewhere, and does not throw.
  EXPECT_EQ(score(any, "7 \xe2\x82"), 1.0);
  EXPECT_EQ(score(any, "x \xe2\x82"), 0.0);
}

TEST(RewardRules, PreferShorterIsMinusTheFractionOfTheLimit) {
  RewardRule r = RewardRule::parse("prefer-shorter");
  EXPECT_DOUBLE_EQ(score(r, "short", nullptr, 10, 40), -0.25);
  EXPECT_DOUBLE_EQ(score(r, "long", nullptr, 40, 40), -1.0);
  EXPECT_DOUBLE_EQ(score(r, "x", nullptr, 0, 40), 0.0);
  EXPECT_DOUBLE_EQ(score(r, "over", nullptr, 50, 40), -1.0);  // clamped to [-1, 0]
  EXPECT_NE(error_of([&] { score(r, "x", nullptr, 3, 0); }).find("length limit"), std::string::npos);
}

TEST(RewardRules, EmptyCompletionScoresTheLowestValue) {
  const nlohmann::json row = {{"answer", "42"}, {"name", "Ada"}};
  for (const char* spec : {"max-words=5", "regex=.*", "exact-match=answer", "contains=name"})
    for (const char* empty : {"", "  \n\t", "\u00a0"}) EXPECT_EQ(score(RewardRule::parse(spec), empty, &row), 0.0) << spec;
  EXPECT_EQ(score(RewardRule::parse("prefer-shorter"), "", nullptr, 0, 40), -1.0);
}

TEST(RewardRules, FinalAnswer) {
  EXPECT_EQ(final_answer("So 3 + 4 = 7.\n#### 7"), "7");
  EXPECT_EQ(final_answer("#### 5\nthen more\n#### 72\n"), "72");        // the last ####
  EXPECT_EQ(final_answer("work\n####\n\n  1,000 \nextra line"), "1,000");  // first line with words after it
  EXPECT_EQ(final_answer("so \\boxed{12} is it"), "12");
  EXPECT_EQ(final_answer("\\boxed{1} then \\boxed{\\frac{1}{2}}"), "\\frac{1}{2}");  // the last, braces balanced
  EXPECT_EQ(final_answer("\\boxed{3"), "3");                                      // unclosed: to the end
  EXPECT_EQ(final_answer("#### 9 and \\boxed{8}"), "9 and \\boxed{8}");           // #### first
  EXPECT_EQ(final_answer("Let me think.\nThe answer is Paris.\n\n  \n"), "The answer is Paris");
  EXPECT_EQ(final_answer("42."), "42");
  EXPECT_EQ(final_answer("42.."), "42.");  // one period only
  EXPECT_EQ(final_answer(""), "");
  EXPECT_EQ(final_answer(" \n \n"), "");
}

TEST(RewardRules, AnswersEqualAsTextOrAsNumbers) {
  EXPECT_TRUE(answers_equal("Paris", "Paris"));
  EXPECT_FALSE(answers_equal("paris", "Paris"));
  EXPECT_TRUE(answers_equal(" 42 ", "42"));
  EXPECT_TRUE(answers_equal("42", "42.0"));
  EXPECT_TRUE(answers_equal("1,000", "1000"));
  EXPECT_TRUE(answers_equal("1,234,567.5", "1234567.5"));
  EXPECT_TRUE(answers_equal("-3", "-3.00"));
  EXPECT_TRUE(answers_equal("1e3", "1,000"));
  EXPECT_FALSE(answers_equal("1,00", "100"));  // not groups of three
  EXPECT_FALSE(answers_equal("1,2", "12"));
  EXPECT_FALSE(answers_equal("42", "43"));
  EXPECT_FALSE(answers_equal("inf", "inf0"));
  EXPECT_FALSE(answers_equal("nan", "nan0"));
  EXPECT_FALSE(answers_equal("", ""));  // no answer equals nothing
  EXPECT_FALSE(answers_equal("0x10", "16"));
}

TEST(RewardRules, ExactMatchReadsTheRowField) {
  RewardRule r = RewardRule::parse("exact-match=answer");
  EXPECT_EQ(r.field(), "answer");
  const nlohmann::json text_row = {{"prompt", "q"}, {"answer", "1000"}};
  const nlohmann::json number_row = {{"prompt", "q"}, {"answer", 1000}};
  const nlohmann::json gsm8k_row = {{"prompt", "q"}, {"answer", "10 * 100 = 1000\n#### 1,000"}};
  for (const auto* row : {&text_row, &number_row, &gsm8k_row}) {
    EXPECT_EQ(score(r, "Ten boxes of 100.\n#### 1,000", row), 1.0) << *row;
    EXPECT_EQ(score(r, "It is \\boxed{1000}.", row), 1.0) << *row;
    EXPECT_EQ(score(r, "I think\n1000.", row), 1.0) << *row;
    EXPECT_EQ(score(r, "#### 999", row), 0.0) << *row;
    EXPECT_EQ(score(r, "1000 is it\nor not", row), 0.0) << *row;  // the last line is the answer
  }
  const nlohmann::json real_row = {{"answer", 2.5}};
  EXPECT_EQ(score(r, "#### 2.50", &real_row), 1.0);
  EXPECT_NE(error_of([&] { score(r, "1000"); }).find("no prompt row"), std::string::npos);
}

TEST(RewardRules, ContainsReadsTheRowField) {
  RewardRule r = RewardRule::parse("contains=name");
  const nlohmann::json row = {{"name", " Ada Lovelace "}};
  EXPECT_EQ(score(r, "It was Ada Lovelace, in 1843.", &row), 1.0);
  EXPECT_EQ(score(r, "It was Ada.", &row), 0.0);
  const nlohmann::json number = {{"name", 1843}};
  EXPECT_EQ(score(r, "in 1843.", &number), 1.0);
}

TEST(RewardRules, CheckRowNamesWhereAndTheField) {
  RewardRule r = RewardRule::parse("exact-match=answer");
  EXPECT_NO_THROW(r.check_row({{"answer", "7"}}, "p.jsonl:3"));
  EXPECT_NO_THROW(r.check_row({{"answer", 7}}, "p.jsonl:3"));
  EXPECT_EQ(error_of([&] { r.check_row({{"prompt", "q"}}, "p.jsonl:3"); }),
            "p.jsonl:3: field \"answer\" is missing; the rule exact-match=answer reads it");
  EXPECT_EQ(error_of([&] { r.check_row({{"answer", {1, 2}}}, "p.jsonl:4"); }),
            "p.jsonl:4: field \"answer\" must be a string or a number for the rule exact-match=answer, not array");
  EXPECT_EQ(error_of([&] { r.check_row({{"answer", "  "}}, "p.jsonl:5"); }),
            "p.jsonl:5: field \"answer\" is empty; the rule exact-match=answer compares against it");
  EXPECT_EQ(error_of([&] { r.check_row({{"answer", nullptr}}, "p.jsonl:6"); }).rfind("p.jsonl:6: field \"answer\"", 0), 0u);
  EXPECT_NE(error_of([&] { RewardRule::parse("contains=ref").check_row(nlohmann::json::array(), "x.jsonl:1"); })
                .find("x.jsonl:1"),
            std::string::npos);
  // Rules that read no field accept any row.
  for (const char* spec : {"max-words=5", "regex=a", "prefer-shorter"})
    EXPECT_NO_THROW(RewardRule::parse(spec).check_row({{"prompt", "q"}}, "p.jsonl:1")) << spec;
}

TEST(RewardRules, BadSpecsNameTheFlagAndTheSpec) {
  EXPECT_EQ(error_of([] { RewardRule::parse("max-words=0"); }),
            "--reward-rule max-words=0: the word limit must be a positive integer (e.g. max-words=50)");
  EXPECT_EQ(error_of([] { RewardRule::parse("regex=", "rewards"); }), "rewards regex=: the pattern is empty");
  EXPECT_EQ(error_of([] { RewardRule::parse("exact-match="); }),
            "--reward-rule exact-match=: the field name is empty (e.g. exact-match=answer)");
  EXPECT_EQ(error_of([] { RewardRule::parse("shortest"); }),
            "--reward-rule \"shortest\" is not a rule; use max-words=N, regex=PATTERN, prefer-shorter, "
            "exact-match=FIELD or contains=FIELD");
  for (const char* bad : {"max-words=", "max-words=5x", "max-words=-1", "regex=([", "contains=", "", "prefer-shorter=1"})
    EXPECT_EQ(error_of([&] { RewardRule::parse(bad); }).rfind("--reward-rule", 0), 0u) << bad;
  EXPECT_NE(error_of([] { RewardRule::parse("regex=(["); }).find("bad pattern at offset"), std::string::npos);
  // The list: every spec, the first bad one named.
  EXPECT_EQ(parse_reward_rules({"max-words=5", "regex=a,b", "prefer-shorter"}).size(), 3u);
  EXPECT_NE(error_of([] { parse_reward_rules({"max-words=5", "nope"}); }).find("\"nope\""), std::string::npos);
}

}  // namespace
}  // namespace rlhf::data
