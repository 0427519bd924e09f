// Pre-tokenization: the regex split that decides which bytes a byte-level BPE may merge
// together. Each tokenizer family has its own pattern (see the table in pretokenizer.cpp);
// "smollm"/"starcoder" first split every digit alone, as HF's Digits(individual_digits).
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rlhf::text {

class PreTokenizer {
 public:
  // Throws rlhf::Error for a family not in the table.
  explicit PreTokenizer(std::string_view family);
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;

  // Appends the pieces of text to out, in order; together they are exactly text. Bytes that
  // are not valid UTF-8 match no pattern and become pieces of their own.
  void split(std::string_view text, std::vector<std::string_view>& out) const;

  // The family whose split regex is exactly pattern (as tokenizer.json spells it), if any.
  static std::optional<std::string> family_of_regex(std::string_view pattern);

 private:
  struct Regex;
  std::unique_ptr<Regex> pattern_;
  std::unique_ptr<Regex> digit_;  // set when digits are split off first
};

}  // namespace rlhf::text
