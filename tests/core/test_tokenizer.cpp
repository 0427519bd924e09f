// Tokenizer behaviour on small hand-made vocabularies: merge order, added tokens, special
// handling, streaming, pre-tokenizer splits, and the errors of malformed tokenizer.json.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <thread>
#include <nlohmann/json.hpp>

#include "rlhf/text/pretokenizer.h"
#include "rlhf/text/tokenizer.h"
#include "rlhf/util/error.h"
#include "test_util.h"

namespace {

using nlohmann::json;
using rlhf::text::AddedToken;
using rlhf::text::PreTokenizer;
using rlhf::text::StreamDecoder;
using rlhf::text::TokenizerSpec;

using rlhf::testing::byte_char;

// Tokens 0..255 are the bytes; then "bc", "ab", "aa", "Ġw", "Ġwo", <|end|> (special), <|e (user).
TokenizerSpec small_spec() {
  TokenizerSpec s;
  s.source = "small-spec";
  for (int b = 0; b < 256; ++b) s.tokens.push_back(byte_char(b));
  for (const char* t : {"bc", "ab", "aa", "Ġw", "Ġwo", "<|end|>", "<|e"}) s.tokens.push_back(t);
  s.merges = {{"b", "c"}, {"a", "b"}, {"a", "a"}, {"Ġ", "w"}, {"Ġw", "o"}};
  s.token_types.assign(s.tokens.size(), 1);
  s.token_types[261] = 3;
  s.token_types[262] = 4;
  s.special.bos = 261;
  s.special.eos = 261;
  return s;
}
constexpr int32_t kBC = 256, kAB = 257, kAA = 258, kSpW = 259, kSpWo = 260, kEnd = 261, kE = 262;

TEST(TokenizerBpe, MergesByRankNotPosition) {
  auto tok = rlhf::text::make_bpe_tokenizer(small_spec());
  EXPECT_EQ(tok->encode("abc"), (std::vector<int32_t>{'a', kBC}));  // "bc" ranks before "ab"
  EXPECT_EQ(tok->encode("abd"), (std::vector<int32_t>{kAB, 'd'}));
  EXPECT_EQ(tok->encode("aaa"), (std::vector<int32_t>{kAA, 'a'}));  // equal ranks: leftmost first
  EXPECT_EQ(tok->encode("aaaa"), (std::vector<int32_t>{kAA, kAA}));
  EXPECT_EQ(tok->encode(" wo w"), (std::vector<int32_t>{kSpWo, kSpW}));
  EXPECT_EQ(tok->encode(""), std::vector<int32_t>{});
  EXPECT_EQ(tok->encode("abc"), (std::vector<int32_t>{'a', kBC}));  // again, from the cache
}

TEST(TokenizerBpe, AddedTokensSplitOutLongestFirst) {
  auto tok = rlhf::text::make_bpe_tokenizer(small_spec());
  EXPECT_EQ(tok->encode("x<|end|>y"), (std::vector<int32_t>{'x', kEnd, 'y'}));
  EXPECT_EQ(tok->encode("<|e<|end|>"), (std::vector<int32_t>{kE, kEnd}));
  // Without parse_special a special token stays text, hiding the user-defined "<|e" in it;
  // user-defined tokens elsewhere are still split out (HF's encode_special_tokens).
  auto plain = tok->encode("<|end|>", false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), kEnd), 0);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), kE), 0);
  EXPECT_EQ(tok->decode(plain), "<|end|>");
  EXPECT_EQ(tok->encode("a<|e", false), (std::vector<int32_t>{'a', kE}));
  EXPECT_TRUE(tok->is_special(kEnd));
  EXPECT_FALSE(tok->is_special(kE));
  EXPECT_EQ(tok->decode(std::vector<int32_t>{'a', kEnd, 'b'}, true), "ab");
  EXPECT_EQ(tok->decode(std::vector<int32_t>{'a', kEnd, 'b'}, false), "a<|end|>b");
  EXPECT_EQ(tok->token_id("<|end|>"), kEnd);
  EXPECT_EQ(tok->token_id("Ġwo"), kSpWo);
}

