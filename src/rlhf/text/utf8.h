// UTF-8 at the byte level: token bytes need not be valid UTF-8 (a byte-level BPE token can
// hold half a character), so streaming output and user-visible text go through these.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace rlhf::text::utf8 {

// One step of decoding at s[i]. valid: len bytes form the code point cp. Otherwise len is
// the maximal subpart (Unicode §3.9) to replace by one U+FFFD, and truncated says that the
// subpart ran into the end of s, i.e. more bytes could still complete it.
struct Step {
  size_t len = 1;
  bool valid = false;
  bool truncated = false;
  char32_t cp = 0;
};
Step next(std::string_view s, size_t i);

void append(std::string& out, char32_t cp);

// Length of the longest prefix of s that does not end inside a character still waiting
// for its continuation bytes.
size_t complete_prefix(std::string_view s);

// s with each ill-formed subsequence replaced by U+FFFD.
std::string sanitize(std::string_view s);

// Python's str.isspace() (what Jinja's trim and str.strip() remove).
bool is_python_space(char32_t cp);

}  // namespace rlhf::text::utf8
