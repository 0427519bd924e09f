#include "rlhf/eval/rules.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cctype>
#include <charconv>

#include "rlhf/text/words.h"
#include "rlhf/util/error.h"

namespace rlhf::eval {

struct LabelRule::Pattern {
  pcre2_code* code = nullptr;
  ~Pattern() {
    if (code) pcre2_code_free(code);
  }
  bool matches(const std::string& s) const {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
    const int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0, 0, md, nullptr);
    pcre2_match_data_free(md);
    if (rc < -1) fail("--rule regex: matching failed (PCRE2 error {})", rc);
    return rc >= 0;
  }
};

LabelRule::LabelRule() = default;
LabelRule::LabelRule(LabelRule&&) noexcept = default;
LabelRule& LabelRule::operator=(LabelRule&&) noexcept = default;
LabelRule::~LabelRule() = default;

LabelRule LabelRule::parse(const std::string& spec) {
  LabelRule r;
  r.spec_ = spec;
  if (spec == "prefer-shorter") {
    r.kind_ = Kind::PreferShorter;
  } else if (spec.starts_with("max-words=")) {
    r.kind_ = Kind::MaxWords;
    const std::string n = spec.substr(10);
    auto [p, ec] = std::from_chars(n.data(), n.data() + n.size(), r.max_words_);
    if (n.empty() || ec != std::errc() || p != n.data() + n.size() || r.max_words_ == 0)
      fail("--rule {}: the word limit must be a positive integer (e.g. max-words=50)", spec);
  } else if (spec.starts_with("regex=")) {
    r.kind_ = Kind::Regex;
    const std::string pat = spec.substr(6);
    if (pat.empty()) fail("--rule regex=: the pattern is empty");
    int err = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pat.data()), pat.size(), PCRE2_UTF, &err, &offset, nullptr);
    if (!code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      fail("--rule {}: bad pattern at offset {}: {}", spec, offset, reinterpret_cast<const char*>(msg));
    }
    r.pattern_ = std::make_unique<Pattern>();
    r.pattern_->code = code;
  } else {
    fail("--rule \"{}\" is not a rule; use max-words=N, regex=PATTERN or prefer-shorter", spec);
  }
  return r;
}

RuleLabel LabelRule::label(const std::string& c0, const std::string& c1) const {
  auto decide = [](bool ok0, bool ok1) {
    if (ok0 == ok1) return RuleLabel{};
    return RuleLabel{ok0 ? Choice::A : Choice::B, 1.0};
  };
  // No answer never wins: shorter, within the limit or matching, it is still nothing.
  const bool empty0 = text::is_blank(c0), empty1 = text::is_blank(c1);
  if (empty0 || empty1) return decide(!empty0, !empty1);
  switch (kind_) {
    case Kind::MaxWords:
      return decide(size_t(text::count_words(c0)) <= max_words_, size_t(text::count_words(c1)) <= max_words_);
    case Kind::Regex: return decide(pattern_->matches(c0), pattern_->matches(c1));
    case Kind::PreferShorter: {
      const size_t w0 = size_t(text::count_words(c0)), w1 = size_t(text::count_words(c1));
      if (w0 != w1) {
        const double conf = 1.0 - double(std::min(w0, w1)) / double(std::max(w0, w1));
        return {w0 < w1 ? Choice::A : Choice::B, conf};
      }
      if (c0.size() != c1.size()) {
        const double conf = 1.0 - double(std::min(c0.size(), c1.size())) / double(std::max(c0.size(), c1.size()));
        return {c0.size() < c1.size() ? Choice::A : Choice::B, conf};
      }
      return {};
    }
  }
  return {};
}

}  // namespace rlhf::eval
