#include "rlhf/text/prompt_pieces.h"

#include <algorithm>
#include <utility>

#include "rlhf/text/utf8.h"
#include "rlhf/util/error.h"

namespace rlhf::text {
namespace {

// Bytes of Python whitespace at the start of s.
size_t leading_space(std::string_view s) {
  size_t b = 0;
  while (b < s.size()) {
    utf8::Step st = utf8::next(s, b);
    if (!st.valid || !utf8::is_python_space(st.cp)) break;
    b += st.len;
  }
  return b;
}

// Bytes of Python whitespace at the end of s.
size_t trailing_space(std::string_view s) {
  size_t e = s.size();
  while (e > 0) {
    size_t start = e - 1;
    while (start > 0 && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
    utf8::Step st = utf8::next(s, start);
    if (!st.valid || start + st.len != e || !utf8::is_python_space(st.cp)) break;
    e = start;
  }
  return s.size() - e;
}

std::vector<int32_t> concat(const std::vector<std::vector<int32_t>>& parts) {
  std::vector<int32_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// The largest share c with sum(min(size_i, c)) <= room.
size_t equal_share(std::vector<size_t> sizes, size_t room) {
  std::sort(sizes.begin(), sizes.end());
  size_t used = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const size_t left = sizes.size() - i;
    if (used + sizes[i] * left > room) return (room - used) / left;
    used += sizes[i];
  }
  return sizes.empty() ? 0 : sizes.back();
}

}  // namespace

void PromptPieces::add(PieceKind kind, std::string_view text) {
  if (text.empty()) return;
  if (!pieces.empty() && pieces.back().kind == kind && kind != PieceKind::Content) {
    pieces.back().text += text;  // adjacent markup (or fixed text) is one piece
    return;
  }
  pieces.push_back({kind, std::string(text)});
}

void PromptPieces::append(const PromptPieces& other) {
  for (const auto& p : other.pieces) add(p.kind, p.text);
}

std::string PromptPieces::text() const {
  std::string out;
  for (const auto& p : pieces) out += p.text;
  return out;
}

void strip_pieces(std::vector<PromptPiece>& pieces, bool left, bool right) {
  if (left)
    for (auto& p : pieces) {
      p.text.erase(0, leading_space(p.text));
      if (!p.text.empty()) break;
    }
  if (right)
    for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) {
      it->text.resize(it->text.size() - trailing_space(it->text));
      if (!it->text.empty()) break;
    }
  std::erase_if(pieces, [](const PromptPiece& p) { return p.text.empty(); });
}

FittedPrompt fit_prompt(const Tokenizer& tokenizer, const PromptPieces& prompt, const FitOptions& options) {
  const int32_t bos = tokenizer.special().bos;
  const bool with_bos = prompt.bos && bos >= 0;
  // The whole prompt, as its joined text encodes.
  std::vector<TextPart> parts;
  for (const auto& p : prompt.pieces) parts.push_back({p.text, p.kind == PieceKind::Markup});
  FittedPrompt out;
  if (with_bos) out.ids.push_back(bos);
  std::vector<int32_t> whole = tokenizer.encode_parts(parts);
  out.ids.insert(out.ids.end(), whole.begin(), whole.end());
  if (options.limit == 0 || out.ids.size() <= options.limit) return out;

  // Too long: each content piece on its own, the pieces between them together.
  std::vector<std::vector<int32_t>> segments;
  std::vector<size_t> content;  // indices into segments
  size_t fixed = with_bos ? 1 : 0;
  if (with_bos) segments.push_back({bos});
  for (size_t i = 0; i < prompt.pieces.size();) {
    if (prompt.pieces[i].kind == PieceKind::Content) {
      content.push_back(segments.size());
      segments.push_back(tokenizer.encode(prompt.pieces[i].text, /*parse_special=*/false));
      ++i;
      continue;
    }
    size_t j = i;
    while (j < prompt.pieces.size() && prompt.pieces[j].kind != PieceKind::Content) ++j;
    segments.push_back(tokenizer.encode_parts(std::span(parts).subspan(i, j - i)));
    fixed += segments.back().size();
    i = j;
  }
  const std::string where = options.where.empty() ? std::string() : std::string(options.where) + ": ";
  if (fixed >= options.limit)
    fail("{}the prompt's template and instruction alone take {} tokens, which leaves no room for the text within "
         "{} = {} (the whole prompt is {} tokens); raise {} or shorten the instruction",
         where, fixed, options.limit_name, options.limit, out.ids.size(), options.limit_name);
  const size_t room = options.limit - fixed;
  size_t total = 0;
  for (size_t k : content) total += segments[k].size();
  out.ids.clear();
  if (total <= room) {  // pieces encoded apart came out shorter than the whole
    out.ids = concat(segments);
    return out;
  }
  out.cut = total - room;
  if (options.cut == CutFrom::Left) {
    size_t drop = out.cut;
    for (size_t k : content) {
      auto& seg = segments[k];
      const size_t n = std::min(drop, seg.size());
      seg.erase(seg.begin(), seg.begin() + static_cast<std::ptrdiff_t>(n));
      drop -= n;
    }
  } else {
    const std::vector<int32_t> mark =
        options.cut_mark.empty() ? std::vector<int32_t>{} : tokenizer.encode(options.cut_mark, /*parse_special=*/false);
    std::vector<size_t> sizes;
    for (size_t k : content) sizes.push_back(segments[k].size());
    const size_t share = equal_share(sizes, room);
    out.cut = 0;
    for (size_t k : content) {
      auto& seg = segments[k];
      if (seg.size() <= share) continue;
      const size_t keep = share > mark.size() ? share - mark.size() : share;
      const size_t head = keep / 2, tail = keep - head;
      out.cut += seg.size() - keep;
      std::vector<int32_t> cut(seg.begin(), seg.begin() + static_cast<std::ptrdiff_t>(head));
      if (share > mark.size()) cut.insert(cut.end(), mark.begin(), mark.end());
      cut.insert(cut.end(), seg.end() - static_cast<std::ptrdiff_t>(tail), seg.end());
      seg = std::move(cut);
    }
  }
  out.ids = concat(segments);
  return out;
}

}  // namespace rlhf::text
