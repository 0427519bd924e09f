#include "rlhf/data/encode.h"

#include <cstdio>
#include <utility>

#include "rlhf/util/error.h"

namespace rlhf::data {

PromptFormat parse_prompt_format(const std::string& name) {
  if (name == "raw") return PromptFormat::Raw;
  if (name == "chat") return PromptFormat::Chat;
  fail("prompt format '{}': expected raw or chat", name);
}

const char* prompt_format_name(PromptFormat f) { return f == PromptFormat::Chat ? "chat" : "raw"; }

void PromptForms::add(const PromptText& prompt, const std::string& where) {
  if (prompt.is_chat()) {
    if (chat++ == 0) first_chat = where;
  } else {
    if (plain++ == 0) first_plain = where;
  }
}

PromptFormat resolve_prompt_format(const std::string& setting, const PromptForms& forms,
                                   const std::string& setting_name) {
  if (setting != "auto") return parse_prompt_format(setting);
  if (forms.chat > 0 && forms.plain > 0)
    fail("{} is auto, but the prompts mix conversations ({}, {} in all) and plain text ({}, {} in all); set {} to "
         "chat or raw to say how all of them are rendered",
         setting_name, forms.first_chat, forms.chat, forms.first_plain, forms.plain, setting_name);
  return forms.chat > 0 ? PromptFormat::Chat : PromptFormat::Raw;
}

PromptFormat choose_prompt_format(const std::string& setting, std::optional<PromptFormat> recorded,
                                  const std::string& recorded_by, const PromptForms& forms, const std::string& flag) {
  PromptFormat f;
  const bool follow_recorded = (setting.empty() || setting == "auto") && recorded;
  if (follow_recorded) {
    f = *recorded;
  } else {
    f = resolve_prompt_format(setting.empty() ? "auto" : setting, forms, flag);
    if (recorded && f != *recorded)
      std::fprintf(stderr, "[rlhf] warning: %s was trained with prompt format %s; %s %s renders the prompts otherwise\n",
                   recorded_by.c_str(), prompt_format_name(*recorded), flag.c_str(), prompt_format_name(f));
  }
  if (follow_recorded && f == PromptFormat::Raw && forms.chat > 0)
    std::fprintf(stderr,
                 "[rlhf] warning: %zu prompts are conversations (the first at %s); they are rendered in the raw format "
                 "as \"User:\"/\"Assistant:\" text, as %s was trained; %s chat renders them with the chat template\n",
                 forms.chat, forms.first_chat.c_str(), recorded_by.c_str(), flag.c_str());
  return f;
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

std::string Encoder::prompt_text(const PromptText& prompt) const { return prompt_pieces(prompt).text(); }

text::PromptPieces Encoder::prompt_pieces(const PromptText& prompt) const {
  using text::PieceKind;
  const std::string lead = config_.instruction.empty() ? "" : config_.instruction + "\n\n";
  if (config_.format == PromptFormat::Chat) {
    std::vector<text::ChatMessage> messages;
    if (!prompt.context.empty()) messages.push_back({"system", "", {{PieceKind::Fixed, prompt.context}}});
    if (prompt.is_chat()) {
      for (const Turn& t : prompt.messages) messages.push_back({t.author, t.content});
    } else {
      messages.push_back({"user", prompt.text});
    }
    for (auto& m : messages) {
      if (m.role != "user") continue;
      m.parts = {{PieceKind::Fixed, lead}, {PieceKind::Content, m.content}};  // the instruction leads the first turn
      break;
    }
    return chat_.render(messages, /*add_generation_prompt=*/true);
  }
  text::PromptPieces p;
  const auto& special = tok_.special();
  p.bos = special.add_bos && special.bos >= 0;
  p.add(PieceKind::Fixed, lead);
  if (prompt.is_chat()) {
    if (!prompt.context.empty()) p.add(PieceKind::Fixed, prompt.context + "\n\n");
    for (const Turn& t : prompt.messages) {
      p.add(PieceKind::Fixed, t.author == "user" ? "User: " : "Assistant: ");
      p.add(PieceKind::Content, t.content);
      p.add(PieceKind::Fixed, "\n\n");
    }
    p.add(PieceKind::Fixed, "Assistant:");
  } else {
    p.add(PieceKind::Content, prompt.text);
  }
  return p;
}

EncodedPrompt Encoder::encode_prompt(const PromptText& prompt, std::string_view where) const {
  text::FitOptions fit;
  fit.limit = static_cast<size_t>(config_.prompt_sequence_length);
  fit.where = where;
  text::FittedPrompt f = text::fit_prompt(tok_, prompt_pieces(prompt), fit);
  return {std::move(f.ids), f.cut};
}

std::vector<int32_t> Encoder::prompt_ids(const PromptText& prompt, std::string_view where) const {
  return encode_prompt(prompt, where).ids;
}

std::vector<int32_t> Encoder::completion_ids(std::string_view completion) const {
  std::vector<int32_t> ids = tok_.encode(completion, /*parse_special=*/false);
  const auto keep = static_cast<size_t>(config_.target_sequence_length - 1);
  if (ids.size() > keep) ids.resize(keep);
  ids.push_back(eos_id_);
  return ids;
}

PreferencePair Encoder::encode(const PreferenceRow& row) const {
  return {prompt_ids(row.prompt, row.where), completion_ids(row.chosen), completion_ids(row.rejected), row.where};
}

}  // namespace rlhf::data
