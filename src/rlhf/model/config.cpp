#include "rlhf/model/config.h"

#include <nlohmann/json.hpp>

#include "rlhf/util/error.h"

namespace rlhf {

namespace {

int64_t need_int(const nlohmann::json& j, const char* key, const std::string& path) {
  auto it = j.find(key);
  if (it == j.end()) fail("{}: missing key '{}'", path, key);
  if (!it->is_number_integer()) fail("{}: key '{}' must be an integer", path, key);
  return it->get<int64_t>();
}

template <class T>
T opt(const nlohmann::json& j, const char* key, T def, const std::string& path) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  try {
    return it->get<T>();
  } catch (const nlohmann::json::exception&) {
    fail("{}: key '{}' has the wrong type", path, key);
  }
}

}  // namespace

ModelConfig parse_hf_config(const nlohmann::json& j, const std::string& path) {
  if (!j.is_object()) fail("{}: expected a JSON object", path);
  ModelConfig c;
  std::string model_type = opt<std::string>(j, "model_type", "llama", path);
  if (model_type != "llama" && model_type != "mistral" && model_type != "qwen2")
    fail("{}: model_type '{}' is not supported (llama, mistral, qwen2)", path, model_type);
  if (auto act = opt<std::string>(j, "hidden_act", "silu", path); act != "silu")
    fail("{}: hidden_act '{}' is not supported (silu)", path, act);
  c.arch = model_type;
  c.vocab_size = need_int(j, "vocab_size", path);
  c.hidden_size = need_int(j, "hidden_size", path);
  c.intermediate_size = need_int(j, "intermediate_size", path);
  c.num_layers = need_int(j, "num_hidden_layers", path);
  c.num_heads = need_int(j, "num_attention_heads", path);
  c.num_kv_heads = opt<int64_t>(j, "num_key_value_heads", c.num_heads, path);
  c.head_dim = opt<int64_t>(j, "head_dim", c.num_heads > 0 ? c.hidden_size / c.num_heads : 0, path);
  c.max_position = opt<int64_t>(j, "max_position_embeddings", 4096, path);
  c.rms_norm_eps = opt<double>(j, "rms_norm_eps", 1e-6, path);
  c.tie_word_embeddings = opt<bool>(j, "tie_word_embeddings", false, path);
  c.attention_bias = opt<bool>(j, "attention_bias", model_type == "qwen2", path);
  if (opt<bool>(j, "mlp_bias", false, path)) fail("{}: mlp_bias is not supported", path);

  // rope: older files put rope_theta/rope_scaling at the top, newer ones in rope_parameters.
  nlohmann::json rope = nlohmann::json::object();
  if (auto it = j.find("rope_scaling"); it != j.end() && it->is_object()) rope = *it;
  if (auto it = j.find("rope_parameters"); it != j.end() && it->is_object()) rope = *it;
  c.rope_theta = opt<double>(j, "rope_theta", opt<double>(rope, "rope_theta", 10000.0, path), path);
  std::string rtype = opt<std::string>(rope, "rope_type", opt<std::string>(rope, "type", "", path), path);
  if (rtype == "default") rtype = "";
  if (!rtype.empty() && rtype != "linear" && rtype != "llama3")
    fail("{}: rope scaling type '{}' is not supported (linear, llama3)", path, rtype);
  c.rope_scaling.type = rtype;
  c.rope_scaling.factor = opt<double>(rope, "factor", 1.0, path);
  c.rope_scaling.low_freq_factor = opt<double>(rope, "low_freq_factor", 1.0, path);
  c.rope_scaling.high_freq_factor = opt<double>(rope, "high_freq_factor", 4.0, path);
  c.rope_scaling.original_max_position =
      opt<int64_t>(rope, "original_max_position_embeddings", 8192, path);
  c.validate(path);
  return c;
}

nlohmann::json to_hf_config(const ModelConfig& c) {
  nlohmann::json j;
  j["architectures"] = {c.arch == "qwen2" ? "Qwen2ForCausalLM" : c.arch == "mistral" ? "MistralForCausalLM" : "LlamaForCausalLM"};
  j["model_type"] = c.arch;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_layers;
  j["num_attention_heads"] = c.num_heads;
  j["num_key_value_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["max_position_embeddings"] = c.max_position;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["hidden_act"] = "silu";
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.arch != "qwen2") j["attention_bias"] = c.attention_bias;
  if (!c.rope_scaling.type.empty()) {
    j["rope_scaling"] = {{"rope_type", c.rope_scaling.type}, {"factor", c.rope_scaling.factor}};
    if (c.rope_scaling.type == "llama3") {
      j["rope_scaling"]["low_freq_factor"] = c.rope_scaling.low_freq_factor;
      j["rope_scaling"]["high_freq_factor"] = c.rope_scaling.high_freq_factor;
      j["rope_scaling"]["original_max_position_embeddings"] = c.rope_scaling.original_max_position;
    }
  }
  return j;
}

void ModelConfig::validate(const std::string& source) const {
  auto positive = [&](int64_t v, const char* name, int64_t limit) {
    if (v <= 0 || v > limit) fail("{}: {} = {} is out of range (1..{})", source, name, v, limit);
  };
  positive(vocab_size, "vocab_size", int64_t(1) << 24);
  positive(hidden_size, "hidden_size", int64_t(1) << 17);
  positive(intermediate_size, "intermediate_size", int64_t(1) << 19);
  positive(num_layers, "num_hidden_layers", 1024);
  positive(num_heads, "num_attention_heads", 1024);
  positive(num_kv_heads, "num_key_value_heads", 1024);
  positive(head_dim, "head_dim", 4096);
  positive(max_position, "max_position_embeddings", int64_t(1) << 24);
  if (num_heads % num_kv_heads != 0)
    fail("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", source, num_heads, num_kv_heads);
  if (head_dim % 2 != 0) fail("{}: head_dim {} must be even (rotary embedding)", source, head_dim);
  if (!(rms_norm_eps > 0)) fail("{}: rms_norm_eps must be positive", source);
  if (!(rope_theta > 0)) fail("{}: rope_theta must be positive", source);
}

int64_t ModelConfig::num_parameters() const {
  int64_t attn = hidden_size * num_heads * head_dim * 2 + hidden_size * num_kv_heads * head_dim * 2;
  if (attention_bias) attn += num_heads * head_dim + 2 * num_kv_heads * head_dim;
  int64_t mlp = 3 * hidden_size * intermediate_size;
  int64_t per_layer = attn + mlp + 2 * hidden_size;
  int64_t emb = vocab_size * hidden_size;
  return emb * (tie_word_embeddings ? 1 : 2) + num_layers * per_layer + hidden_size;
}

}  // namespace rlhf
