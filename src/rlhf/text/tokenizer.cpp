#include "rlhf/text/tokenizer.h"

#include <algorithm>

#include "rlhf/text/utf8.h"

namespace rlhf::text {

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool parse_special) const {
  const TextPart part{text, parse_special};
  return encode_parts({&part, 1});
}

std::vector<int32_t> Tokenizer::encode_sequence(std::string_view text) const {
  std::vector<int32_t> ids;
  if (special_.add_bos && special_.bos >= 0) ids.push_back(special_.bos);
  std::vector<int32_t> body = encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  if (special_.add_eos && special_.eos >= 0) ids.push_back(special_.eos);
  return ids;
}

bool Tokenizer::is_special(int32_t id) const {
  return std::binary_search(special_ids_.begin(), special_ids_.end(), id);
}

std::string StreamDecoder::push(int32_t id) {
  if (skip_special_ && tok_.is_special(id)) return {};
  pending_ += tok_.token_bytes(id);
  size_t n = utf8::complete_prefix(pending_);
  std::string out = utf8::sanitize(std::string_view(pending_).substr(0, n));
  pending_.erase(0, n);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out = utf8::sanitize(pending_);
  pending_.clear();
  return out;
}

}  // namespace rlhf::text
