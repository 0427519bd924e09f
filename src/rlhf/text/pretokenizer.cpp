#define PCRE2_CODE_UNIT_WIDTH 8
#include "rlhf/text/pretokenizer.h"

#include <pcre2.h>

#include <new>

#include "rlhf/util/error.h"

namespace rlhf::text {
namespace {

constexpr std::string_view kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

struct Family {
  std::string_view name;
  std::string_view regex;
  bool split_digits;
};
// Names as tokenizer.json detection gives them and as GGUF's tokenizer.ggml.pre spells them.
constexpr Family kFamilies[] = {
    {"gpt2", kGpt2, false},       {"gpt-2", kGpt2, false},    {"smollm", kGpt2, true},
    {"starcoder", kGpt2, true},   {"llama3", kLlama3, false}, {"llama-bpe", kLlama3, false},
    {"qwen2", kQwen2, false},
};

const Family* find_family(std::string_view name) {
  for (const auto& f : kFamilies)
    if (f.name == name) return &f;
  return nullptr;
}

}  // namespace

// A compiled PCRE2 pattern. PCRE2_MATCH_INVALID_UTF lets subjects hold invalid UTF-8: such
// bytes simply never match, and split() turns the gaps they leave into pieces.
struct PreTokenizer::Regex {
  pcre2_code* code = nullptr;

  explicit Regex(std::string_view pattern) {
    int err = 0;
    PCRE2_SIZE at = 0;
    code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                         PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &at, nullptr);
    if (!code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      fail("pre-tokenizer regex does not compile at offset {}: {}", at, reinterpret_cast<char*>(msg));
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // without JIT, pcre2_match interprets
  }
  ~Regex() { pcre2_code_free(code); }

  // Calls on(begin, end, matched) for the matches in s and for the gaps between them, in
  // order, so that the calls cover s exactly.
  template <class F>
  void for_each_span(std::string_view s, F&& on) const {
    std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
        pcre2_match_data_create(1, nullptr), &pcre2_match_data_free);
    if (!md) throw std::bad_alloc();
    auto subject = reinterpret_cast<PCRE2_SPTR>(s.data());
    size_t pos = 0, emitted = 0;
    while (pos < s.size()) {
      int rc = pcre2_match(code, subject, s.size(), pos, 0, md.get(), nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT)  // pathological input: the interpreter has no such limit
        rc = pcre2_match(code, subject, s.size(), pos, PCRE2_NO_JIT, md.get(), nullptr);
      if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        fail("pre-tokenizer: regex match failed: {}", reinterpret_cast<char*>(msg));
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
      size_t b = ov[0], e = ov[1];
      if (e == b) {  // the patterns never match empty; guard against looping anyway
        pos = e + 1;
        continue;
      }
      if (b > emitted) on(emitted, b, false);
      on(b, e, true);
      emitted = pos = e;
    }
    if (emitted < s.size()) on(emitted, s.size(), false);
  }
};

PreTokenizer::PreTokenizer(std::string_view family) {
  const Family* f = find_family(family);
  if (!f) {
    std::string known;
    for (const auto& k : kFamilies) known += (known.empty() ? "" : ", ") + std::string(k.name);
    fail("unknown pre-tokenizer family '{}' (known: {})", family, known);
  }
  pattern_ = std::make_unique<Regex>(f->regex);
  if (f->split_digits) digit_ = std::make_unique<Regex>(R"(\p{N})");
}

PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& out) const {
  auto by_pattern = [&](std::string_view s) {
    pattern_->for_each_span(s, [&](size_t b, size_t e, bool) { out.push_back(s.substr(b, e - b)); });
  };
  if (!digit_) return by_pattern(text);
  // Digits stand alone; the text between them goes through the main pattern, whose
  // lookahead then sees a segment end where a digit was (as HF's Sequence does).
  digit_->for_each_span(text, [&](size_t b, size_t e, bool digit) {
    if (digit) out.push_back(text.substr(b, e - b));
    else by_pattern(text.substr(b, e - b));
  });
}

std::optional<std::string> PreTokenizer::family_of_regex(std::string_view pattern) {
  for (const auto& f : kFamilies)
    if (f.regex == pattern && !f.split_digits) return std::string(f.name);
  return std::nullopt;
}

}  // namespace rlhf::text
