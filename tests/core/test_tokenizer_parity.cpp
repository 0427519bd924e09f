// Tokenizer parity with Hugging Face tokenizers (and python sentencepiece): the same ids on
// several hundred varied strings, for SmolLM2's tokenizer built from the GGUF metadata and
// from tokenizer.json, for the other pre-tokenizer families on the same vocabulary, with
// extra added tokens, and for a SentencePiece model; decode(encode(s)) == s throughout.
#include <gtest/gtest.h>

#include <chrono>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/tokenizer_reference.h"
#include "rlhf/model/loader.h"
#include "rlhf/text/tokenizer.h"
#include "rlhf/text/utf8.h"
#include "test_util.h"

namespace {

using nlohmann::json;
using rlhf::text::Tokenizer;
using rlhf::text::TokenizerSpec;

// The tokenizer spec of a GGUF file, as the model loader builds it.
std::string shown(const std::string& s) { return json(s).dump(-1, ' ', true, json::error_handler_t::replace); }

// Every reference string encodes to the reference ids, and the ids decode to HF's text,
// which is the string itself unless the vocabulary lacks one of its bytes.
void expect_parity(const Tokenizer& tok, const json& strings, const json& want_ids, const json& want_text,
                   bool parse_special, const std::string& label) {
  ASSERT_EQ(strings.size(), want_ids.size());
  ASSERT_EQ(strings.size(), want_text.size());
  ASSERT_GE(strings.size(), 300u);
  int failures = 0, round_trips = 0;
  for (size_t i = 0; i < strings.size(); ++i) {
    const auto s = strings[i].get<std::string>();
    const auto want = want_ids[i].get<std::vector<int32_t>>();
    const auto got = tok.encode(s, parse_special);
    if (got != want && ++failures <= 5)
      ADD_FAILURE() << label << ": string " << i << " " << shown(s) << "\n  got  " << fmt::format("{}", got)
                    << "\n  want " << fmt::format("{}", want);
    const auto back = tok.decode(got);
    round_trips += back == s;
    if (rlhf::text::utf8::sanitize(back) != want_text[i].get<std::string>() && ++failures <= 5)
      ADD_FAILURE() << label << ": string " << i << " " << shown(s) << " decodes to " << shown(back)
                    << ", HF: " << shown(want_text[i]);
  }
  EXPECT_EQ(failures, 0) << label;
  EXPECT_GE(round_trips + 3, int(strings.size())) << label << ": decode(encode(s)) != s too often";
}

TEST(TokenizerParity, GgufMetadataMatchesHf) {
  RLHF_REQUIRE_TOKENIZER_REFERENCE(r);
  // The tokenizer exactly as the model loader builds it from the GGUF's metadata.
  auto tok = std::move(rlhf::read_model(r.gguf, /*weights=*/false).tokenizer);
  EXPECT_EQ(tok->vocab_size(), 49152u);
  expect_parity(*tok, r.ref["strings"], r.ref["ids"]["smollm"], r.ref["decode"]["smollm"], true, "gguf");
  expect_parity(*tok, r.ref["strings"], r.ref["ids_no_special"]["smollm"], r.ref["decode"]["smollm"], false,
                "gguf, parse_special=false");
  EXPECT_EQ(tok->token_id("<|im_end|>"), 2);
  EXPECT_EQ(tok->token_id("Ġthe"), tok->encode(" the").at(0));
  EXPECT_FALSE(tok->token_id("no such token"));
  EXPECT_TRUE(tok->is_special(2));
  EXPECT_FALSE(tok->is_special(tok->encode("hello").at(0)));
}

TEST(TokenizerParity, TokenizerJsonMatchesHf) {
  RLHF_REQUIRE_TOKENIZER_REFERENCE(r);
  auto tok = rlhf::text::load_tokenizer_json((r.dir / "smollm/tokenizer.json").string(),
                                             (r.dir / "smollm/tokenizer_config.json").string());
  expect_parity(*tok, r.ref["strings"], r.ref["ids"]["smollm"], r.ref["decode"]["smollm"], true, "tokenizer.json");
  expect_parity(*tok, r.ref["strings"], r.ref["ids_no_special"]["smollm"], r.ref["decode"]["smollm"], false,
                "tokenizer.json, parse_special=false");
  const auto& sp = tok->special();
  EXPECT_EQ(sp.bos, 1);  // from tokenizer_config.json, given as {"content": ...}
  EXPECT_EQ(sp.eos, 2);
  EXPECT_EQ(sp.pad, 2);
  EXPECT_EQ(sp.unk, 0);
  EXPECT_FALSE(sp.add_bos);
}

TEST(TokenizerParity, LegacyMergeStringsMatchHf) {
  RLHF_REQUIRE_TOKENIZER_REFERENCE(r);
  auto tok = rlhf::text::load_tokenizer_json((r.dir / "smollm_legacy/tokenizer.json").string());
  expect_parity(*tok, r.ref["strings"], r.ref["ids"]["smollm"], r.ref["decode"]["smollm"], true, "\"a b\" merges");
}

class TokenizerFamilyParity : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerFamilyParity, MatchesHf) {
  RLHF_REQUIRE_TOKENIZER_REFERENCE(r);
  const std::string family = GetParam();
  auto spec = rlhf::text::read_tokenizer_json((r.dir / family / "tokenizer.json").string());
  EXPECT_EQ(spec.pre, family);
  auto tok = rlhf::text::make_bpe_tokenizer(std::move(spec));
  expect_parity(*tok, r.ref["strings"], r.ref["ids"][family], r.ref["decode"][family], true, family);
}

