#include "rlhf/eval/rules.h"

#include <algorithm>

#include "rlhf/text/words.h"
#include "rlhf/util/error.h"

namespace rlhf::eval {

using Kind = data::RewardRule::Kind;

LabelRule LabelRule::parse(const std::string& spec) {
  if (spec != "prefer-shorter" && !spec.starts_with("max-words=") && !spec.starts_with("regex="))
    fail("--rule \"{}\" is not a rule; use max-words=N, regex=PATTERN or prefer-shorter", spec);
  return LabelRule(data::RewardRule::parse(spec, "--rule"));
}

RuleLabel LabelRule::label(const std::string& c0, const std::string& c1) const {
  auto decide = [](bool ok0, bool ok1) {
    if (ok0 == ok1) return RuleLabel{};
    return RuleLabel{ok0 ? Choice::A : Choice::B, 1.0};
  };
  // No answer never wins: shorter, within the limit or matching, it is still nothing.
  const bool empty0 = text::is_blank(c0), empty1 = text::is_blank(c1);
  if (empty0 || empty1) return decide(!empty0, !empty1);
  switch (rule_.kind()) {
    case Kind::MaxWords: {
      const size_t n = rule_.max_words();
      return decide(size_t(text::count_words(c0)) <= n, size_t(text::count_words(c1)) <= n);
    }
    case Kind::Regex: return decide(rule_.matches(c0), rule_.matches(c1));
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
    case Kind::ExactMatch:
    case Kind::Contains: break;  // not labeling rules (parse refuses them)
  }
  return {};
}

}  // namespace rlhf::eval
