// Chat templates: a conversation -> the prompt text a chat model was trained on. The style
// is chosen from the model's Jinja template (tokenizer.chat_template / tokenizer_config.json):
// ChatML (SmolLM2, Qwen2), Llama 2 ([INST]) and Llama 3 (<|start_header_id|>). We render the
// known styles natively rather than run Jinja; the output equals transformers'
// apply_chat_template for these models.
#pragma once
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rlhf/text/prompt_pieces.h"

namespace rlhf::text {

enum class ChatStyle { None, ChatML, Llama2, Llama3 };

struct ChatMessage {
  std::string role;  // system, user, assistant
  std::string content;
  // The content as pieces (e.g. a fixed instruction, then the dataset's text); when empty,
  // the content is one Content piece.
  std::vector<PromptPiece> parts = {};
};

struct ChatTemplate {
  ChatStyle style = ChatStyle::None;
  std::string default_system;  // system message the template adds when none is given ("" = none)
  std::string bos_text;        // BOS spelled out where the template writes it (Llama 2/3)

  // Detects the style and default system message from a Jinja chat template.
  // An empty or unrecognised template gives style None.
  static ChatTemplate from_jinja(std::string_view jinja, std::string_view bos_text = "");

  // The prompt as pieces: the template's own text is Markup, each message's content its
  // parts (or one Content piece). With style None, throws rlhf::Error (no chat template).
  PromptPieces render(std::span<const ChatMessage> messages, bool add_generation_prompt = true) const;
  // The prompt text: render() joined.
  std::string apply(std::span<const ChatMessage> messages, bool add_generation_prompt = true) const;
};

const char* chat_style_name(ChatStyle s);

}  // namespace rlhf::text
