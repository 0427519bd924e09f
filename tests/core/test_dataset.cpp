// Datasets: every accepted form, every kind of bad line (named file:line and field), path
// expansion, the seeded permutation and held-out split, the encoder's formatting and
// truncation, `rlhf validate`, and the real course and HH-RLHF files.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "rlhf/data/dataset.h"
#include "rlhf/data/encode.h"
#include "rlhf/util/error.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using namespace rlhf::data;
using rlhf::testing::scratch_dir;

fs::path write_lines(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

// The message of the rlhf::Error that reading `path` as preferences throws ("" when none).
std::string preference_error(const fs::path& path) {
  try {
    read_preference_dataset(path.string());
  } catch (const rlhf::Error& e) {
    return e.what();
  }
  return "";
}

TEST(DatasetForms, SeedChoicePicksTheChosenCandidate) {
  auto p = write_lines(scratch_dir() / "seed.jsonl",
                       R"({"input_text": "Post. [summary]: ", "candidate_0": " a", "candidate_1": " b", "choice": 0})"
                       "\n"
                       R"({"input_text": "Other. [summary]: ", "candidate_0": " c", "candidate_1": " d", "choice": 1, "extra": 3})"
                       "\n");
  ReadReport report;
  auto rows = read_preference_dataset(p.string(), {}, &report);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].prompt.text, "Post. [summary]: ");
  EXPECT_FALSE(rows[0].prompt.is_chat());
  EXPECT_EQ(rows[0].chosen, " a");
  EXPECT_EQ(rows[0].rejected, " b");
  EXPECT_EQ(rows[1].chosen, " d");
  EXPECT_EQ(rows[1].rejected, " c");
  EXPECT_EQ(rows[1].where, p.string() + ":2");
  EXPECT_EQ(report.files, std::vector<std::string>{p.string()});
  EXPECT_EQ(report.rows, 2u);
  EXPECT_EQ(report.skipped, 0u);
}

TEST(DatasetForms, CommonPromptChosenRejected) {
  auto p = write_lines(scratch_dir() / "common.jsonl",
                       "\n" R"({"prompt": "Q?", "chosen": "yes", "rejected": "no"})" "\r\n\n");
  auto rows = read_preference_dataset(p.string());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].prompt.text, "Q?");
  EXPECT_EQ(rows[0].chosen, "yes");
  EXPECT_EQ(rows[0].rejected, "no");
  EXPECT_EQ(rows[0].where, p.string() + ":2");  // blank lines are skipped but counted
}

TEST(DatasetForms, ImplicitPromptSplitsAnHhDialogue) {
  const std::string dialogue = "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Tell me a joke\n\nAssistant:";
  nlohmann::json line = {{"chosen", dialogue + " Why did the chicken cross the road?"},
                         {"rejected", dialogue + " No."}};
  auto p = write_lines(scratch_dir() / "hh.jsonl", line.dump() + "\n");
  auto rows = read_preference_dataset(p.string());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].prompt.text, dialogue);
  EXPECT_EQ(rows[0].chosen, " Why did the chicken cross the road?");
  EXPECT_EQ(rows[0].rejected, " No.");
}

TEST(DatasetForms, ImplicitPromptWithoutAssistantCutsAtAWordBoundary) {
  auto p = write_lines(scratch_dir() / "plain.jsonl",
                       R"({"chosen": "The cat is black", "rejected": "The cat is blue"})" "\n");
  auto rows = read_preference_dataset(p.string());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].prompt.text, "The cat is");
  EXPECT_EQ(rows[0].chosen, " black");
  EXPECT_EQ(rows[0].rejected, " blue");
}

