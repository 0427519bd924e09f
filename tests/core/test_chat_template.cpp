// Chat templates: style and default-system detection from Jinja, rendering equal to
// transformers' apply_chat_template (SmolLM2's own template from the GGUF, Qwen2, Llama 3,
// Llama 2), and the errors for conversations the templates do not allow.
#include <gtest/gtest.h>

#include "core/tokenizer_reference.h"
#include "rlhf/text/chat_template.h"
#include "rlhf/text/prompt_pieces.h"
#include "rlhf/text/tokenizer.h"
#include "rlhf/util/error.h"

namespace {

using rlhf::text::ChatMessage;
using rlhf::text::ChatStyle;
using rlhf::text::ChatTemplate;

TEST(ChatTemplateParity, MatchesTransformers) {
  RLHF_REQUIRE_TOKENIZER_REFERENCE(r);
  ASSERT_GE(r.chat.size(), 32u);
  std::set<std::string> seen;
  for (const auto& c : r.chat) {
    auto t = ChatTemplate::from_jinja(c["jinja"].get<std::string>(), c["bos"].get<std::string>());
    std::vector<ChatMessage> messages;
    for (const auto& m : c["messages"]) messages.push_back({m["role"], m["content"]});
    const bool gen = c["add_generation_prompt"];
    EXPECT_EQ(t.apply(messages, gen), c["text"].get<std::string>())
        << c["template"] << " (" << chat_style_name(t.style) << "), generation prompt " << gen << ", messages "
        << c["messages"].dump();
    seen.insert(c["template"]);
  }
  EXPECT_EQ(seen, (std::set<std::string>{"smollm", "qwen2", "llama3", "llama2"}));
}

// The pieces a template renders (markup parsed for special tokens, message content as text)
// encode to the ids transformers gives the rendered text, for content without special-token
// spellings: the split into pieces changes nothing but where control tokens may come from.
TEST(ChatTemplateParity, RenderedPiecesEncodeAsTransformers) {
  RLHF_REQUIRE_TOKENIZER_REFERENCE(r);
  auto tok = rlhf::text::load_tokenizer_json((r.dir / "smollm/tokenizer.json").string(),
                                             (r.dir / "smollm/tokenizer_config.json").string());
  size_t compared = 0;
  for (const auto& c : r.chat) {
    auto t = ChatTemplate::from_jinja(c["jinja"].get<std::string>(), c["bos"].get<std::string>());
    std::vector<ChatMessage> messages;
    for (const auto& m : c["messages"]) messages.push_back({m["role"], m["content"]});
    auto ids = rlhf::text::fit_prompt(*tok, t.render(messages, c["add_generation_prompt"])).ids;
    EXPECT_EQ(ids, c["ids"].get<std::vector<int32_t>>()) << c["template"] << ", messages " << c["messages"].dump();
    ++compared;
  }
  EXPECT_GE(compared, 32u);
}

TEST(ChatTemplate, DetectsStyleAndDefaultSystem) {
  auto smol = ChatTemplate::from_jinja(
      "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI "
      "assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}");
  EXPECT_EQ(smol.style, ChatStyle::ChatML);
  EXPECT_EQ(smol.default_system, "You are a helpful AI assistant named SmolLM, trained by Hugging Face");

  auto qwen = ChatTemplate::from_jinja(R"({{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }})");
  EXPECT_EQ(qwen.default_system, "You are a helpful assistant.");

  // A system turn built from messages[0] is not a default; the literal one in the else branch is.
  auto qwen25 = ChatTemplate::from_jinja(
      R"({%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }})"
      R"({%- else %}{{- "<|im_start|>system\nYou're Qwen, a helpful assistant.<|im_end|>\n" }}{%- endif %})");
  EXPECT_EQ(qwen25.default_system, "You're Qwen, a helpful assistant.");

  auto plain_chatml = ChatTemplate::from_jinja(R"({{'<|im_start|>' + message['role'] + '\n'}})");
  EXPECT_EQ(plain_chatml.style, ChatStyle::ChatML);
  EXPECT_EQ(plain_chatml.default_system, "");

  auto l3 = ChatTemplate::from_jinja("{{ '<|start_header_id|>' + message['role'] }}");
  EXPECT_EQ(l3.style, ChatStyle::Llama3);
  EXPECT_EQ(l3.bos_text, "<|begin_of_text|>");
  EXPECT_EQ(ChatTemplate::from_jinja("{{ bos_token + '[INST] <<SYS>>\\n' }}").style, ChatStyle::Llama2);
  EXPECT_EQ(ChatTemplate::from_jinja("{{ '[INST] ' + message['content'] + ' [/INST]' }}").style, ChatStyle::None);
  EXPECT_EQ(ChatTemplate::from_jinja("").style, ChatStyle::None);
  EXPECT_STREQ(chat_style_name(ChatStyle::Llama3), "llama3");
}

TEST(ChatTemplate, RendersChatML) {
  ChatTemplate t;
  t.style = ChatStyle::ChatML;
  t.default_system = "Be nice.";
  std::vector<ChatMessage> m = {{"user", "Hi"}, {"assistant", "Hello"}, {"user", "Bye"}};
  EXPECT_EQ(t.apply(m, true),
            "<|im_start|>system\nBe nice.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"
            "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n");
  std::vector<ChatMessage> with_system = {{"system", "S"}, {"user", "U"}};
  EXPECT_EQ(t.apply(with_system, false), "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n");
}

TEST(ChatTemplate, RejectsConversationsTheTemplatesDoNotAllow) {
  auto t = ChatTemplate::from_jinja("<|im_start|>");
  auto expect_error = [&](std::vector<ChatMessage> m, const std::string& part) {
    try {
      t.apply(m);
      ADD_FAILURE() << "no error for " << part;
    } catch (const rlhf::Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_error({}, "no messages");
  expect_error({{"assistant", "a"}}, "message 0 has role 'assistant' where 'user' was expected");
  expect_error({{"user", "a"}, {"user", "b"}}, "message 1 has role 'user' where 'assistant' was expected");
  expect_error({{"system", "s"}, {"system", "t"}}, "message 1 has role 'system'");
  expect_error({{"user", "a"}, {"assistant", "b"}, {"system", "s"}}, "message 2");
  expect_error({{"tool", "x"}}, "role 'tool'");
  std::vector<ChatMessage> ok = {{"user", "a"}};
  EXPECT_THROW(ChatTemplate{}.apply(ok), rlhf::Error);
}

}  // namespace
