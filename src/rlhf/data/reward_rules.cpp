#include "rlhf/data/reward_rules.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <optional>

#include "rlhf/text/words.h"
#include "rlhf/util/error.h"

namespace rlhf::data {
namespace {

constexpr std::string_view kSpace = " \t\r\n\f\v";

std::string_view trim(std::string_view s) {
  const size_t a = s.find_first_not_of(kSpace);
  if (a == std::string_view::npos) return {};
  return s.substr(a, s.find_last_not_of(kSpace) - a + 1);
}

// The first line of `s` with words on it ("" when none).
std::string_view first_line(std::string_view s) {
  size_t a = 0;
  while (a <= s.size()) {
    const size_t b = std::min(s.find('\n', a), s.size());
    const std::string_view line = s.substr(a, b - a);
    if (!text::is_blank(line)) return line;
    a = b + 1;
  }
  return {};
}

// The last line of `s` with words on it ("" when none).
std::string_view last_line(std::string_view s) {
  size_t end = s.size();
  while (true) {
    const size_t nl = end == 0 ? std::string_view::npos : s.rfind('\n', end - 1);
    const size_t a = nl == std::string_view::npos ? 0 : nl + 1;
    const std::string_view line = s.substr(a, end - a);
    if (!text::is_blank(line)) return line;
    if (nl == std::string_view::npos) return {};
    end = nl;
  }
}

// The contents of the last \boxed{...} (braces inside it balanced; an unclosed one runs to the
// end), or nothing when there is none.
std::optional<std::string_view> last_boxed(std::string_view s) {
  constexpr std::string_view open = "\\boxed{";
  const size_t at = s.rfind(open);
  if (at == std::string_view::npos) return std::nullopt;
  const size_t a = at + open.size();
  int depth = 1;
  for (size_t i = a; i < s.size(); ++i) {
    if (s[i] == '{') ++depth;
    else if (s[i] == '}' && --depth == 0) return s.substr(a, i - a);
  }
  return s.substr(a);
}

// A number as answers write it: an optional sign, digits with an optional fraction and
// exponent; the whole part may be grouped in threes by commas ("1,000", "12,345.5").
std::optional<double> parse_number(std::string_view s) {
  std::string plain;
  size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) plain += s[i++];
  const size_t whole_end = std::min(s.find_first_of(".eE", i), s.size());
  const std::string_view whole = s.substr(i, whole_end - i);
  if (whole.find(',') != std::string_view::npos) {
    // Groups of three after a first group of one to three digits.
    const size_t first = whole.find(',');
    if (first == 0 || first > 3) return std::nullopt;
    for (size_t g = first; g < whole.size(); g += 4)
      if (whole[g] != ',' || g + 4 > whole.size()) return std::nullopt;
    for (char ch : whole)
      if (ch != ',') plain += ch;
  } else {
    plain += whole;
  }
  plain += s.substr(whole_end);
  bool digit = false;
  for (char ch : plain) {
    if (ch >= '0' && ch <= '9') digit = true;
    else if (ch != '.' && ch != 'e' && ch != 'E' && ch != '+' && ch != '-') return std::nullopt;
  }
  if (!digit) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(plain.c_str(), &end);
  if (*end != '\0' || !std::isfinite(v)) return std::nullopt;
  return v;
}

// A row field's value as text: a string as it is, a number as JSON writes it.
std::optional<std::string> field_text(const nlohmann::json& row, const std::string& field) {
  if (!row.is_object()) return std::nullopt;
  auto it = row.find(field);
  if (it == row.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number()) return it->dump();
  return std::nullopt;
}

// The N of "max-words=N" (a positive integer).
size_t parse_word_limit(const std::string& spec, const std::string& flag) {
  const std::string n = spec.substr(spec.find('=') + 1);
  size_t v = 0;
  auto [p, ec] = std::from_chars(n.data(), n.data() + n.size(), v);
  if (n.empty() || ec != std::errc() || p != n.data() + n.size() || v == 0)
    fail("{} {}: the word limit must be a positive integer (e.g. max-words=50)", flag, spec);
  return v;
}

}  // namespace

std::string final_answer(std::string_view completion) {
  std::string_view a;
  if (const size_t at = completion.rfind("####"); at != std::string_view::npos) {
    a = first_line(completion.substr(at + 4));
  } else if (auto boxed = last_boxed(completion)) {
    a = *boxed;
  } else {
    a = last_line(completion);
  }
  a = trim(a);
  if (!a.empty() && a.back() == '.') a = trim(a.substr(0, a.size() - 1));
  return std::string(a);
}

bool answers_equal(std::string_view answer, std::string_view expected) {
  answer = trim(answer);
  expected = trim(expected);
  if (answer.empty() || expected.empty()) return false;
  if (answer == expected) return true;
  const auto x = parse_number(answer), y = parse_number(expected);
  if (!x || !y) return false;
  return std::fabs(*x - *y) <= 1e-9 * std::max({1.0, std::fabs(*x), std::fabs(*y)});
}

struct RulePattern::Code {
  pcre2_code* code = nullptr;
  ~Code() {
    if (code) pcre2_code_free(code);
  }
};

