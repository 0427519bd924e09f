// ModelConfig: the shape of a Llama-family transformer (Llama 2/3, Mistral, Qwen2, SmolLM),
// read from a Hugging Face config.json or from GGUF metadata.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace rlhf {

struct RopeScaling {
  std::string type;           // "" (none), "linear", "llama3"
  double factor = 1.0;
  double low_freq_factor = 1.0;   // llama3
  double high_freq_factor = 4.0;  // llama3
  int64_t original_max_position = 8192;  // llama3
};

struct ModelConfig {
  std::string arch = "llama";    // llama, mistral, qwen2
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;          // hidden_size / num_heads unless given
  int64_t max_position = 4096;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;   // q/k/v projections carry a bias (Qwen2)

  // Throws rlhf::Error naming `source` when a value is missing or inconsistent.
  void validate(const std::string& source) const;
  int64_t num_parameters() const;
};

// From a Hugging Face config.json (already parsed). `path` names the file in errors.
ModelConfig parse_hf_config(const nlohmann::json& j, const std::string& path);
nlohmann::json to_hf_config(const ModelConfig& c);

}  // namespace rlhf
