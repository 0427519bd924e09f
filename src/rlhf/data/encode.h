// From dataset text to token ids, the same way in every stage (reward model, RL, inference,
// labeling): the instruction is prepended, the prompt is formatted (raw text as in the seed,
// or the model's chat template), and completions are cut from the right to
// target_sequence_length, EOS included. A prompt longer than prompt_sequence_length loses the
// earliest tokens of the dataset's text (the post, the conversation's turns); the BOS, the
// template's markup and the instruction are never cut (text/prompt_pieces.h). The template's
// markers are control tokens; a special-token spelling inside the data stays text.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rlhf/data/dataset.h"
#include "rlhf/text/chat_template.h"
#include "rlhf/text/prompt_pieces.h"
#include "rlhf/text/tokenizer.h"

namespace rlhf::data {

enum class PromptFormat { Raw, Chat };
// "raw", "chat"; throws rlhf::Error otherwise.
PromptFormat parse_prompt_format(const std::string& name);
const char* prompt_format_name(PromptFormat f);

// The forms of the prompts a run reads (conversations or plain text), for resolving "auto".
struct PromptForms {
  size_t chat = 0, plain = 0;
  std::string first_chat, first_plain;  // where the first of each was ("file:line")
  void add(const PromptText& prompt, const std::string& where);
  template <class Rows>
  void add_rows(const Rows& rows) {
    for (const auto& r : rows) add(r.prompt, r.where);
  }
};

// The format a prompt-format setting gives prompts of these forms: "raw" and "chat" are
// themselves; "auto" is chat when every prompt is a conversation and raw when none is. Mixed
// forms under "auto" throw rlhf::Error naming a row of each and `setting_name` (the flag or
// key that decides).
PromptFormat resolve_prompt_format(const std::string& setting, const PromptForms& forms,
                                   const std::string& setting_name);

// The format of a single command's run. `setting` "" or "auto" takes `recorded` (the format a
// trained artifact records, if any), else resolves "auto" from `forms`; "raw" or "chat" is
// itself. Warns on stderr when an explicit setting overrides the recorded format, and when
// conversations are rendered in the raw format (as "User:"/"Assistant:" text), naming `flag`
// as what changes it. Mixed forms under auto throw as resolve_prompt_format does.
PromptFormat choose_prompt_format(const std::string& setting, std::optional<PromptFormat> recorded,
                                  const std::string& recorded_by, const PromptForms& forms, const std::string& flag);

struct EncodeConfig {
  PromptFormat format = PromptFormat::Raw;
  std::string instruction;              // prepended to every prompt ("" = none)
  int64_t prompt_sequence_length = 512; // most prompt tokens (the dataset's text is cut to fit)
  int64_t target_sequence_length = 64;  // completion tokens kept, EOS included
};

struct EncodedPrompt {
  std::vector<int32_t> ids;  // at most prompt_sequence_length
  size_t cut = 0;            // tokens of the dataset's text left out to fit
};

struct PreferencePair {
  std::vector<int32_t> prompt;            // formatted, fitted to prompt_sequence_length
  std::vector<int32_t> chosen, rejected;  // each ends with EOS
  std::string where;                      // "file:line"
};

class Encoder {
 public:
  // eos_id ends every completion (the model's end-of-turn token). Throws rlhf::Error when
  // prompt_sequence_length < 1, target_sequence_length < 2, or the chat format is asked of a
  // template of style None.
  Encoder(const text::Tokenizer& tokenizer, const text::ChatTemplate& chat_template, int32_t eos_id,
          EncodeConfig config);

  // The prompt as text. Raw: instruction + "\n\n" + text; a conversation in raw form is its
  // turns as "User: ..." / "Assistant: ..." paragraphs ending in "Assistant:". Chat: the
  // template with a generation prompt, the instruction prepended to the first user turn,
  // the context as the system message.
  std::string prompt_text(const PromptText& prompt) const;
  // The prompt as pieces (text/prompt_pieces.h): markup, the fixed instruction, the content.
  text::PromptPieces prompt_pieces(const PromptText& prompt) const;
  // The prompt's ids, fitted to prompt_sequence_length; `where` ("file:line") names the row
  // in the error thrown when the template and instruction alone leave no room for its text.
  EncodedPrompt encode_prompt(const PromptText& prompt, std::string_view where = "") const;
  std::vector<int32_t> prompt_ids(const PromptText& prompt, std::string_view where = "") const;
  // The completion's ids: the first target_sequence_length - 1 tokens, then EOS.
  std::vector<int32_t> completion_ids(std::string_view completion) const;
  PreferencePair encode(const PreferenceRow& row) const;

  const EncodeConfig& config() const { return config_; }
  int32_t eos_id() const { return eos_id_; }

 private:
  const text::Tokenizer& tok_;
  const text::ChatTemplate& chat_;
  int32_t eos_id_;
  EncodeConfig config_;
};

}  // namespace rlhf::data
