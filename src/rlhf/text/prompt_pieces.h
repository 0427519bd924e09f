// A prompt as pieces that are tokenized and truncated differently, and how it is fitted to a
// token limit. Every stage that builds a prompt (the encoder of reward model, policy, infer
// and label; the judge) goes through here, so one rule holds everywhere:
//   Markup   the chat template's own text: its special-token spellings become control tokens
//   Fixed    instructions and labels the program or the user adds: text, never cut
//   Content  the dataset's text (a post, a conversation turn, a response): text, the only
//            part that is cut when the prompt is too long
// A spelled-out special token in Fixed or Content text stays text.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "rlhf/text/tokenizer.h"

namespace rlhf::text {

enum class PieceKind { Markup, Fixed, Content };

struct PromptPiece {
  PieceKind kind = PieceKind::Content;
  std::string text;
};

struct PromptPieces {
  bool bos = false;  // the BOS id goes first (raw prompts of models that want it)
  std::vector<PromptPiece> pieces;

  void add(PieceKind kind, std::string_view text);  // empty text is left out
  void append(const PromptPieces& other);           // other's pieces after these
  std::string text() const;                         // the pieces joined (without BOS)
};

// Python's str.strip() over the joined text of `pieces`, taking whitespace off the first and
// last pieces that have any text (as a template's trim filter does to a message's content).
void strip_pieces(std::vector<PromptPiece>& pieces, bool left, bool right);

// Where a prompt too long loses its Content tokens.
enum class CutFrom {
  Left,    // the earliest tokens of the content, in order (the end, next to the question, stays)
  Middle,  // each content piece over an equal share loses its middle; the longest give first
};

struct FitOptions {
  size_t limit = 0;             // most ids kept; 0 = no limit
  CutFrom cut = CutFrom::Left;
  std::string_view cut_mark;    // text standing for a cut (Middle only; "" = none)
  std::string_view where;       // the row, for errors ("file:line")
  std::string_view limit_name = "prompt_sequence_length";  // the setting that sets the limit
};

struct FittedPrompt {
  std::vector<int32_t> ids;
  size_t cut = 0;  // content tokens dropped
};

// The ids of a prompt, fitted to options.limit. A prompt within the limit is encoded whole
// (exactly as its joined text would be, markup parsed as special). A longer one is encoded
// piece by piece and loses only Content tokens; when BOS, Markup and Fixed pieces alone
// leave no room for content, throws rlhf::Error naming the row and the lengths.
FittedPrompt fit_prompt(const Tokenizer& tokenizer, const PromptPieces& prompt, const FitOptions& options = {});

}  // namespace rlhf::text