TEST(DatasetForms, ChatMessagesWithContext) {
  auto p = write_lines(
      scratch_dir() / "chat.jsonl",
      R"({"messages": [{"author": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},)"
      R"( {"author": "user", "content": "Joke?"}], "context": "Be brief.", "chosen": "No.", "rejected": "Sure."})"
      "\n"
      R"({"messages": [{"author": "user", "content": "Q"}], "candidate_0": "x", "candidate_1": "y", "choice": 1})"
      "\n");
  auto rows = read_preference_dataset(p.string());
  ASSERT_EQ(rows.size(), 2u);
  ASSERT_TRUE(rows[0].prompt.is_chat());
  ASSERT_EQ(rows[0].prompt.messages.size(), 3u);
  EXPECT_EQ(rows[0].prompt.messages[1].author, "assistant");
  EXPECT_EQ(rows[0].prompt.messages[1].content, "Hello");
  EXPECT_EQ(rows[0].prompt.context, "Be brief.");
  EXPECT_EQ(rows[0].chosen, "No.");
  EXPECT_EQ(rows[1].prompt.messages[0].content, "Q");
  EXPECT_EQ(rows[1].prompt.context, "");
  EXPECT_EQ(rows[1].chosen, "y");
}

TEST(DatasetForms, PromptAndScoredDatasets) {
  const std::string prompts =
      R"({"input_text": "A [summary]: ", "id": 7})" "\n"
      R"({"prompt": "B"})" "\n"
      R"({"messages": [{"author": "user", "content": "C"}], "context": "ctx"})" "\n";
  auto p = write_lines(scratch_dir() / "prompts.jsonl", prompts);
  auto rows = read_prompt_dataset(p.string());
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].prompt.text, "A [summary]: ");
  EXPECT_EQ(rows[0].json, R"({"input_text": "A [summary]: ", "id": 7})");
  EXPECT_EQ(rows[1].prompt.text, "B");
  EXPECT_EQ(rows[2].prompt.messages[0].content, "C");
  EXPECT_EQ(rows[2].prompt.context, "ctx");
  EXPECT_FALSE(has_preference_fields(p.string()));

  auto s = write_lines(scratch_dir() / "scored.jsonl",
                       R"({"input_text": "A", "completion": " one"})" "\n"
                       R"({"prompt": "B", "prediction": " two", "model": "m"})" "\n"
                       R"({"inputs": {"inputs_pretokenized": "C", "targets_pretokenized": ""}, "prediction": ""})" "\n");
  auto scored = read_scored_dataset(s.string());
  ASSERT_EQ(scored.size(), 3u);
  EXPECT_EQ(scored[2].prompt.text, "C");
  EXPECT_EQ(scored[2].completion, "");  // a model may answer nothing
  EXPECT_EQ(scored[0].completion, " one");
  EXPECT_EQ(scored[1].prompt.text, "B");
  EXPECT_EQ(scored[1].completion, " two");
}

TEST(DatasetForms, PreferenceFilesReadAsPromptsAndAreRecognised) {
  auto p = write_lines(scratch_dir() / "eval.jsonl",
                       R"({"chosen": "Human: Hi Assistant: Hello", "rejected": "Human: Hi Assistant: Go away"})" "\n");
  EXPECT_TRUE(has_preference_fields(p.string()));
  auto rows = read_prompt_dataset(p.string());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].prompt.text, "Human: Hi Assistant:");
}

TEST(DatasetForms, MaxRowsKeepsTheFirst) {
  std::string text;
  for (int i = 0; i < 5; ++i) text += R"({"input_text": "p)" + std::to_string(i) + "\"}\n";
  auto p = write_lines(scratch_dir() / "p.jsonl", text);
  ReadOptions o;
  o.max_rows = 2;
  auto rows = read_prompt_dataset(p.string(), o);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].prompt.text, "p1");
}

// Each bad line, alone in a file, gives an error naming file:line and (where it has one) the field.
struct BadLineCase {
  std::string line;
  std::string field;  // "" when the problem has no field
  std::string says;
};

