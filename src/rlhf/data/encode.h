// From dataset text to token ids, the same way in every stage (reward model, RL, inference,
// judge): the instruction is prepended, the prompt is formatted (raw text as in the seed, or
// the model's chat template), prompts are cut from the left to prompt_sequence_length and
// completions from the right to target_sequence_length, EOS included.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "rlhf/data/dataset.h"
#include "rlhf/text/chat_template.h"
#include "rlhf/text/tokenizer.h"

namespace rlhf::data {

enum class PromptFormat { Raw, Chat };
// "raw", "chat"; throws rlhf::Error otherwise.
PromptFormat parse_prompt_format(const std::string& name);
const char* prompt_format_name(PromptFormat f);
// The format a prompt-format setting gives a dataset whose first prompt is `first`: "auto" is
// chat when that prompt is a conversation, else raw; "raw" and "chat" are themselves.
PromptFormat resolve_prompt_format(const std::string& setting, const PromptText& first);

struct EncodeConfig {
  PromptFormat format = PromptFormat::Raw;
  std::string instruction;              // prepended to every prompt ("" = none)
  int64_t prompt_sequence_length = 512; // prompt tokens kept (the last ones)
  int64_t target_sequence_length = 64;  // completion tokens kept, EOS included
};

struct PreferencePair {
  std::vector<int32_t> prompt;            // formatted, left-truncated
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
  std::vector<int32_t> prompt_ids(const PromptText& prompt) const;
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
