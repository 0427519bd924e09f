#include "rlhf/text/words.h"

#include "rlhf/text/utf8.h"

namespace rlhf::text {

int64_t count_words(std::string_view s) {
  int64_t n = 0;
  bool in_word = false;
  for (size_t i = 0; i < s.size();) {
    const utf8::Step st = utf8::next(s, i);
    const bool space = st.valid && utf8::is_python_space(st.cp);
    if (!space && !in_word) ++n;
    in_word = !space;
    i += st.len;
  }
  return n;
}

}  // namespace rlhf::text