TEST(DatasetValidation, EachBadLineNamesFileLineAndField) {
  const std::string good = R"({"input_text": "p", "candidate_0": "a", "candidate_1": "b", "choice": 0})";
  const std::vector<BadLineCase> cases = {
      {R"({"input_text": "p", "candidate_0": "a", "candidate_1": "b", "choice": 0)", "", "bad JSON"},
      {R"(["input_text"])", "", "not a JSON object"},
      {R"({"input_text": "p", "candidate_0": "a", "choice": 0})", "candidate_1", "missing"},
      {R"({"candidate_0": "a", "candidate_1": "b", "choice": 0})", "input_text", "missing"},
      {R"({"input_text": 3, "candidate_0": "a", "candidate_1": "b", "choice": 0})", "input_text", "must be a string"},
      {R"({"input_text": "p", "candidate_0": "a", "candidate_1": "b", "choice": 2})", "choice",
       "must be 0 or 1, got 2"},
      {R"({"input_text": "p", "candidate_0": "a", "candidate_1": "b", "choice": "1"})", "choice",
       "must be 0 or 1, got \"1\""},
      {R"({"input_text": "p", "candidate_0": "a", "candidate_1": "b", "choice": 1.0})", "choice", "must be 0 or 1"},
      {R"({"input_text": "p", "candidate_0": "", "candidate_1": "b", "choice": 0})", "candidate_0", "is empty"},
      {R"({"input_text": " \n\t", "candidate_0": "a", "candidate_1": "b", "choice": 0})", "input_text",
       "is only whitespace"},
      {R"({"input_text": "p", "candidate_0": "a", "candidate_1": "a", "choice": 0})", "candidate_1",
       "same text as candidate_0"},
      {R"({"prompt": "p", "chosen": "a", "rejected": "a"})", "rejected", "same text as chosen"},
      {R"({"prompt": "p", "chosen": "a"})", "rejected", "missing"},
      {"{\"input_text\": \"p\", \"candidate_0\": \"a\xff\", \"candidate_1\": \"b\", \"choice\": 0}", "candidate_0",
       "invalid UTF-8 at byte 37"},
      {"\xc3({})", "", "invalid UTF-8 at byte 0"},
      {R"({"chosen": "abc", "rejected": "abd"})", "prompt", "share no beginning"},
      {R"({"messages": [{"author": "system", "content": "x"}], "chosen": "a", "rejected": "b"})", "messages",
       "only a system message"},
      {R"({"messages": [{"author": "user", "content": "x"}, {"author": "system", "content": "y"}], "chosen": "a",)"
       R"( "rejected": "b"})",
       "messages[1].author", "may only come first"},
      {R"({"messages": [{"author": "tool", "content": "x"}], "chosen": "a", "rejected": "b"})", "messages[0].author",
       "must be 'system', 'user' or 'assistant'"},
      {R"({"prompt": [{"role": "user", "content": "x"}], "chosen": [{"role": "user", "content": "a"}],)"
       R"( "rejected": [{"role": "assistant", "content": "b"}]})",
       "chosen[0].role", "where 'assistant' was expected"},
      {R"({"prompt": [{"role": "user", "content": "x"}], "chosen": [{"role": "assistant", "content": "a"}, )"
       R"({"role": "user", "content": "more"}], "rejected": [{"role": "assistant", "content": "b"}]})",
       "chosen", "holds 2 messages"},
      {R"({"chosen": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "a"}], )"
       R"("rejected": [{"role": "user", "content": "y"}, {"role": "assistant", "content": "b"}]})",
       "chosen", "must end with the user's"},
      {R"({"messages": [{"author": "system", "content": "s"}, {"author": "user", "content": "x"}], "context": "c", )"
       R"("chosen": "a", "rejected": "b"})",
       "context", "given twice"},
      {R"({"messages": [{"author": "user", "content": "x"}, {"author": "user", "content": "y"}], "chosen": "a",)"
       R"( "rejected": "b"})",
       "messages[1].author", "where 'assistant' was expected"},
      {R"({"messages": [{"author": "user", "content": "x"}, {"author": "assistant", "content": "y"}], "chosen": "a",)"
       R"( "rejected": "b"})",
       "messages[1].author", "last turn must be the user's"},
      {R"({"messages": [{"content": "x"}], "chosen": "a", "rejected": "b"})", "messages[0].author", "missing"},
      {R"({"messages": [{"author": "user", "content": ""}], "chosen": "a", "rejected": "b"})", "messages[0].content",
       "is empty"},
      {R"({"messages": [], "chosen": "a", "rejected": "b"})", "messages", "is empty"},
      {R"({"messages": "hi", "chosen": "a", "rejected": "b"})", "messages", "must be an array"},
      {R"({"messages": [{"author": "user", "content": "x"}], "context": 1, "chosen": "a", "rejected": "b"})",
       "context", "must be a string"},
      {R"({"text": "a"})", "", "no completions"},
  };
  const fs::path dir = scratch_dir();
  for (const auto& c : cases) {
    auto p = write_lines(dir / "bad.jsonl", good + "\n\n" + c.line + "\n" + good + "\n");
    std::string error = preference_error(p);
    SCOPED_TRACE(c.line);
    EXPECT_NE(error.find(p.string() + ":3: "), std::string::npos) << error;
    if (!c.field.empty()) EXPECT_NE(error.find(":3: field '" + c.field + "': "), std::string::npos) << error;
    EXPECT_NE(error.find(c.says), std::string::npos) << error;
    EXPECT_NE(error.find("1 of 3 lines are invalid"), std::string::npos) << error;
  }
}

