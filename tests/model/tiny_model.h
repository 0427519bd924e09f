// A tiny random Llama-family model built in memory by the tests.
#pragma once
#include <random>

#include "rlhf/model/config.h"
#include "rlhf/model/host_tensor.h"
#include "rlhf/model/loader.h"

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

}  // namespace rlhf::testing
