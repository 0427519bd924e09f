#include "rlhf/text/added_tokens.h"

#include <algorithm>

namespace rlhf::text {

AddedTokenSplitter::AddedTokenSplitter(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
  std::erase_if(tokens_, [](const AddedToken& t) { return t.content.empty(); });
  for (uint32_t k = 0; k < tokens_.size(); ++k)
    by_first_byte_[static_cast<uint8_t>(tokens_[k].content[0])].push_back(k);
  for (auto& v : by_first_byte_)
    std::stable_sort(v.begin(), v.end(), [&](uint32_t a, uint32_t b) {
      return tokens_[a].content.size() > tokens_[b].content.size();
    });
}

}  // namespace rlhf::text