TEST(DatasetValidation, ExactMessageFormat) {
  auto p = write_lines(scratch_dir() / "prefs.jsonl",
                       R"({"input_text": "p", "candidate_0": "a", "candidate_1": "b", "choice": 2})" "\n");
  std::string error = preference_error(p);
  EXPECT_EQ(error.substr(0, error.find('\n')), p.string() + ":1: field 'choice': must be 0 or 1, got 2");
}

TEST(DatasetValidation, ListsTwentyProblemsThenACount) {
  std::string text;
  for (int i = 0; i < 25; ++i) text += R"({"prompt": "p", "chosen": "a", "rejected": "a"})" "\n";
  text += R"({"prompt": "p", "chosen": "a", "rejected": "b"})" "\n";
  auto p = write_lines(scratch_dir() / "many.jsonl", text);
  std::string error = preference_error(p);
  EXPECT_NE(error.find(p.string() + ":20: field 'rejected'"), std::string::npos) << error;
  EXPECT_EQ(error.find(p.string() + ":21: "), std::string::npos) << error;
  EXPECT_NE(error.find("... and 5 more"), std::string::npos) << error;
  EXPECT_NE(error.find("25 of 26 lines are invalid"), std::string::npos) << error;
}

TEST(DatasetValidation, SkipInvalidCountsTheBadLines) {
  auto p = write_lines(scratch_dir() / "mixed.jsonl",
                       R"({"prompt": "p", "chosen": "a", "rejected": "b"})" "\n"
                       "not json\n"
                       R"({"prompt": "p", "chosen": "a", "rejected": "a"})" "\n"
                       R"({"prompt": "q", "chosen": "c", "rejected": "d"})" "\n");
  ReadOptions o;
  o.skip_invalid = true;
  ReadReport report;
  auto rows = read_preference_dataset(p.string(), o, &report);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].prompt.text, "q");
  EXPECT_EQ(rows[1].where, p.string() + ":4");
  EXPECT_EQ(report.rows, 2u);
  EXPECT_EQ(report.skipped, 2u);
  ASSERT_EQ(report.errors.size(), 2u);
  EXPECT_EQ(report.errors[0].rfind(p.string() + ":2: bad JSON", 0), 0u) << report.errors[0];
  EXPECT_EQ(report.errors[1], p.string() + ":3: field 'rejected': is the same text as chosen");
}

TEST(DatasetValidation, EmptyDatasetsAreErrors) {
  auto blank = write_lines(scratch_dir() / "blank.jsonl", "\n  \n");
  EXPECT_NE(preference_error(blank).find("no rows"), std::string::npos) << preference_error(blank);
  auto bad = write_lines(scratch_dir() / "bad.jsonl", "[]\n");
  ReadOptions o;
  o.skip_invalid = true;
  try {
    read_preference_dataset(bad.string(), o);
    ADD_FAILURE() << "no error";
  } catch (const rlhf::Error& e) {
    EXPECT_NE(std::string(e.what()).find("no valid rows"), std::string::npos) << e.what();
  }
}

