// The labeling rules of `rlhf label --rule` (max-words, regex, prefer-shorter) and their
// errors, against cases worked out by hand.
#include <gtest/gtest.h>

#include <string>

#include "rlhf/eval/rules.h"
#include "rlhf/util/error.h"

namespace rlhf::eval {
namespace {

constexpr Choice A = Choice::A, B = Choice::B, T = Choice::Tie;

TEST(EvalRules, MaxWords) {
  LabelRule r = LabelRule::parse("max-words=5");
  EXPECT_EQ(r.label("one two three", "one two three four five six").choice, A);
  EXPECT_EQ(r.label("a b c d e f g", "a b c d e").choice, B);        // exactly 5 is within
  EXPECT_EQ(r.label("a b", "c d").choice, T);                         // both within
  EXPECT_EQ(r.label("a b c d e f", "a b c d e f g").choice, T);       // neither
  EXPECT_DOUBLE_EQ(r.label("a", "a b c d e f").confidence, 1.0);
  EXPECT_DOUBLE_EQ(r.label("a", "b").confidence, 0.0);
  // Words as text::count_words counts them: a no-break space separates words.
  EXPECT_EQ(r.label("a\u00a0b\u00a0c\u00a0d\u00a0e\u00a0f", "a b").choice, B);
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

}  // namespace
}  // namespace rlhf::eval
