// Byte-level BPE. Text -> added tokens split out -> pre-tokenizer pieces -> per piece, bytes
// start as single-byte tokens and the adjacent pair of lowest merge rank is merged until no
// pair has a rank (leftmost first among equal ranks, as HF tokenizers).
#include <algorithm>
#include <array>
#include <mutex>
#include <queue>
#include <unordered_map>

#include "rlhf/text/added_tokens.h"
#include "rlhf/text/pretokenizer.h"
#include "rlhf/text/tokenizer.h"
#include "rlhf/text/utf8.h"
#include "rlhf/util/error.h"

namespace rlhf::text {
namespace {

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the others are
// given the code points from U+0100 on, in byte order.
struct ByteLevelMap {
  std::array<char32_t, 256> to_char{};
  std::unordered_map<char32_t, uint8_t> to_byte;

  ByteLevelMap() {
    char32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_char[b] = printable ? char32_t(b) : next++;
      to_byte[to_char[b]] = static_cast<uint8_t>(b);
    }
  }
};

const ByteLevelMap& byte_level() {
  static const ByteLevelMap m;
  return m;
}

// The bytes a vocabulary token stands for. A token with a character outside the byte-level
// alphabet is taken as its own UTF-8 text (as HF's ByteLevel decoder does).
std::string token_text_to_bytes(std::string_view tok) {
  const auto& m = byte_level();
  std::string out;
  for (size_t i = 0; i < tok.size();) {
    utf8::Step st = utf8::next(tok, i);
    auto it = st.valid ? m.to_byte.find(st.cp) : m.to_byte.end();
    if (it == m.to_byte.end()) return std::string(tok);
    out += static_cast<char>(it->second);
    i += st.len;
  }
  return out;
}

std::string bytes_to_token_text(std::string_view bytes) {
  const auto& m = byte_level();
  std::string out;
  for (char c : bytes) utf8::append(out, m.to_char[static_cast<uint8_t>(c)]);
  return out;
}

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

struct Merge {
  int32_t rank;
  int32_t id;  // the token the pair becomes
};

class BpeTokenizer final : public Tokenizer {
 public:
  BpeTokenizer(PreTokenizer pre, std::vector<AddedToken> added, std::vector<std::string> bytes,
               std::unordered_map<std::string, int32_t> vocab_ids,
               std::unordered_map<uint64_t, Merge> merges, bool ignore_merges)
      : pre_(std::move(pre)),
        added_(std::move(added)),
        bytes_(std::move(bytes)),
        vocab_ids_(std::move(vocab_ids)),
        merges_(std::move(merges)),
        ignore_merges_(ignore_merges) {
    const auto& m = byte_level();
    for (int b = 0; b < 256; ++b) {
      std::string s;
      utf8::append(s, m.to_char[b]);
      auto it = vocab_ids_.find(s);
      byte_ids_[b] = it == vocab_ids_.end() ? -1 : it->second;
    }
  }

  std::vector<int32_t> encode_parts(std::span<const TextPart> parts) const override {
    std::vector<int32_t> ids;
    std::vector<std::string_view> pieces;
    added_.split_parts(
        parts,
        [&](std::string_view segment) {
          pieces.clear();
          pre_.split(segment, pieces);
          for (auto p : pieces) encode_piece(p, ids);
        },
        [&](int32_t id) { ids.push_back(id); });
    return ids;
  }

  std::string decode(std::span<const int32_t> ids, bool skip_special) const override {
    std::string out;
    for (int32_t id : ids) {
      if (id < 0 || size_t(id) >= bytes_.size()) continue;  // ids past the vocabulary (padded embeddings) have no text
      if (skip_special && is_special(id)) continue;
      out += bytes_[id];
    }
    return out;
  }

  std::string token_bytes(int32_t id) const override {
    if (id < 0 || size_t(id) >= bytes_.size()) return {};
    return bytes_[id];
  }

  size_t vocab_size() const override { return bytes_.size(); }

  std::optional<int32_t> token_id(std::string_view token) const override {
    for (const auto& t : added_.tokens())
      if (t.content == token) return t.id;
    auto it = vocab_ids_.find(std::string(token));
    if (it == vocab_ids_.end()) return std::nullopt;
    return it->second;
  }