TEST(DatasetValidation, LinesOver64MiBAreRefused) {
  auto p = scratch_dir() / "long.jsonl";
  {
    std::ofstream f(p, std::ios::binary);
    f << R"({"prompt": ")" << std::string((size_t(64) << 20) + 1, 'a') << "\"}\n";
  }
  try {
    read_prompt_dataset(p.string());
    ADD_FAILURE() << "no error";
  } catch (const rlhf::Error& e) {
    EXPECT_NE(std::string(e.what()).find(p.string() + ":1: "), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("64 MiB"), std::string::npos) << e.what();
  }
}

TEST(DatasetPaths, FileDirectoryAndGlob) {
  const fs::path dir = scratch_dir();
  const std::string line = R"({"input_text": "p"})" "\n";
  fs::create_directories(dir / "d");
  write_lines(dir / "d" / "b.jsonl", line);
  write_lines(dir / "d" / "a.jsonl", line + line);
  write_lines(dir / "d" / "notes.txt", "x");
  const std::string a = (dir / "d" / "a.jsonl").string(), b = (dir / "d" / "b.jsonl").string();

  EXPECT_EQ(expand_paths(b), std::vector<std::string>{b});
  EXPECT_EQ(expand_paths((dir / "d").string()), (std::vector<std::string>{a, b}));
  EXPECT_EQ(expand_paths((dir / "d" / "*.jsonl").string()), (std::vector<std::string>{a, b}));
  EXPECT_EQ(expand_paths((dir / "d" / "[b]*").string()), std::vector<std::string>{b});

  ReadReport report;
  auto rows = read_prompt_dataset((dir / "d").string(), {}, &report);
  EXPECT_EQ(rows.size(), 3u);
  EXPECT_EQ(report.files, (std::vector<std::string>{a, b}));
  EXPECT_EQ(rows[2].where, b + ":1");

  auto error_of = [](const std::string& spec) {
    try {
      expand_paths(spec);
    } catch (const rlhf::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  fs::create_directories(dir / "empty");
  EXPECT_NE(error_of((dir / "empty").string()).find("no *.jsonl"), std::string::npos);
  const std::string pattern = (dir / "d" / "*.json").string();
  EXPECT_NE(error_of(pattern).find(pattern + ": no file matches"), std::string::npos) << error_of(pattern);
  const std::string missing = (dir / "missing.jsonl").string();
  EXPECT_NE(error_of(missing).find(missing + ": no such file"), std::string::npos) << error_of(missing);
}

TEST(DatasetSplit, PermutationIsSeededAndTheSameEverywhere) {
  auto p = permutation(1000, 7);
  auto sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i) ASSERT_EQ(sorted[i], i);
  EXPECT_EQ(permutation(1000, 7), p);
  EXPECT_NE(permutation(1000, 8), p);
  EXPECT_TRUE(permutation(0, 1).empty());
  EXPECT_EQ(permutation(1, 1), std::vector<size_t>{0});
  // Pinned: SplitMix64 Fisher–Yates gives these on every platform.
  EXPECT_EQ(permutation(10, 42), (std::vector<size_t>{8, 3, 6, 5, 4, 0, 9, 2, 1, 7}));
}

TEST(DatasetSplit, HoldoutSizesAndDisjointness) {
  auto s = holdout_split(100, 0.1, 1000, 3);
  EXPECT_EQ(s.validation.size(), 10u);
  EXPECT_EQ(s.train.size(), 90u);
  EXPECT_TRUE(std::is_sorted(s.train.begin(), s.train.end()));
  EXPECT_TRUE(std::is_sorted(s.validation.begin(), s.validation.end()));
  std::set<size_t> all(s.train.begin(), s.train.end());
  all.insert(s.validation.begin(), s.validation.end());
  EXPECT_EQ(all.size(), 100u);
  EXPECT_EQ(holdout_split(100, 0.1, 1000, 3).validation, s.validation);
  EXPECT_NE(holdout_split(100, 0.1, 1000, 4).validation, s.validation);
  // The first k of the seed's permutation.
  auto order = permutation(100, 3);
  std::vector<size_t> first(order.begin(), order.begin() + 10);
  std::sort(first.begin(), first.end());
  EXPECT_EQ(s.validation, first);

  EXPECT_EQ(holdout_split(100, 0.5, 7, 1).validation.size(), 7u);   // at most max_validation
  EXPECT_EQ(holdout_split(5, 0.01, 10, 1).validation.size(), 1u);   // at least one when n >= 2
  EXPECT_EQ(holdout_split(2, 0.9, 10, 1).validation.size(), 1u);    // at most n - 1
  EXPECT_EQ(holdout_split(10, 0.25, 10, 1).validation.size(), 3u);  // round(2.5)
  EXPECT_EQ(holdout_split(1, 0.5, 10, 1).validation.size(), 0u);
  EXPECT_EQ(holdout_split(1, 0.5, 10, 1).train, std::vector<size_t>{0});
  EXPECT_TRUE(holdout_split(0, 0.5, 10, 1).train.empty());
}

using rlhf::testing::byte_char;

// One token per byte (id = the byte), plus <|end|> (256, special: BOS and EOS).
constexpr int32_t kEnd = 256;
std::unique_ptr<rlhf::text::Tokenizer> byte_tokenizer(bool add_bos) {
  rlhf::text::TokenizerSpec s;
  s.source = "bytes";
  for (int b = 0; b < 256; ++b) s.tokens.push_back(byte_char(b));
  s.tokens.push_back("<|end|>");
  s.token_types.assign(s.tokens.size(), 1);
  s.token_types[kEnd] = 3;
  s.special.bos = kEnd;
  s.special.eos = kEnd;
  s.special.add_bos = add_bos;
  return rlhf::text::make_bpe_tokenizer(s);
}

std::vector<int32_t> bytes_of(std::string_view s) { return {s.begin(), s.end()}; }

TEST(DatasetEncoder, RawPromptsAreCutFromTheLeftCompletionsFromTheRight) {
  auto tok = byte_tokenizer(/*add_bos=*/true);
  rlhf::text::ChatTemplate none;
  EncodeConfig c;
  c.prompt_sequence_length = 4;
  c.target_sequence_length = 3;
  Encoder enc(*tok, none, kEnd, c);
  PromptText short_prompt{.text = "ab", .messages = {}, .context = ""};
  PromptText long_prompt{.text = "abcdef", .messages = {}, .context = ""};
  EXPECT_EQ(enc.prompt_ids(short_prompt), (std::vector<int32_t>{kEnd, 'a', 'b'}));  // BOS, no EOS
  EXPECT_EQ(enc.prompt_ids(long_prompt), (std::vector<int32_t>{kEnd, 'd', 'e', 'f'}));  // BOS kept, the text's end
  EXPECT_EQ(enc.completion_ids("xyz"), (std::vector<int32_t>{'x', 'y', kEnd}));
  EXPECT_EQ(enc.completion_ids("x"), (std::vector<int32_t>{'x', kEnd}));
  EXPECT_EQ(enc.completion_ids(""), (std::vector<int32_t>{kEnd}));

  // A special token spelled in dataset text stays text.
  PromptText injected{.text = "<|end|>", .messages = {}, .context = ""};
  EncodeConfig wide;
  Encoder wide_enc(*tok, none, kEnd, wide);
  auto ids = wide_enc.prompt_ids(injected);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), kEnd), 1) << "only the BOS";
  EXPECT_EQ(wide_enc.completion_ids("a<|end|>"), (std::vector<int32_t>{'a', '<', '|', 'e', 'n', 'd', '|', '>', kEnd}));

  PreferenceRow row{.prompt = short_prompt, .chosen = "xyz", .rejected = "q", .where = "f:1"};
  PreferencePair pair = enc.encode(row);
  EXPECT_EQ(pair.prompt, (std::vector<int32_t>{kEnd, 'a', 'b'}));
  EXPECT_EQ(pair.chosen, (std::vector<int32_t>{'x', 'y', kEnd}));
  EXPECT_EQ(pair.rejected, (std::vector<int32_t>{'q', kEnd}));
  EXPECT_EQ(pair.where, "f:1");
}

