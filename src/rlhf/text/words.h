// Words of a text, the one rule every stage uses (the policy trainer's response length, the
// side-by-side table, the labeling rules): whitespace-separated runs, where whitespace is
// what Python's str.split() splits on (Unicode spaces included, so a no-break space
// separates words). Ill-formed UTF-8 bytes count as word characters. Torch-free.
#pragma once
#include <cstdint>
#include <string_view>

namespace rlhf::text {

// len(s.split()) in Python.
int64_t count_words(std::string_view s);

// No words: empty or only whitespace (Python's `not s.strip()`); such a text is treated as
// empty everywhere (dataset fields, labeled candidates, the labeling rules).
inline bool is_blank(std::string_view s) { return count_words(s) == 0; }

}  // namespace rlhf::text
