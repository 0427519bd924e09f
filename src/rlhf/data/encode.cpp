#include "rlhf/data/encode.h"

#include <utility>

#include "rlhf/util/error.h"

namespace rlhf::data {

PromptFormat parse_prompt_format(const std::string& name) {
  if (name == "raw") return PromptFormat::Raw;
  if (name == "chat") return PromptFormat::Chat;
  fail("prompt format '{}': expected raw or chat", name);
}

const char* prompt_format_name(PromptFormat f) { return f == PromptFormat::Chat ? "chat" : "raw"; }

PromptFormat resolve_prompt_format(const std::string& setting, const PromptText& first) {
  if (setting == "auto") return first.is_chat() ? PromptFormat::Chat : PromptFormat::Raw;
  return parse_prompt_format(setting);
}

Encoder::Encoder(const text::Tokenizer& tokenizer, const text::ChatTemplate& chat_template, int32_t eos_id,
                 EncodeConfig config)
    : tok_(tokenizer), chat_(chat_template), eos_id_(eos_id), config_(std::move(config)) {
  if (config_.prompt_sequence_length < 1)
    fail("prompt_sequence_length is {}; it must be at least 1", config_.prompt_sequence_length);
  if (config_.target_sequence_length < 2)
    fail("target_sequence_length is {}; it must be at least 2 (one token and EOS)", config_.target_sequence_length);
  if (config_.format == PromptFormat::Chat && chat_.style == text::ChatStyle::None)
    fail("prompt format chat: the model has no chat template this program can render; use the raw format");
}

std::string Encoder::prompt_text(const PromptText& prompt) const {
  const std::string& instruction = config_.instruction;
  if (config_.format == PromptFormat::Chat) {
    std::vector<text::ChatMessage> messages;
    if (!prompt.context.empty()) messages.push_back({"system", prompt.context});
    if (prompt.is_chat()) {
      for (const Turn& t : prompt.messages) messages.push_back({t.author, t.content});
    } else {
      messages.push_back({"user", prompt.text});
    }
    if (!instruction.empty()) {
      for (auto& m : messages) {
        if (m.role != "user") continue;
        m.content = instruction + "\n\n" + m.content;
        break;
      }
    }
    return chat_.apply(messages, /*add_generation_prompt=*/true);
  }
  std::string body;
  if (prompt.is_chat()) {
    if (!prompt.context.empty()) body = prompt.context + "\n\n";
    for (const Turn& t : prompt.messages) body += (t.author == "user" ? "User: " : "Assistant: ") + t.content + "\n\n";
    body += "Assistant:";
  } else {
    body = prompt.text;
  }
  return instruction.empty() ? body : instruction + "\n\n" + body;
}

std::vector<int32_t> Encoder::prompt_ids(const PromptText& prompt) const {
  const std::string text = prompt_text(prompt);
  std::vector<int32_t> ids;
  if (config_.format == PromptFormat::Chat) {
    ids = tok_.encode(text, /*parse_special=*/true);  // the template spells BOS itself
  } else {
    // Dataset text is text: a spelled-out special token in it stays text.
    const auto& special = tok_.special();
    if (special.add_bos && special.bos >= 0) ids.push_back(special.bos);
    std::vector<int32_t> body = tok_.encode(text, /*parse_special=*/false);
    ids.insert(ids.end(), body.begin(), body.end());
  }
  const auto keep = static_cast<size_t>(config_.prompt_sequence_length);
  if (ids.size() > keep) ids.erase(ids.begin(), ids.end() - static_cast<std::ptrdiff_t>(keep));
  return ids;
}

std::vector<int32_t> Encoder::completion_ids(std::string_view completion) const {
  std::vector<int32_t> ids = tok_.encode(completion, /*parse_special=*/false);
  const auto keep = static_cast<size_t>(config_.target_sequence_length - 1);
  if (ids.size() > keep) ids.resize(keep);
  ids.push_back(eos_id_);
  return ids;
}

PreferencePair Encoder::encode(const PreferenceRow& row) const {
  return {prompt_ids(row.prompt), completion_ids(row.chosen), completion_ids(row.rejected), row.where};
}

}  // namespace rlhf::data
