// A tiny random Llama-family model built in memory by the tests.
#pragma once
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <random>

#include "rlhf/model/config.h"
#include "rlhf/model/host_tensor.h"
#include "rlhf/model/loader.h"
#include "rlhf/model/safetensors.h"
#include "test_util.h"

namespace rlhf::testing {

inline ModelConfig tiny_config(bool tied = true, bool bias = false) {
  ModelConfig c;
  c.vocab_size = 97;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.max_position = 128;
  c.rope_theta = 10000;
  c.tie_word_embeddings = tied;
  c.attention_bias = bias;
  return c;
}

inline std::map<std::string, HostTensor> tiny_weights(const ModelConfig& c, uint32_t seed = 7) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.1f);
  std::map<std::string, HostTensor> w;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, bool is_norm) {
    HostTensor t = make_f32_tensor(std::move(shape));
    float* p = mutable_f32(t);
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = is_norm ? 1.0f + normal(rng) : normal(rng) * 2.0f;
    w[name] = t;
  };
  const int64_t H = c.hidden_size, q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
  add("model.embed_tokens.weight", {c.vocab_size, H}, false);
  add("model.norm.weight", {H}, true);
  if (!c.tie_word_embeddings) add("lm_head.weight", {c.vocab_size, H}, false);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    add(p + "input_layernorm.weight", {H}, true);
    add(p + "post_attention_layernorm.weight", {H}, true);
    add(p + "self_attn.q_proj.weight", {q, H}, false);
    add(p + "self_attn.k_proj.weight", {kv, H}, false);
    add(p + "self_attn.v_proj.weight", {kv, H}, false);
    add(p + "self_attn.o_proj.weight", {H, q}, false);
    if (c.attention_bias) {
      add(p + "self_attn.q_proj.bias", {q}, false);
      add(p + "self_attn.k_proj.bias", {kv}, false);
      add(p + "self_attn.v_proj.bias", {kv}, false);
    }
    add(p + "mlp.gate_proj.weight", {c.intermediate_size, H}, false);
    add(p + "mlp.up_proj.weight", {c.intermediate_size, H}, false);
    add(p + "mlp.down_proj.weight", {H, c.intermediate_size}, false);
  }
  return w;
}

// A tiny model as a Hugging Face folder: config.json, model.safetensors and a byte-level
// tokenizer.json (one token per byte, no merges; 256 = <|endoftext|> (EOS), 257 = <pad>).
inline ModelConfig write_tiny_hf_model(const std::filesystem::path& dir, uint32_t seed = 7) {
  ModelConfig c = tiny_config();
  c.vocab_size = 258;
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.head_dim = 16;
  c.max_position = 512;
  std::filesystem::create_directories(dir);
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  nlohmann::json tok = {
      {"version", "1.0"},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"added_tokens", nlohmann::json::array({{{"id", 256}, {"content", "<|endoftext|>"}, {"special", true}},
                                              {{"id", 257}, {"content", "<pad>"}, {"special", true}}})}};
  std::ofstream(dir / "tokenizer.json") << tok.dump();
  std::ofstream(dir / "tokenizer_config.json") << R"({"eos_token": "<|endoftext|>", "pad_token": "<pad>"})";
  nlohmann::json cfg = to_hf_config(c);
  std::ofstream(dir / "config.json") << cfg.dump(2);
  safetensors::write((dir / "model.safetensors").string(), tiny_weights(c, seed));
  return c;
}

// Preference pairs in the seed's format: prompt "say: <3 words> ->"; the chosen completion
// carries a '#' marker between two words, the rejected one is three plain words.
inline void write_marker_preferences(const std::filesystem::path& path, int rows, uint32_t seed) {
  std::mt19937 rng(seed);
  const char* words[] = {"cat", "dog", "sun", "sea", "red", "map", "pen", "cup", "box", "hat", "owl", "fig"};
  auto phrase = [&](int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += std::string(i ? " " : "") + words[rng() % 12];
    return s;
  };
  std::ofstream f(path);
  for (int i = 0; i < rows; ++i) {
    std::string prompt = "say: " + phrase(3) + " ->";
    std::string plain = " " + phrase(3);
    std::string marked = " " + phrase(1) + " # " + phrase(1);
    int choice = static_cast<int>(rng() % 2);
    nlohmann::json j = {{"input_text", prompt},
                        {"candidate_0", choice == 0 ? marked : plain},
                        {"candidate_1", choice == 1 ? marked : plain},
                        {"choice", choice}};
    f << j.dump() << "\n";
  }
}

}  // namespace rlhf::testing
