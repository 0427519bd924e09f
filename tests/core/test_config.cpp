// Model config parsing, the registry, and the atomic file writer.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "rlhf/model/config.h"
#include "rlhf/model/registry.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"
#include "test_util.h"

namespace rlhf {
namespace {

using rlhf::testing::error_of;

nlohmann::json smol_config() {
  return nlohmann::json::parse(R"({"model_type": "llama", "vocab_size": 49152, "hidden_size": 576,
    "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
    "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "tie_word_embeddings": true, "max_position_embeddings": 8192})");
}

TEST(Config, ParsesSmolLM2AndCountsItsParameters) {
  ModelConfig c = parse_hf_config(smol_config(), "config.json");
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.num_kv_heads, 3);
  EXPECT_DOUBLE_EQ(c.rope_theta, 100000.0);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.num_parameters(), 134515008);  // SmolLM2-135M's published count
  // and back: the config we write parses to the same shape
  ModelConfig d = parse_hf_config(to_hf_config(c), "x");
  EXPECT_EQ(d.num_parameters(), c.num_parameters());
}

TEST(Config, RopeScalingAndQwenDefaults) {
  auto j = smol_config();
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"original_max_position_embeddings", 8192}};
  EXPECT_EQ(parse_hf_config(j, "c").rope_scaling.type, "llama3");
  j = smol_config();
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 5e5}};
  j.erase("rope_theta");
  auto c = parse_hf_config(j, "c");
  EXPECT_DOUBLE_EQ(c.rope_theta, 5e5);
  EXPECT_EQ(c.rope_scaling.type, "");
  j = smol_config();
  j["model_type"] = "qwen2";
  EXPECT_TRUE(parse_hf_config(j, "c").attention_bias);
}

TEST(Config, ErrorsNameTheFileAndTheKey) {
  auto j = smol_config();
  j.erase("hidden_size");
  auto msg = error_of([&] { parse_hf_config(j, "/m/config.json"); });
  EXPECT_NE(msg.find("/m/config.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("hidden_size"), std::string::npos) << msg;
  j = smol_config();
  j["num_attention_heads"] = "nine";
  msg = error_of([&] { parse_hf_config(j, "c.json"); });
  EXPECT_NE(msg.find("num_attention_heads"), std::string::npos) << msg;
  j = smol_config();
  j["num_key_value_heads"] = 4;
  msg = error_of([&] { parse_hf_config(j, "c.json"); });
  EXPECT_NE(msg.find("multiple"), std::string::npos) << msg;
  j = smol_config();
  j["model_type"] = "gpt_neox";
  msg = error_of([&] { parse_hf_config(j, "c.json"); });
  EXPECT_NE(msg.find("gpt_neox"), std::string::npos) << msg;
  j = smol_config();
  j["vocab_size"] = int64_t(1) << 40;
  EXPECT_NE(error_of([&] { parse_hf_config(j, "c.json"); }).find("vocab_size"), std::string::npos);
}

TEST(Registry, ResolvesNamesAndPathsWithClearErrors) {
  auto dir = testing::scratch_dir();
  setenv("RLHF_CACHE", dir.c_str(), 1);
  auto msg = error_of([] { resolve_model_reference(kDefaultModel); });
  EXPECT_NE(msg.find("scripts/setup"), std::string::npos) << msg;
  msg = error_of([] { resolve_model_reference("/no/such/model.gguf"); });
  EXPECT_NE(msg.find("/no/such/model.gguf"), std::string::npos) << msg;
  EXPECT_NE(msg.find(kDefaultModel), std::string::npos) << msg;
  std::filesystem::create_directories(dir / "models");
  write_file_atomic((dir / "models" / registered_models()[0].file).string(), "x");
  EXPECT_EQ(resolve_model_reference(kDefaultModel), (dir / "models" / registered_models()[0].file).string());
  unsetenv("RLHF_CACHE");
}

TEST(Fs, AtomicWriteReplacesWholeFileAndLeavesNoTemp) {
  auto dir = testing::scratch_dir();
  auto p = (dir / "sub" / "f.txt").string();
  write_file_atomic(p, "first");
  write_file_atomic(p, "second");
  EXPECT_EQ(read_file(p), "second");
  int n = 0;
  for (auto& e : std::filesystem::directory_iterator(dir / "sub")) (void)e, ++n;
  EXPECT_EQ(n, 1);
  EXPECT_THROW(read_file((dir / "missing").string()), Error);
  EXPECT_THROW(read_file(p, 3), Error);  // larger than allowed
}

}  // namespace
}  // namespace rlhf
