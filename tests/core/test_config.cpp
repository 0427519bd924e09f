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

// A Hugging Face hub cache laid out as huggingface_hub writes it: refs/<branch> holds the
// commit, snapshots/<commit>/ the files.
TEST(Registry, HubIdsResolveFromTheHuggingFaceCacheNeverDownloading) {
  auto dir = testing::scratch_dir();
  const std::string main_commit(40, 'a'), v1_commit(40, 'b');
  const auto repo = dir / "hub" / "models--org--tiny";
  std::filesystem::create_directories(repo / "snapshots" / main_commit);
  std::filesystem::create_directories(repo / "snapshots" / v1_commit);
  write_file_atomic((repo / "refs" / "main").string(), main_commit + "\n");
  write_file_atomic((repo / "refs" / "v1").string(), v1_commit);
  unsetenv("HUGGINGFACE_HUB_CACHE");
  setenv("HF_HUB_CACHE", (dir / "hub").c_str(), 1);
  EXPECT_EQ(resolve_model_reference("org/tiny"), (repo / "snapshots" / main_commit).string());
  EXPECT_EQ(resolve_model_reference("org/tiny@v1"), (repo / "snapshots" / v1_commit).string());
  EXPECT_EQ(resolve_model_reference("org/tiny@" + v1_commit), (repo / "snapshots" / v1_commit).string());
  // HF_HOME/hub when HF_HUB_CACHE is unset.
  unsetenv("HF_HUB_CACHE");
  setenv("HF_HOME", dir.c_str(), 1);
  EXPECT_EQ(hf_hub_cache_dir(), (dir / "hub").string());
  EXPECT_EQ(resolve_model_reference("org/tiny"), (repo / "snapshots" / main_commit).string());
  // Not cached: the error names where it looked and how to fetch it.
  auto msg = error_of([] { resolve_model_reference("org/absent"); });
  EXPECT_NE(msg.find((dir / "hub" / "models--org--absent").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("hf download org/absent"), std::string::npos) << msg;
  EXPECT_NE(msg.find("HF_HUB_CACHE"), std::string::npos) << msg;
  msg = error_of([] { resolve_model_reference("org/tiny@v2"); });
  EXPECT_NE(msg.find("not in the Hugging Face cache"), std::string::npos) << msg;
  // A ref naming a snapshot that is gone, and a ref that is not a commit.
  write_file_atomic((repo / "refs" / "v3").string(), std::string(40, 'c'));
  msg = error_of([] { resolve_model_reference("org/tiny@v3"); });
  EXPECT_NE(msg.find("which is not there"), std::string::npos) << msg;
  write_file_atomic((repo / "refs" / "main").string(), "../../../etc");
  msg = error_of([] { resolve_model_reference("org/tiny"); });
  EXPECT_NE(msg.find("not hold a commit hash"), std::string::npos) << msg;
  unsetenv("HF_HOME");
  // Not hub ids: paths and odd names are not looked up there.
  for (const char* r : {"./org/tiny", "/org/tiny", "org/tiny/x", "org/..", "org/--x", "org", "org/tiny@../x"})
    EXPECT_FALSE(looks_like_hub_id(r)) << r;
  for (const char* r : {"org/tiny", "HuggingFaceTB/SmolLM2-135M-Instruct", "a.b/c_d-e@main"})
    EXPECT_TRUE(looks_like_hub_id(r)) << r;
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
