#include "rlhf/text/chat_template.h"

#include <optional>
#include <string>

#include "rlhf/text/utf8.h"
#include "rlhf/util/error.h"

namespace rlhf::text {
namespace {

// The text of a Jinja string literal whose body starts at s[0] and is closed by quote
// (escapes resolved), or nothing when the literal ends before `end` is reached (the text is
// then an expression, not a constant). Stops at `end`, which is kept out of the result.
std::optional<std::string> literal_until(std::string_view s, char quote, std::string_view end) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s.substr(i, end.size()) == end) return out;
    char c = s[i];
    if (c == quote) return std::nullopt;
    if (c == '\\' && i + 1 < s.size()) {
      char e = s[++i];
      out += e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
    } else {
      out += c;
    }
  }
  return std::nullopt;
}

// ChatML templates that add a system turn of their own spell it as one string literal:
// '<|im_start|>system\n...<|im_end|>'. A system turn built from messages[0] is not a literal.
std::string chatml_default_system(std::string_view jinja) {
  constexpr std::string_view head = "<|im_start|>system";
  for (size_t at = jinja.find(head); at != std::string_view::npos; at = jinja.find(head, at + 1)) {
    size_t q = jinja.find_last_of("'\"", at);
    if (q == std::string_view::npos) continue;
    std::string_view rest = jinja.substr(at + head.size());
    size_t nl = rest.starts_with("\\n") ? 2 : rest.starts_with("\n") ? 1 : 0;
    if (nl == 0) continue;
    if (auto text = literal_until(rest.substr(nl), jinja[q], "<|im_end|>"); text && !text->empty()) return *text;
  }
  return {};
}

// A message's content as pieces.
std::vector<PromptPiece> content_of(const ChatMessage& m) {
  if (!m.parts.empty()) return m.parts;
  return {{PieceKind::Content, m.content}};
}

// The default system message is the template's own text.
ChatMessage default_system_message(const std::string& text) { return {"system", "", {{PieceKind::Markup, text}}}; }

// Roles must be an optional system message, then user and assistant in turn.
void check_roles(std::span<const ChatMessage> messages) {
  if (messages.empty()) fail("chat: the conversation has no messages");
  size_t first = messages[0].role == "system" ? 1 : 0;
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    if (role != "system" && role != "user" && role != "assistant")
      fail("chat: message {} has role '{}'; roles are system, user and assistant", i, role);
    if (i < first) continue;
    const char* want = (i - first) % 2 == 0 ? "user" : "assistant";
    if (role != want)
      fail("chat: message {} has role '{}' where '{}' was expected (after an optional system message, "
           "roles must alternate user/assistant)", i, role, want);
  }
}

}  // namespace

const char* chat_style_name(ChatStyle s) {
  switch (s) {
    case ChatStyle::None: return "none";
    case ChatStyle::ChatML: return "chatml";
    case ChatStyle::Llama2: return "llama2";
    case ChatStyle::Llama3: return "llama3";
  }
  return "?";
}

ChatTemplate ChatTemplate::from_jinja(std::string_view jinja, std::string_view bos_text) {
  ChatTemplate t;
  t.bos_text = bos_text;
  if (jinja.find("<|im_start|>") != std::string_view::npos) {
    t.style = ChatStyle::ChatML;
    t.default_system = chatml_default_system(jinja);
  } else if (jinja.find("<|start_header_id|>") != std::string_view::npos) {
    t.style = ChatStyle::Llama3;
    if (t.bos_text.empty()) t.bos_text = "<|begin_of_text|>";
  } else if (jinja.find("[INST]") != std::string_view::npos && jinja.find("<<SYS>>") != std::string_view::npos) {
    t.style = ChatStyle::Llama2;  // [INST] without <<SYS>> (Mistral) renders differently: not recognised
    if (t.bos_text.empty()) t.bos_text = "<s>";
  }
  return t;
}

PromptPieces ChatTemplate::render(std::span<const ChatMessage> messages, bool add_generation_prompt) const {
  if (style == ChatStyle::None) fail("chat: the model has no chat template this program can render");
  check_roles(messages);
  const bool has_system = messages[0].role == "system";
  PromptPieces out;
  auto add_content = [&](std::vector<PromptPiece> parts, bool strip_left, bool strip_right) {
    strip_pieces(parts, strip_left, strip_right);
    for (auto& p : parts) out.add(p.kind, p.text);
  };
  const auto markup = [&](std::string_view text) { out.add(PieceKind::Markup, text); };
  switch (style) {
    case ChatStyle::ChatML: {
      auto turn = [&](const ChatMessage& m) {
        markup("<|im_start|>" + m.role + "\n");
        add_content(content_of(m), false, false);
        markup("<|im_end|>\n");
      };
      if (!has_system && !default_system.empty()) turn(default_system_message(default_system));
      for (const auto& m : messages) turn(m);
      if (add_generation_prompt) markup("<|im_start|>assistant\n");
      break;
    }
    case ChatStyle::Llama3: {
      markup(bos_text);
      auto turn = [&](const ChatMessage& m) {
        markup("<|start_header_id|>" + m.role + "<|end_header_id|>\n\n");
        add_content(content_of(m), true, true);  // the template trims each content
        markup("<|eot_id|>");
      };
      if (!has_system && !default_system.empty()) turn(default_system_message(default_system));
      for (const auto& m : messages) turn(m);
      if (add_generation_prompt) markup("<|start_header_id|>assistant<|end_header_id|>\n\n");
      break;
    }
    case ChatStyle::Llama2: {
      // The system message rides inside the first user turn; the template has no
      // generation prompt beyond the open [/INST]. EOS is </s> in every Llama 2 vocabulary.
      std::optional<ChatMessage> system;
      if (has_system) system = messages[0];
      else if (!default_system.empty()) system = default_system_message(default_system);
      bool first = true;
      for (const auto& m : messages.subspan(has_system ? 1 : 0)) {
        // The template trims "<<SYS>>...<</SYS>>" + content as one text: the system part
        // starts with markup, so only the content's end is trimmed then.
        const bool with_system = first && system.has_value();
        first = false;
        if (m.role == "user") {
          markup(bos_text + "[INST] ");
          if (with_system) {
            markup("<<SYS>>\n");
            add_content(content_of(*system), false, false);
            markup("\n<</SYS>>\n\n");
          }
          add_content(content_of(m), !with_system, true);
          markup(" [/INST]");
        } else {
          markup(" ");
          add_content(content_of(m), true, true);
          markup(" </s>");
        }
      }
      break;
    }
    case ChatStyle::None:
      break;
  }
  return out;
}

std::string ChatTemplate::apply(std::span<const ChatMessage> messages, bool add_generation_prompt) const {
  return render(messages, add_generation_prompt).text();
}

}  // namespace rlhf::text