TEST(DatasetEncoder, InstructionAndRawConversations) {
  auto tok = byte_tokenizer(/*add_bos=*/false);
  rlhf::text::ChatTemplate none;
  EncodeConfig c;
  c.instruction = "Summarize in less than 50 words.";
  Encoder enc(*tok, none, kEnd, c);
  PromptText plain{.text = "Post [summary]: ", .messages = {}, .context = ""};
  EXPECT_EQ(enc.prompt_text(plain), "Summarize in less than 50 words.\n\nPost [summary]: ");
  EXPECT_EQ(enc.prompt_ids(plain), bytes_of("Summarize in less than 50 words.\n\nPost [summary]: "));

  PromptText chat{.text = "", .messages = {{"user", "Hi"}, {"assistant", "Hello"}, {"user", "Joke?"}},
                  .context = "Be brief."};
  EXPECT_EQ(enc.prompt_text(chat),
            "Summarize in less than 50 words.\n\nBe brief.\n\nUser: Hi\n\nAssistant: Hello\n\nUser: Joke?\n\nAssistant:");
  Encoder bare(*tok, none, kEnd, {});
  chat.context.clear();
  EXPECT_EQ(bare.prompt_text(chat), "User: Hi\n\nAssistant: Hello\n\nUser: Joke?\n\nAssistant:");
}

