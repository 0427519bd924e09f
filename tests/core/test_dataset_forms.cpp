// The data forms users bring from Hugging Face and TRL: conversational preference rows (a
// prompt of messages and one assistant message each for chosen and rejected), the
// implicit-prompt form (two whole conversations), system messages, prompt datasets whose
// prompt is a list of messages, HH-RLHF dialogues whose final reply is empty (left out and
// named, not a failed read), and a validation fraction of 0.
// Lines the fuzz target (fuzz/fuzz_dataset.cpp) found mishandled are kept here as tests.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "rlhf/data/dataset.h"
#include "rlhf/util/error.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using namespace rlhf::data;
using rlhf::testing::error_of;
using rlhf::testing::scratch_dir;

fs::path write_file(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

bool same_prompt(const PromptText& a, const PromptText& b) {
  if (a.text != b.text || a.context != b.context || a.messages.size() != b.messages.size()) return false;
  for (size_t i = 0; i < a.messages.size(); ++i)
    if (a.messages[i].author != b.messages[i].author || a.messages[i].content != b.messages[i].content) return false;
  return true;
}

TEST(DataForms, TrlConversationalPreferenceReadsAsOurMessagesForm) {
  const fs::path dir = scratch_dir();
  auto trl = write_file(dir / "trl.jsonl",
                        R"({"prompt": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi?"}],)"
                        R"( "chosen": [{"role": "assistant", "content": "Hello!"}],)"
                        R"( "rejected": [{"role": "assistant", "content": "Go away."}], "score_chosen": 9.0})" "\n");
  auto ours = write_file(dir / "ours.jsonl",
                         R"({"messages": [{"author": "user", "content": "Hi?"}], "context": "Be kind.",)"
                         R"( "chosen": "Hello!", "rejected": "Go away."})" "\n");
  auto a = read_preference_dataset(trl.string());
  auto b = read_preference_dataset(ours.string());
  ASSERT_EQ(a.size(), 1u);
  EXPECT_TRUE(same_prompt(a[0].prompt, b[0].prompt));
  EXPECT_EQ(a[0].prompt.context, "Be kind.");
  EXPECT_EQ(a[0].chosen, "Hello!");
  EXPECT_EQ(a[0].rejected, "Go away.");
}

TEST(DataForms, ImplicitPromptConversationsShareTheirPromptTurns) {
  auto p = write_file(scratch_dir() / "implicit.jsonl",
                      R"({"chosen": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},)"
                      R"( {"role": "user", "content": "and 3+3?"}, {"role": "assistant", "content": "6"}],)"
                      R"( "rejected": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},)"
                      R"( {"role": "user", "content": "and 3+3?"}, {"role": "assistant", "content": "7"}]})" "\n");
  auto rows = read_preference_dataset(p.string());
  ASSERT_EQ(rows.size(), 1u);
  ASSERT_EQ(rows[0].prompt.messages.size(), 3u);
  EXPECT_EQ(rows[0].prompt.messages[2].content, "and 3+3?");
  EXPECT_EQ(rows[0].chosen, "6");
  EXPECT_EQ(rows[0].rejected, "7");
}

// A line of whole conversations without "rejected" (a fuzzed line: the key misspelled) read
// past the end of the JSON object; it names the missing field.
TEST(DataForms, ImplicitPromptConversationWithoutRejectedNamesTheField) {
  auto p = write_file(scratch_dir() / "no-rejected.jsonl",
                      R"({"chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],)"
                      R"( "rejeletio.": " A."})" "\n");
  const std::string err = error_of([&] { read_preference_dataset(p.string()); });
  EXPECT_NE(err.find(p.string() + ":1: field 'rejected': missing"), std::string::npos) << err;
}

TEST(DataForms, SystemMessagesBecomeTheContext) {
  auto p = write_file(scratch_dir() / "system.jsonl",
                      R"({"messages": [{"role": "system", "content": "Answer in French."}, )"
                      R"({"role": "user", "content": "Hello"}]})" "\n");
  auto rows = read_prompt_dataset(p.string());
  EXPECT_EQ(rows[0].prompt.context, "Answer in French.");
  ASSERT_EQ(rows[0].prompt.messages.size(), 1u);
  EXPECT_EQ(rows[0].prompt.messages[0].author, "user");
}

TEST(DataForms, APromptDatasetsPromptMayBeAListOfMessages) {
  auto p = write_file(scratch_dir() / "prompts.jsonl",
                      R"({"prompt": [{"role": "user", "content": "Summarize: a cat sat."}]})" "\n");
  auto rows = read_prompt_dataset(p.string());
  ASSERT_TRUE(rows[0].prompt.is_chat());
  EXPECT_EQ(rows[0].prompt.messages[0].content, "Summarize: a cat sat.");
}

TEST(DataForms, HhRlhfRowWithAnEmptyFinalReplyIsLeftOutAndNamed) {
  const std::string good = R"({"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: no"})";
  const std::string empty = R"({"chosen": "\n\nHuman: hi\n\nAssistant:", "rejected": "\n\nHuman: hi\n\nAssistant: no"})";
  const std::string blank = R"({"chosen": "\n\nHuman: yo\n\nAssistant: ok", "rejected": "\n\nHuman: yo\n\nAssistant: \n "})";
  auto p = write_file(scratch_dir() / "hh.jsonl", good + "\n" + empty + "\n" + blank + "\n" + good + "\n");
  ReadReport report;
  auto rows = read_preference_dataset(p.string(), {}, &report);  // strict: not an error
  EXPECT_EQ(rows.size(), 2u);
  EXPECT_EQ(report.dropped, 2u);
  ASSERT_EQ(report.left_out.size(), 2u);
  EXPECT_EQ(report.left_out[0].rfind(p.string() + ":2: field 'chosen': the final reply is empty", 0), 0u)
      << report.left_out[0];
  EXPECT_EQ(report.left_out[1].rfind(p.string() + ":3: field 'rejected': the final reply is empty", 0), 0u)
      << report.left_out[1] << ": whitespace only counts as empty";
  // A file of nothing else has no rows, and says why.
  auto only = write_file(scratch_dir() / "only.jsonl", empty + "\n");
  const std::string err = error_of([&] { read_preference_dataset(only.string()); });
  EXPECT_NE(err.find("final reply is empty"), std::string::npos) << err;
}

TEST(SmallFixes, ValidationFractionZeroHoldsOutNothing) {
  Split s = holdout_split(100, 0.0, 100, 1);
  EXPECT_TRUE(s.validation.empty());
  EXPECT_EQ(s.train.size(), 100u);
  EXPECT_EQ(holdout_split(5, 0.01, 10, 1).validation.size(), 1u);  // a positive fraction still holds one
}

}  // namespace
