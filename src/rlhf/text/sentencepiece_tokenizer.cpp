// SentencePiece models (tokenizer.model, e.g. Llama 2) through libsentencepiece. Control
// pieces (<s>, </s>) and <unk> are special: split out of the text like added tokens, and
// written as their piece text by decode unless skipped.
#include <sentencepiece_processor.h>

#include <algorithm>

#include "rlhf/text/added_tokens.h"
#include "rlhf/text/tokenizer.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"

namespace rlhf::text {
namespace {

constexpr size_t kMaxModelBytes = size_t(64) << 20;
constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's word boundary

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(std::unique_ptr<sentencepiece::SentencePieceProcessor> sp,
                                  std::vector<AddedToken> specials)
      : sp_(std::move(sp)), specials_(std::move(specials)) {
    for (const auto& t : specials_.tokens()) special_ids_.push_back(t.id);  // ascending
  }

  std::vector<int32_t> encode_parts(std::span<const TextPart> parts) const override {
    std::vector<int32_t> ids;
    std::vector<int> piece_ids;
    specials_.split_parts(
        parts,
        [&](std::string_view segment) {
          piece_ids.clear();
          auto st = sp_->Encode(segment, &piece_ids);
          if (!st.ok()) fail("sentencepiece: cannot encode text: {}", st.ToString());
          ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
        },
        [&](int32_t id) { ids.push_back(id); });
    return ids;
  }

  // Runs of ordinary pieces are decoded by SentencePiece itself (which drops the space it
  // put before the first word and reassembles byte pieces); special pieces cut the runs.
  std::string decode(std::span<const int32_t> ids, bool skip_special) const override {
    std::string out, text;
    std::vector<int> run;
    auto flush = [&] {
      if (run.empty()) return;
      auto st = sp_->Decode(run, &text);
      if (!st.ok()) fail("sentencepiece: cannot decode: {}", st.ToString());
      out += text;
      run.clear();
    };
    for (int32_t id : ids) {
      if (id < 0 || size_t(id) >= vocab_size()) continue;
      if (is_special(id)) {
        if (skip_special) continue;
        flush();
        out += sp_->IdToPiece(id);
      } else {
        run.push_back(id);
      }
    }
    flush();
    return out;
  }

  std::string token_bytes(int32_t id) const override {
    if (id < 0 || size_t(id) >= vocab_size()) return {};
    const std::string& piece = sp_->IdToPiece(id);
    if (sp_->IsByte(id)) return std::string(1, static_cast<char>(std::stoi(piece.substr(3, 2), nullptr, 16)));  // <0xAB>
    if (is_special(id)) return piece;
    std::string out;
    for (size_t i = 0; i < piece.size();) {
      if (piece.compare(i, kSpace.size(), kSpace) == 0) {
        out += ' ';
        i += kSpace.size();
      } else {
        out += piece[i++];
      }
    }
    return out;
  }

  size_t vocab_size() const override { return static_cast<size_t>(sp_->GetPieceSize()); }

  std::optional<int32_t> token_id(std::string_view token) const override {
    int id = sp_->PieceToId(token);  // the unk id when absent
    if (id < 0 || sp_->IdToPiece(id) != token) return std::nullopt;
    return id;
  }

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  AddedTokenSplitter specials_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path) {
  std::string bytes = read_file(model_path, kMaxModelBytes);
  auto sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
  auto st = sp->LoadFromSerializedProto(bytes);
  if (!st.ok()) fail("{}: not a SentencePiece model: {}", model_path, st.ToString());

  std::vector<AddedToken> specials;
  for (int id = 0; id < sp->GetPieceSize(); ++id)
    if (sp->IsControl(id) || sp->IsUnknown(id)) specials.push_back({id, sp->IdToPiece(id), true});
  SpecialTokens special;
  special.bos = sp->bos_id();
  special.eos = sp->eos_id();
  special.unk = sp->unk_id();
  special.pad = sp->pad_id();
  special.add_bos = special.bos >= 0;  // SentencePiece chat models (Llama 2) start every sequence with BOS

  auto tok = std::make_unique<SentencePieceTokenizer>(std::move(sp), std::move(specials));
  tok->set_special(special);
  return tok;
}

}  // namespace rlhf::text