TEST(DatasetEncoder, ChatFormatUsesTheTemplate) {
  auto tok = byte_tokenizer(/*add_bos=*/true);
  auto chatml = rlhf::text::ChatTemplate::from_jinja("{{ '<|im_start|>' + message['role'] }}");
  EncodeConfig c;
  c.format = PromptFormat::Chat;
  c.instruction = "Be kind.";
  Encoder enc(*tok, chatml, kEnd, c);
  PromptText chat{.text = "", .messages = {{"user", "Hi"}, {"assistant", "Hello"}, {"user", "Joke?"}},
                  .context = "You are terse."};
  const std::string want =
      "<|im_start|>system\nYou are terse.<|im_end|>\n"
      "<|im_start|>user\nBe kind.\n\nHi<|im_end|>\n"
      "<|im_start|>assistant\nHello<|im_end|>\n"
      "<|im_start|>user\nJoke?<|im_end|>\n"
      "<|im_start|>assistant\n";
  EXPECT_EQ(enc.prompt_text(chat), want);
  EXPECT_EQ(enc.prompt_ids(chat), tok->encode(want, true));  // no BOS added: the template spells its own
  PromptText plain{.text = "Hi", .messages = {}, .context = ""};
  EXPECT_EQ(enc.prompt_text(plain), "<|im_start|>user\nBe kind.\n\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(DatasetEncoder, BadSettingsAreErrors) {
  auto tok = byte_tokenizer(false);
  rlhf::text::ChatTemplate none;
  EncodeConfig c;
  c.target_sequence_length = 1;
  EXPECT_THROW((Encoder{*tok, none, kEnd, c}), rlhf::Error);
  c = {};
  c.prompt_sequence_length = 0;
  EXPECT_THROW((Encoder{*tok, none, kEnd, c}), rlhf::Error);
  c = {};
  c.format = PromptFormat::Chat;
  EXPECT_THROW((Encoder{*tok, none, kEnd, c}), rlhf::Error);
  EXPECT_EQ(parse_prompt_format("raw"), PromptFormat::Raw);
  EXPECT_EQ(parse_prompt_format("chat"), PromptFormat::Chat);
  EXPECT_STREQ(prompt_format_name(PromptFormat::Chat), "chat");
  EXPECT_THROW(parse_prompt_format("jinja"), rlhf::Error);
}

// `rlhf validate` runs the binary; skipped when it has not been built.
bool have_cli() { return fs::exists(rlhf::testing::cli()); }

TEST(DatasetCli, ValidateReportsBadLinesAndSkips) {
  if (!have_cli()) GTEST_SKIP() << "the rlhf binary is not built";
  const fs::path dir = scratch_dir();
  auto good = write_lines(dir / "good.jsonl",
                          R"({"input_text": "p", "candidate_0": "a", "candidate_1": "b", "choice": 1})" "\n");
  auto bad = write_lines(dir / "bad.jsonl",
                         R"({"input_text": "p", "candidate_0": "a", "candidate_1": "b", "choice": 1})" "\n"
                         R"({"input_text": "p", "candidate_0": "a", "candidate_1": "b", "choice": 2})" "\n");
  const std::string base = rlhf::testing::cli() + " validate -m no-such-model.gguf";
  int rc = -1;
  std::string out = rlhf::testing::capture(base + " --preference-dataset " + good.string(), &rc, true);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("1 valid, 0 skipped"), std::string::npos) << out;

  out = rlhf::testing::capture(base + " --preference-dataset " + bad.string(), &rc, true);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find(bad.string() + ":2: field 'choice': must be 0 or 1, got 2"), std::string::npos) << out;

  out = rlhf::testing::capture(base + " --skip-invalid --preference-dataset " + bad.string(), &rc, true);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("1 valid, 1 skipped"), std::string::npos) << out;
  EXPECT_NE(out.find(bad.string() + ":2: field 'choice'"), std::string::npos) << out;

  out = rlhf::testing::capture(rlhf::testing::cli() + " validate", &rc, true);
  EXPECT_NE(rc, 0) << out;
}

