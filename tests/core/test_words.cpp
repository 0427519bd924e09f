// Words of a text, the one rule of the trainer's response lengths, the side-by-side table
// and the labeling rules: Python's len(s.split()), Unicode spaces included.
#include <gtest/gtest.h>

#include "rlhf/text/words.h"

namespace rlhf::text {
namespace {

TEST(Words, CountsWhitespaceSeparatedWords) {
  EXPECT_EQ(count_words(""), 0);
  EXPECT_EQ(count_words("   \n\t"), 0);
  EXPECT_EQ(count_words("one"), 1);
  EXPECT_EQ(count_words("  tabs\tand\nnewlines  count  "), 4);
  EXPECT_EQ(count_words("a,b c"), 2);
  EXPECT_EQ(count_words("\v\f\r\x1c\x1d\x1e\x1fx"), 1);  // ASCII controls str.split() splits on
}

TEST(Words, UnicodeSpacesSeparateWordsAsPythonSplits) {
  EXPECT_EQ(count_words("  four  five\tsix\u00a0seven\n"), 4);  // no-break space
  EXPECT_EQ(count_words("one\u3000two"), 2);                    // ideographic space
  EXPECT_EQ(count_words("one\u2028two\u2029three"), 3);         // line and paragraph separators
  EXPECT_EQ(count_words("one\u2003two\u0085three"), 3);         // em space, next line
  EXPECT_EQ(count_words("caf\u00e9 na\u00efve"), 2);            // letters outside ASCII are word characters
  EXPECT_EQ(count_words("one\u200btwo"), 1);                    // a zero-width space is not whitespace in Python
}

TEST(Words, IllFormedBytesAreWordCharacters) {
  EXPECT_EQ(count_words("\xff\xfe"), 1);
  EXPECT_EQ(count_words("a \xc2"), 2);     // a character cut short at the end
  EXPECT_EQ(count_words("a\xc2\xa0" "b"), 2);  // ...but a whole no-break space still separates
}

}  // namespace
}  // namespace rlhf::text
