// Tokenizer: text <-> token ids for the model families rlhf runs. Byte-level BPE (GPT-2,
// SmolLM/StarCoder, Llama 3, Qwen2 pre-tokenizers) from tokenizer.json or from GGUF metadata
// (via TokenizerSpec), and SentencePiece models (tokenizer.model, Llama 2) through
// libsentencepiece. Added/special tokens are split out before pre-tokenization.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rlhf::text {

struct SpecialTokens {
  int32_t bos = -1, eos = -1, pad = -1, unk = -1;  // -1: none
  bool add_bos = false;  // prepend BOS when encoding a whole sequence (Llama 2/3 do)
  bool add_eos = false;
};

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = true;  // special tokens are dropped by decode(skip_special=true)
};

// Everything needed to build a byte-level BPE tokenizer, independent of the file it came
// from. The model loader fills it from GGUF metadata; load_tokenizer_json fills it too.
struct TokenizerSpec {
  std::string pre = "gpt2";                  // pre-tokenizer family: gpt2, smollm, llama3, qwen2
  std::vector<std::string> tokens;            // id -> token text, byte-level encoded (Ġ = space)
  std::vector<int32_t> token_types;           // GGUF types (1 normal, 3 control, 4 user, 6 byte); may be empty
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::vector<AddedToken> added;              // split out of the text before BPE
  SpecialTokens special;
  // Use a pre-token that is itself in the vocabulary as is, before merging (HF BPE
  // ignore_merges). Unset: the family's default (true for llama3/llama-bpe, as Llama 3 ships it).
  std::optional<bool> ignore_merges;
  std::string source;  // where the spec came from (a file path), for error messages
};

// A piece of a text to encode and whether spell-outs of special tokens in it become their ids.
struct TextPart {
  std::string_view text;
  bool parse_special = false;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Ids of text. parse_special: spell-outs of added/special tokens in the text become their
  // ids (as HF tokenizers does). Does not add BOS/EOS; see encode_sequence.
  std::vector<int32_t> encode(std::string_view text, bool parse_special = true) const;
  // Ids of the parts' concatenation, special tokens found only in the parts that parse them:
  // a chat template's markers are control tokens while the data between them stays text.
  // Text runs that cross part boundaries are encoded as one (as the concatenation would be),
  // so parts without special spell-outs give exactly encode(concatenation).
  virtual std::vector<int32_t> encode_parts(std::span<const TextPart> parts) const = 0;
  // Exact text of ids (bytes reassembled). skip_special drops special tokens.
  virtual std::string decode(std::span<const int32_t> ids, bool skip_special = false) const = 0;
  // The raw bytes of one token (for streaming; may be an incomplete UTF-8 sequence).
  virtual std::string token_bytes(int32_t id) const = 0;
  virtual size_t vocab_size() const = 0;
  // The id of a token spelled exactly so (e.g. "<|im_end|>"), if the vocabulary has it.
  virtual std::optional<int32_t> token_id(std::string_view token) const = 0;

  // encode() plus BOS/EOS as special() asks.
  std::vector<int32_t> encode_sequence(std::string_view text) const;
  const SpecialTokens& special() const { return special_; }
  void set_special(const SpecialTokens& s) { special_ = s; }
  bool is_special(int32_t id) const;

 protected:
  SpecialTokens special_;
  std::vector<int32_t> special_ids_;  // sorted ids of special/control tokens
  friend std::unique_ptr<Tokenizer> make_bpe_tokenizer(TokenizerSpec spec);
};

// Byte-level BPE from a spec. Throws rlhf::Error on an inconsistent spec (merge of unknown
// tokens, unknown pre-tokenizer family).
std::unique_ptr<Tokenizer> make_bpe_tokenizer(TokenizerSpec spec);

// Hugging Face tokenizer.json (BPE with a byte-level pre-tokenizer/decoder), plus the special
// tokens of tokenizer_config.json when that path is given and exists.
TokenizerSpec read_tokenizer_json(const std::string& tokenizer_json,
                                  const std::string& tokenizer_config_json = "");
std::unique_ptr<Tokenizer> load_tokenizer_json(const std::string& tokenizer_json,
                                               const std::string& tokenizer_config_json = "");

// SentencePiece model file (tokenizer.model), e.g. Llama 2.
std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path);

// The byte-level BPE symbol that stands for byte `b` (GPT-2's bytes_to_unicode), as UTF-8:
// what a byte-level vocabulary spells that byte with.
std::string byte_level_symbol(uint8_t b);

// Turns ids into text as they arrive, holding back bytes of an incomplete UTF-8 character.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = true) : tok_(tok), skip_special_(skip_special) {}
  std::string push(int32_t id);  // the text that became complete with this id
  std::string flush();           // whatever is left (invalid bytes replaced by U+FFFD)

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace rlhf::text