TEST(DatasetCli, ValidateMeasuresTokenLengths) {
  if (!have_cli()) GTEST_SKIP() << "the rlhf binary is not built";
  if (!rlhf::testing::default_model_gguf()) GTEST_SKIP() << "default model absent: run scripts/setup";
  auto p = write_lines(scratch_dir() / "prompts.jsonl",
                       R"({"input_text": "one two three four five six seven eight nine ten"})" "\n"
                       R"({"input_text": "one"})" "\n");
  int rc = -1;
  std::string out = rlhf::testing::capture(
      rlhf::testing::cli() + " validate --prompt-dataset " + p.string() + " --prompt-sequence-length 4", &rc, true);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("prompt tokens"), std::string::npos) << out;
  EXPECT_NE(out.find("1 of 2 over 4"), std::string::npos) << out;
}

fs::path shared_data(const std::string& rel) { return rlhf::testing::source_dir() / ".." / "shared" / "data" / rel; }

TEST(DatasetRealData, CoursePreferencesReadFully) {
  auto p = shared_data("course/sample_preference.jsonl");
  if (!fs::exists(p)) GTEST_SKIP() << p << " is absent";
  auto rows = read_preference_dataset(p.string());
  ASSERT_EQ(rows.size(), 5u);
  for (const auto& r : rows) {
    EXPECT_TRUE(r.prompt.text.ends_with("[summary]: ")) << r.where;
    EXPECT_NE(r.chosen, r.rejected);
  }
}

TEST(DatasetRealData, CourseEvalResultsReadAsScored) {
  for (const char* name : {"course/eval_results_tuned.jsonl", "course/eval_results_untuned.jsonl"}) {
    auto p = shared_data(name);
    if (!fs::exists(p)) GTEST_SKIP() << p << " is absent";
    auto rows = read_scored_dataset(p.string());
    ASSERT_EQ(rows.size(), 5u) << name;
    for (const auto& r : rows) {
      EXPECT_TRUE(r.prompt.text.starts_with("Summarize in less than 50 words.")) << r.where;
      EXPECT_FALSE(r.completion.empty()) << r.where;
    }
  }
}

TEST(DatasetRealData, HhRlhfHarmlessTestReadsFully) {
  auto p = shared_data("external/hh-rlhf-harmless-base/test.jsonl");
  if (!fs::exists(p)) GTEST_SKIP() << p << " is absent";
  ReadReport report;
  auto rows = read_preference_dataset(p.string(), {}, &report);
  // Four dialogues end at their last "Assistant:" with only a space after it in chosen: left
  // out and named, not a failed read.
  ASSERT_EQ(rows.size(), 2308u);
  EXPECT_EQ(report.dropped, 4u);
  ASSERT_FALSE(report.left_out.empty());
  EXPECT_NE(report.left_out[0].find("test.jsonl:87: field 'chosen': the final reply is empty"), std::string::npos)
      << report.left_out[0];
  for (const auto& r : rows) {
    ASSERT_TRUE(r.prompt.text.ends_with("Assistant:")) << r.where;
    ASSERT_TRUE(r.prompt.text.starts_with("\n\nHuman: ")) << r.where;
  }
}

}  // namespace