TEST(TokenizerBpe, SpecAddedTokensMayExtendTheVocabulary) {
  auto spec = small_spec();
  spec.added.push_back({300, "<tool>", true});
  spec.added.push_back({301, "héllo", false});
  auto tok = rlhf::text::make_bpe_tokenizer(spec);
  EXPECT_EQ(tok->vocab_size(), 302u);
  EXPECT_EQ(tok->encode("a<tool>héllo"), (std::vector<int32_t>{'a', 300, 301}));
  EXPECT_EQ(tok->decode(tok->encode("a<tool>héllo")), "a<tool>héllo");
  EXPECT_TRUE(tok->is_special(300));
  EXPECT_EQ(tok->token_bytes(301), "héllo");
}

TEST(TokenizerBpe, EncodeSequenceAddsBosAndEos) {
  auto spec = small_spec();
  spec.special.add_bos = true;
  auto tok = rlhf::text::make_bpe_tokenizer(spec);
  EXPECT_EQ(tok->encode_sequence("ab"), (std::vector<int32_t>{kEnd, kAB}));
  auto s = tok->special();
  s.add_eos = true;
  tok->set_special(s);
  EXPECT_EQ(tok->encode_sequence("ab"), (std::vector<int32_t>{kEnd, kAB, kEnd}));
  EXPECT_EQ(tok->encode("ab"), (std::vector<int32_t>{kAB}));
}

TEST(TokenizerBpe, InvalidUtf8RoundTripsByteForByte) {
  auto tok = rlhf::text::make_bpe_tokenizer(small_spec());
  const std::string text = "\xff\xfe ab \xc3 \xe2\x82 z\xc3\xa9";
  auto ids = tok->encode(text);
  EXPECT_EQ(tok->decode(ids), text);
  EXPECT_EQ(tok->token_bytes(0xff), "\xff");
  EXPECT_EQ(tok->token_bytes(-1), "");
  EXPECT_EQ(tok->decode(std::vector<int32_t>{'a', 99999}), "a");  // ids past the vocabulary: no text
}

TEST(TokenizerBpe, EncodesFromManyThreadsAtOnce) {
  auto tok = rlhf::text::make_bpe_tokenizer(small_spec());
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) texts.push_back(std::string(size_t(i % 7), 'a') + " wo" + std::to_string(i) + "bc<|end|>");
  std::vector<std::vector<int32_t>> want;
  for (const auto& t : texts) want.push_back(tok->encode(t));
  std::atomic<int> mismatches = 0;
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([&] {
      for (int round = 0; round < 20; ++round)
        for (size_t i = 0; i < texts.size(); ++i) mismatches += tok->encode(texts[i]) != want[i];
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches, 0);
}