INSTANTIATE_TEST_SUITE_P(Families, TokenizerFamilyParity, ::testing::Values("gpt2", "llama3", "qwen2"),
                         [](const auto& info) { return info.param; });

TEST(TokenizerParity, AddedTokensMatchHf) {
  RLHF_REQUIRE_TOKENIZER_REFERENCE(r);
  auto tok = rlhf::text::load_tokenizer_json((r.dir / "added/tokenizer.json").string());
  EXPECT_EQ(tok->vocab_size(), 49155u);
  expect_parity(*tok, r.ref["strings"], r.ref["ids"]["added"], r.ref["decode"]["added"], true, "added");
  expect_parity(*tok, r.ref["strings"], r.ref["ids_no_special"]["added"], r.ref["decode"]["added"], false,
                "added, parse_special=false");
  const json& strings = r.ref["strings"];
  int failures = 0;
  for (size_t i = 0; i < strings.size(); ++i) {
    auto ids = r.ref["ids"]["added"][i].get<std::vector<int32_t>>();
    for (bool skip : {false, true}) {
      auto want = r.ref[skip ? "decode_skip" : "decode"]["added"][i].get<std::string>();
      auto got = tok->decode(ids, skip);
      if (got != want && ++failures <= 5)
        ADD_FAILURE() << "decode(skip_special=" << skip << ") of string " << i << ": " << shown(got) << " != " << shown(want);
    }
  }
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(tok->token_id("<|tool_call|>"), 49154);
  EXPECT_EQ(tok->encode("x<|tool_call|>ünïcödé▁tok"),
            (std::vector<int32_t>{tok->encode("x").at(0), 49154, 49152}));
}

TEST(TokenizerParity, SentencePieceMatchesPython) {
  RLHF_REQUIRE_TOKENIZER_REFERENCE(r);
  const json& sp = r.ref["sentencepiece"];
  if (sp.is_null()) GTEST_SKIP() << "python sentencepiece absent from the venv";
  auto tok = rlhf::text::load_sentencepiece((r.dir / "sp/tokenizer.model").string());
  EXPECT_EQ(tok->vocab_size(), sp["vocab_size"].get<size_t>());
  EXPECT_EQ(tok->special().bos, sp["bos"].get<int32_t>());
  EXPECT_EQ(tok->special().eos, sp["eos"].get<int32_t>());
  EXPECT_EQ(tok->special().unk, sp["unk"].get<int32_t>());
  EXPECT_EQ(tok->special().pad, -1);
  const json& strings = r.ref["strings"];
  int failures = 0;
  for (size_t i = 0; i < strings.size(); ++i) {
    auto s = strings[i].get<std::string>();
    auto want = sp["ids"][i].get<std::vector<int32_t>>();
    auto got = tok->encode(s, /*parse_special=*/false);
    if (got != want && ++failures <= 5)
      ADD_FAILURE() << "string " << i << " " << shown(s) << "\n  got  " << fmt::format("{}", got) << "\n  want "
                    << fmt::format("{}", want);
    auto back = tok->decode(got);
    if (back != sp["decoded"][i].get<std::string>() && ++failures <= 5)
      ADD_FAILURE() << "string " << i << " decodes to " << shown(back) << ", python: " << sp["decoded"][i];
  }
  EXPECT_EQ(failures, 0);
  // Control pieces spelled in the text are split out only when asked.
  auto with = tok->encode("a</s>b"), without = tok->encode("a</s>b", false);
  EXPECT_NE(std::find(with.begin(), with.end(), sp["eos"].get<int32_t>()), with.end());
  EXPECT_EQ(std::find(without.begin(), without.end(), sp["eos"].get<int32_t>()), without.end());
  EXPECT_EQ(tok->encode_sequence("hi").front(), sp["bos"].get<int32_t>());
  EXPECT_EQ(tok->decode(tok->encode_sequence("hi"), /*skip_special=*/true), "hi");
  EXPECT_EQ(tok->decode(tok->encode_sequence("hi")), "<s>hi");
}

// The whole course transcript round-trips (time printed for information, not asserted).
TEST(TokenizerRoundTrip, CourseTranscript) {
  auto model = rlhf::testing::default_model_gguf();
  if (!model) GTEST_SKIP() << "SmolLM2-135M-Instruct GGUF absent: run scripts/setup";
  auto transcript = rlhf::testing::source_dir().parent_path() / "shared/seed/course-transcript.txt";
  if (!std::filesystem::exists(transcript)) GTEST_SKIP() << transcript << " absent";
  std::string text = rlhf::testing::read_text(transcript);
  auto tok = std::move(rlhf::read_model(*model, /*weights=*/false).tokenizer);
  auto t0 = std::chrono::steady_clock::now();
  auto ids = tok->encode(text);  // a fresh tokenizer: nothing cached
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[tokenizer] %zu bytes -> %zu tokens in %.3f s\n", text.size(), ids.size(), seconds);
  EXPECT_GT(ids.size(), text.size() / 10);
  EXPECT_EQ(tok->decode(ids), text);
}

}  // namespace
