// Added tokens (specials like <|im_end|>, user-defined pieces) are found in the raw text
// before any pre-tokenization, leftmost first and longest at a position, as HF tokenizers
// does. Shared by the BPE and SentencePiece tokenizers.
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rlhf/text/tokenizer.h"

namespace rlhf::text {

class AddedTokenSplitter {
 public:
  explicit AddedTokenSplitter(std::vector<AddedToken> tokens = {});

  // Calls on_text(piece) for the text between added tokens and on_token(id) for each added
  // token found. With parse_special false, a special token found stays text (and hides any
  // shorter added token inside it), as HF's encode_special_tokens.
  template <class OnText, class OnToken>
  void split(std::string_view text, bool parse_special, OnText&& on_text, OnToken&& on_token) const {
    size_t start = 0;
    for (size_t i = 0; i < text.size();) {
      const AddedToken* hit = nullptr;
      if (!tokens_.empty())
        for (uint32_t k : by_first_byte_[static_cast<uint8_t>(text[i])]) {
          const AddedToken& t = tokens_[k];
          if (text.substr(i, t.content.size()) == t.content) {
            hit = &t;  // candidates are longest first
            break;
          }
        }
      if (!hit) {
        ++i;
        continue;
      }
      if (hit->special && !parse_special) {
        i += hit->content.size();
        continue;
      }
      if (i > start) on_text(text.substr(start, i - start));
      on_token(hit->id);
      i += hit->content.size();
      start = i;
    }
    if (start < text.size()) on_text(text.substr(start));
  }

  // split() over several parts, each with its own parse_special: on_run(text) gets the text
  // between added tokens, joined across part boundaries (a run ends only at a token).
  template <class OnRun, class OnToken>
  void split_parts(std::span<const TextPart> parts, OnRun&& on_run, OnToken&& on_token) const {
    std::string run;
    auto flush = [&] {
      if (run.empty()) return;
      on_run(std::string_view(run));
      run.clear();
    };
    for (const TextPart& part : parts)
      split(
          part.text, part.parse_special, [&](std::string_view piece) { run.append(piece); },
          [&](int32_t id) {
            flush();
            on_token(id);
          });
    flush();
  }

  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  std::vector<AddedToken> tokens_;
  std::array<std::vector<uint32_t>, 256> by_first_byte_;  // indices into tokens_, longest first
};

}  // namespace rlhf::text