TEST(TokenizerBpe, InconsistentSpecsAreErrors) {
  auto unknown_family = small_spec();
  unknown_family.pre = "nonesuch";
  try {
    rlhf::text::make_bpe_tokenizer(unknown_family);
    ADD_FAILURE() << "no error";
  } catch (const rlhf::Error& e) {
    EXPECT_NE(std::string(e.what()).find("small-spec"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("nonesuch"), std::string::npos) << e.what();
  }
  auto bad_merge = small_spec();
  bad_merge.merges.push_back({"a", "zz"});
  try {
    rlhf::text::make_bpe_tokenizer(bad_merge);
    ADD_FAILURE() << "no error";
  } catch (const rlhf::Error& e) {
    EXPECT_NE(std::string(e.what()).find("merges[5]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'zz'"), std::string::npos) << e.what();
  }
  auto bad_types = small_spec();
  bad_types.token_types.pop_back();
  EXPECT_THROW(rlhf::text::make_bpe_tokenizer(bad_types), rlhf::Error);
}

TEST(TokenizerStream, HoldsBackIncompleteCharacters) {
  auto tok = rlhf::text::make_bpe_tokenizer(small_spec());
  StreamDecoder d(*tok);
  EXPECT_EQ(d.push('a'), "a");
  EXPECT_EQ(d.push(0xC3), "");
  EXPECT_EQ(d.push(0xA9), "\xc3\xa9");  // é
  EXPECT_EQ(d.push(0xF0), "");           // 😀 = F0 9F 98 80
  EXPECT_EQ(d.push(0x9F), "");
  EXPECT_EQ(d.push(0x98), "");
  EXPECT_EQ(d.push(kEnd), "");  // special: skipped, the pending bytes stay
  EXPECT_EQ(d.push(0x80), "\xf0\x9f\x98\x80");
  EXPECT_EQ(d.push(0xFF), "\xef\xbf\xbd");  // never valid: replaced at once
  EXPECT_EQ(d.push(0xE2), "");
  EXPECT_EQ(d.push('b'), "\xef\xbf\xbd" "b");  // the cut-off character is replaced
  EXPECT_EQ(d.push(0xE2), "");
  EXPECT_EQ(d.push(0x82), "");
  EXPECT_EQ(d.flush(), "\xef\xbf\xbd");
  EXPECT_EQ(d.flush(), "");

  StreamDecoder keep(*tok, /*skip_special=*/false);
  EXPECT_EQ(keep.push(kEnd), "<|end|>");
}

TEST(TokenizerPreTokenizer, SplitsByFamily) {
  auto split = [](const char* family, std::string_view text) {
    std::vector<std::string_view> v;
    PreTokenizer(family).split(text, v);
    return std::vector<std::string>(v.begin(), v.end());
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(split("gpt2", "Hello world's  123 !!"), (V{"Hello", " world", "'s", " ", " 123", " !!"}));
  EXPECT_EQ(split("gpt2", "a  \n b"), (V{"a", "  \n", " b"}));
  EXPECT_EQ(split("smollm", "abc 123"), (V{"abc", " ", "1", "2", "3"}));
  EXPECT_EQ(split("smollm", "x  7"), (V{"x", "  ", "7"}));
  EXPECT_EQ(split("llama3", "12345 abc"), (V{"123", "45", " abc"}));
  EXPECT_EQ(split("llama3", "Hello\n\nworld's"), (V{"Hello", "\n\n", "world", "'s"}));
  EXPECT_EQ(split("llama3", "I'M"), (V{"I", "'M"}));
  EXPECT_EQ(split("qwen2", "12345"), (V{"1", "2", "3", "4", "5"}));
  EXPECT_EQ(split("gpt2", "a\xff" "b"), (V{"a", "\xff", "b"}));
  EXPECT_EQ(split("gpt2", ""), V{});
  EXPECT_THROW(PreTokenizer("bert"), rlhf::Error);
}

// tokenizer.json errors: each names the file and the field at fault.
class TokenizerJsonErrors : public ::testing::Test {
 protected:
  json minimal() {
    return {{"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}}}, {"merges", {"a b"}}}},
            {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
            {"added_tokens", json::array({{{"id", 3}, {"content", "<eos>"}, {"special", true}}})}};
  }
  std::string write(const std::string& name, const std::string& text) {
    auto p = (dir_ / name).string();
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
  void expect_error(const std::string& path, const std::string& field, const std::string& config = "") {
    try {
      rlhf::text::load_tokenizer_json(path, config);
      ADD_FAILURE() << "no error for " << field;
    } catch (const rlhf::Error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(config.empty() ? path : config), std::string::npos) << msg;
      EXPECT_NE(msg.find(field), std::string::npos) << msg;
    }
  }
  std::filesystem::path dir_ = rlhf::testing::scratch_dir();
};

TEST_F(TokenizerJsonErrors, MinimalFileLoads) {
  auto config = write("config.json", R"({"eos_token": {"content": "<eos>"}, "bos_token": "a", "add_bos_token": true})");
  auto tok = rlhf::text::load_tokenizer_json(write("t.json", minimal().dump()), config);
  EXPECT_EQ(tok->encode("ab<eos>ba"), (std::vector<int32_t>{2, 3, 1, 0}));
  EXPECT_EQ(tok->special().eos, 3);
  EXPECT_EQ(tok->encode_sequence("b"), (std::vector<int32_t>{0, 1}));
  EXPECT_NO_THROW(rlhf::text::load_tokenizer_json(write("u.json", minimal().dump()), (dir_ / "absent.json").string()));
}

TEST_F(TokenizerJsonErrors, NamesFileAndField) {
  expect_error(write("garbage.json", "{\"model\": "), "not valid JSON");
  expect_error(write("array.json", "[1, 2]"), "(top level)");

  json j = minimal();
  j["model"].erase("vocab");
  expect_error(write("novocab.json", j.dump()), "model.vocab");
  j = minimal();
  j["model"]["vocab"]["a"] = "zero";
  expect_error(write("vocabtype.json", j.dump()), "model.vocab[\"a\"]");
  j = minimal();
  j["model"]["vocab"]["b"] = 0;
  expect_error(write("dupid.json", j.dump()), "model.vocab[\"");
  j = minimal();
  j["model"]["merges"] = json::array({"a b", 7});
  expect_error(write("mergetype.json", j.dump()), "model.merges[1]");
  j = minimal();
  j["model"]["merges"] = json::array({"ab"});
  expect_error(write("mergespace.json", j.dump()), "model.merges[0]");
  j = minimal();
  j["model"]["merges"] = json::array({"a b", "a c"});
  expect_error(write("mergeunknown.json", j.dump()), "merges[1] = 'a c': 'c' is not in the vocabulary");
  j = minimal();
  j["model"]["merges"] = json::array({"b a"});
  expect_error(write("mergeresult.json", j.dump()), "'ba' is not in the vocabulary");
  j = minimal();
  j["model"]["type"] = "WordPiece";
  expect_error(write("wordpiece.json", j.dump()), "model.type");
  j = minimal();
  j["added_tokens"][0]["id"] = "three";
  expect_error(write("addedid.json", j.dump()), "added_tokens[0].id");
  j = minimal();
  j["added_tokens"][0].erase("content");
  expect_error(write("addedcontent.json", j.dump()), "added_tokens[0].content");
  j = minimal();
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  expect_error(write("whitespace.json", j.dump()), "pre_tokenizer");
  j = minimal();
  j.erase("pre_tokenizer");
  expect_error(write("nopre.json", j.dump()), "pre_tokenizer");
  j = minimal();
  j["pre_tokenizer"]["add_prefix_space"] = true;
  expect_error(write("prefix.json", j.dump()), "pre_tokenizer.add_prefix_space");
  j = minimal();
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers", {{{"type", "Split"}, {"pattern", {{"Regex", "\\w+"}}}, {"behavior", "Isolated"}},
                                           {{"type", "ByteLevel"}, {"use_regex", false}}}}};
  expect_error(write("regex.json", j.dump()), "pre_tokenizer.pretokenizers[0].pattern.Regex");
  j = minimal();
  j["normalizer"] = {{"type", "Lowercase"}};
  expect_error(write("lower.json", j.dump()), "normalizer");

  auto ok = write("ok.json", minimal().dump());
  expect_error(ok, "bos_token", write("badbos.json", R"({"bos_token": "<nope>"})"));
  expect_error(ok, "eos_token", write("badeos.json", R"({"eos_token": 5})"));
  expect_error(ok, "add_bos_token", write("badadd.json", R"({"add_bos_token": "yes"})"));
  expect_error((dir_ / "missing.json").string(), "no such file");
}

}  // namespace