 private:
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
    {
      std::lock_guard lock(cache_mu_);
      auto it = cache_.find(piece);
      if (it != cache_.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int32_t> ids = merge(piece);
    out.insert(out.end(), ids.begin(), ids.end());
    std::lock_guard lock(cache_mu_);
    if (cache_.size() >= kCacheMax) cache_.clear();
    cache_.emplace(std::string(piece), std::move(ids));
  }

  std::vector<int32_t> merge(std::string_view piece) const {
    if (ignore_merges_) {
      auto it = vocab_ids_.find(bytes_to_token_text(piece));
      if (it != vocab_ids_.end()) return {it->second};
    }
    // Symbols form a linked list over the piece's bytes; a merge grows the left symbol and
    // unlinks the right one. Queue entries that no longer match their symbols are stale.
    struct Symbol {
      int32_t id;
      int32_t prev, next;
    };
    std::vector<Symbol> sym;
    sym.reserve(piece.size());
    for (char c : piece) {
      int32_t id = byte_ids_[static_cast<uint8_t>(c)];
      if (id < 0) continue;  // a byte the vocabulary lacks is dropped, as HF's BPE without unk
      int32_t i = static_cast<int32_t>(sym.size());
      sym.push_back({id, i - 1, i + 1});
    }
    if (sym.empty()) return {};
    sym.back().next = -1;

    struct Candidate {
      int32_t rank, pos, left, right, merged;
      bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
    auto consider = [&](int32_t pos) {
      if (pos < 0 || sym[pos].next < 0) return;
      auto it = merges_.find(pair_key(sym[pos].id, sym[sym[pos].next].id));
      if (it != merges_.end())
        queue.push({it->second.rank, pos, sym[pos].id, sym[sym[pos].next].id, it->second.id});
    };
    for (int32_t i = 0; i + 1 < int32_t(sym.size()); ++i) consider(i);

    while (!queue.empty()) {
      Candidate c = queue.top();
      queue.pop();
      Symbol& left = sym[c.pos];
      if (left.id != c.left || left.next < 0 || sym[left.next].id != c.right) continue;
      Symbol& right = sym[left.next];
      left.id = c.merged;
      right.id = -1;  // unlinked
      left.next = right.next;
      if (left.next >= 0) sym[left.next].prev = c.pos;
      consider(left.prev);
      consider(c.pos);
    }
    std::vector<int32_t> ids;
    for (int32_t i = 0; i >= 0; i = sym[i].next) ids.push_back(sym[i].id);
    return ids;
  }

  static constexpr size_t kCacheMax = 1 << 16;

  PreTokenizer pre_;
  AddedTokenSplitter added_;
  std::vector<std::string> bytes_;     // id -> the bytes it decodes to
  std::unordered_map<std::string, int32_t> vocab_ids_;  // spelling -> id (model vocabulary)
  std::unordered_map<uint64_t, Merge> merges_;          // pair_key(left, right) -> merge
  std::array<int32_t, 256> byte_ids_{};                 // byte -> its single-byte token
  bool ignore_merges_;

  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, Hash, std::equal_to<>> cache_;
};

}  // namespace

std::string byte_level_symbol(uint8_t b) {
  std::string out;
  utf8::append(out, byte_level().to_char[b]);
  return out;
}

std::unique_ptr<Tokenizer> make_bpe_tokenizer(TokenizerSpec spec) {
  const std::string src = spec.source.empty() ? "tokenizer" : spec.source;
  std::optional<PreTokenizer> pre;
  try {
    pre.emplace(spec.pre);
  } catch (const Error& e) {
    fail("{}: {}", src, e.what());
  }
  if (spec.tokens.empty()) fail("{}: empty vocabulary", src);
  if (!spec.token_types.empty() && spec.token_types.size() != spec.tokens.size())
    fail("{}: {} token types for {} tokens", src, spec.token_types.size(), spec.tokens.size());

  std::unordered_map<std::string, int32_t> vocab_ids;
  vocab_ids.reserve(spec.tokens.size());
  for (size_t i = 0; i < spec.tokens.size(); ++i)
    if (!spec.tokens[i].empty()) vocab_ids.emplace(spec.tokens[i], static_cast<int32_t>(i));

  std::unordered_map<uint64_t, Merge> merges;
  merges.reserve(spec.merges.size());
  auto lookup = [&](size_t i, const std::string& tok) {
    auto it = vocab_ids.find(tok);
    if (it == vocab_ids.end())
      fail("{}: merges[{}] = '{} {}': '{}' is not in the vocabulary", src, i, spec.merges[i].first,
           spec.merges[i].second, tok);
    return it->second;
  };
  for (size_t i = 0; i < spec.merges.size(); ++i) {
    const auto& [a, b] = spec.merges[i];
    int32_t l = lookup(i, a), r = lookup(i, b), m = lookup(i, a + b);
    merges.insert_or_assign(pair_key(l, r), Merge{static_cast<int32_t>(i), m});  // a repeated pair: the last rank, as HF
  }

  // Added tokens: the spec's, then GGUF control (3) and user-defined (4) tokens not already there.
  std::vector<AddedToken> added = spec.added;
  size_t n_ids = spec.tokens.size();
  for (const auto& t : added) {
    if (t.id < 0) fail("{}: added token '{}' has negative id {}", src, t.content, t.id);
    n_ids = std::max(n_ids, size_t(t.id) + 1);
  }
  for (size_t i = 0; i < spec.token_types.size(); ++i) {
    int32_t type = spec.token_types[i];
    if (type != 3 && type != 4) continue;
    bool listed = std::any_of(added.begin(), added.end(), [&](const AddedToken& t) { return t.id == int32_t(i); });
    if (!listed) added.push_back({static_cast<int32_t>(i), spec.tokens[i], type == 3});
  }

  std::vector<std::string> bytes(n_ids);
  for (size_t i = 0; i < spec.tokens.size(); ++i) bytes[i] = token_text_to_bytes(spec.tokens[i]);
  for (const auto& t : added) bytes[t.id] = t.content;  // added tokens are their text as is

  std::vector<int32_t> special_ids;
  for (const auto& t : added)
    if (t.special) special_ids.push_back(t.id);
  for (int32_t id : {spec.special.bos, spec.special.eos, spec.special.pad, spec.special.unk})
    if (id >= 0) special_ids.push_back(id);
  std::sort(special_ids.begin(), special_ids.end());
  special_ids.erase(std::unique(special_ids.begin(), special_ids.end()), special_ids.end());
  for (int32_t id : {spec.special.bos, spec.special.eos, spec.special.pad, spec.special.unk})
    if (id >= static_cast<int32_t>(n_ids)) fail("{}: special token id {} is outside the vocabulary ({} tokens)", src, id, n_ids);

  bool ignore_merges = spec.ignore_merges.value_or(spec.pre == "llama3" || spec.pre == "llama-bpe");
  auto tok = std::make_unique<BpeTokenizer>(std::move(*pre), std::move(added), std::move(bytes), std::move(vocab_ids),
                                            std::move(merges), ignore_merges);
  tok->special_ = spec.special;
  tok->special_ids_ = std::move(special_ids);
  return tok;
}

}  // namespace rlhf::text