RulePattern::RulePattern() = default;
RulePattern::RulePattern(RulePattern&&) noexcept = default;
RulePattern& RulePattern::operator=(RulePattern&&) noexcept = default;
RulePattern::~RulePattern() = default;

RulePattern RulePattern::compile(const std::string& pattern, const std::string& what) {
  if (pattern.empty()) fail("{}: the pattern is empty", what);
  int err = 0;
  PCRE2_SIZE offset = 0;
  // Invalid UTF-8 in a text (a generation cut inside a character) never matches a character
  // but does not stop the search.
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &err, &offset, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    fail("{}: bad pattern at offset {}: {}", what, offset, reinterpret_cast<const char*>(msg));
  }
  RulePattern p;
  p.what_ = what;
  p.code_ = std::make_unique<Code>();
  p.code_->code = code;
  return p;
}

bool RulePattern::matches(std::string_view text) const {
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_->code, nullptr);
  const int rc = pcre2_match(code_->code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0, 0, md, nullptr);
  pcre2_match_data_free(md);
  if (rc < PCRE2_ERROR_NOMATCH) fail("{}: matching failed (PCRE2 error {})", what_, rc);
  return rc >= 0;
}

RewardRule::RewardRule() = default;
RewardRule::RewardRule(RewardRule&&) noexcept = default;
RewardRule& RewardRule::operator=(RewardRule&&) noexcept = default;
RewardRule::~RewardRule() = default;

RewardRule RewardRule::parse(const std::string& spec, const std::string& flag) {
  RewardRule r;
  r.spec_ = spec;
  auto field = [&](size_t prefix) {
    r.field_ = spec.substr(prefix);
    if (r.field_.empty())
      fail("{} {}: the field name is empty (e.g. {}answer)", flag, spec, spec.substr(0, prefix));
  };
  if (spec == "prefer-shorter") {
    r.kind_ = Kind::PreferShorter;
  } else if (spec.starts_with("max-words=")) {
    r.kind_ = Kind::MaxWords;
    r.max_words_ = parse_word_limit(spec, flag);
  } else if (spec.starts_with("regex=")) {
    r.kind_ = Kind::Regex;
    r.pattern_ = std::make_unique<RulePattern>(RulePattern::compile(spec.substr(6), flag + " " + spec));
  } else if (spec.starts_with("exact-match=")) {
    r.kind_ = Kind::ExactMatch;
    field(12);
  } else if (spec.starts_with("contains=")) {
    r.kind_ = Kind::Contains;
    field(9);
  } else {
    fail("{} \"{}\" is not a rule; use max-words=N, regex=PATTERN, prefer-shorter, exact-match=FIELD or "
         "contains=FIELD",
         flag, spec);
  }
  return r;
}

bool RewardRule::matches(std::string_view text) const { return pattern_ && pattern_->matches(text); }

void RewardRule::check_row(const nlohmann::json& row, const std::string& where) const {
  if (field_.empty()) return;
  if (!row.is_object()) fail("{}: the row is not a JSON object; the rule {} reads its field \"{}\"", where, spec_, field_);
  auto it = row.find(field_);
  if (it == row.end()) fail("{}: field \"{}\" is missing; the rule {} reads it", where, field_, spec_);
  if (!it->is_string() && !it->is_number())
    fail("{}: field \"{}\" must be a string or a number for the rule {}, not {}", where, field_, spec_, it->type_name());
  if (it->is_string() && text::is_blank(it->get<std::string>()))
    fail("{}: field \"{}\" is empty; the rule {} compares against it", where, field_, spec_);
}

double RewardRule::score(const RuleInput& in) const {
  const double lowest = kind_ == Kind::PreferShorter ? -1.0 : 0.0;
  if (text::is_blank(in.completion)) return lowest;
  switch (kind_) {
    case Kind::MaxWords: return size_t(text::count_words(in.completion)) <= max_words_ ? 1.0 : 0.0;
    case Kind::Regex: return pattern_->matches(in.completion) ? 1.0 : 0.0;
    case Kind::PreferShorter: {
      if (in.max_tokens <= 0) fail("rule {}: the length limit must be positive (it is {})", spec_, in.max_tokens);
      return -std::clamp(double(in.tokens) / double(in.max_tokens), 0.0, 1.0);
    }
    case Kind::ExactMatch:
    case Kind::Contains: {
      if (!in.row) fail("rule {}: no prompt row to read field \"{}\" from", spec_, field_);
      const auto expected = field_text(*in.row, field_);
      if (!expected) fail("rule {}: the prompt row has no string or number field \"{}\"", spec_, field_);
      if (kind_ == Kind::ExactMatch) return answers_equal(final_answer(in.completion), final_answer(*expected)) ? 1.0 : 0.0;
      const std::string_view needle = trim(*expected);
      return !needle.empty() && in.completion.find(needle) != std::string_view::npos ? 1.0 : 0.0;
    }
  }
  return lowest;
}

std::vector<RewardRule> parse_reward_rules(const std::vector<std::string>& specs, const std::string& flag) {
  std::vector<RewardRule> rules;
  rules.reserve(specs.size());
  for (const auto& s : specs) rules.push_back(RewardRule::parse(s, flag));
  return rules;
}

}  // namespace rlhf::data
