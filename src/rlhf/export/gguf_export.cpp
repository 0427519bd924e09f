#include "rlhf/export/gguf_export.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "rlhf/model/gguf.h"
#include "rlhf/model/gguf_write.h"
#include "rlhf/text/tokenizer.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"
#include "rlhf/util/json_file.h"

namespace rlhf::exporter {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr size_t kMaxConfigBytes = size_t(64) << 20;

std::string json_string(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The GGUF tokenizer.ggml.pre name for a runtime pre-tokenizer family (llama.cpp's names).
std::string gguf_pre_name(const std::string& family) {
  if (family == "gpt2" || family == "gpt-2") return "gpt-2";
  if (family == "llama3" || family == "llama-bpe") return "llama-bpe";
  return family;  // smollm, starcoder, qwen2
}

std::string gguf_name(const std::string& hf) {
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  const std::string pre = "model.layers.";
  if (hf.starts_with(pre)) {
    size_t dot = hf.find('.', pre.size());
    const std::string n = hf.substr(pre.size(), dot - pre.size());
    const std::string rest = hf.substr(dot + 1);
    static const std::pair<const char*, const char*> map[] = {
        {"input_layernorm.weight", "attn_norm.weight"}, {"post_attention_layernorm.weight", "ffn_norm.weight"},
        {"self_attn.q_proj.weight", "attn_q.weight"},   {"self_attn.k_proj.weight", "attn_k.weight"},
        {"self_attn.v_proj.weight", "attn_v.weight"},   {"self_attn.o_proj.weight", "attn_output.weight"},
        {"self_attn.q_proj.bias", "attn_q.bias"},       {"self_attn.k_proj.bias", "attn_k.bias"},
        {"self_attn.v_proj.bias", "attn_v.bias"},       {"mlp.gate_proj.weight", "ffn_gate.weight"},
        {"mlp.up_proj.weight", "ffn_up.weight"},        {"mlp.down_proj.weight", "ffn_down.weight"}};
    for (auto [h, g] : map)
      if (rest == h) return "blk." + n + "." + g;
  }
  fail("weight '{}' has no GGUF name", hf);
}

// Metadata of a GGUF built from a Hugging Face folder's config and tokenizer.
void hf_gguf_metadata(const ExportPlan& p, gguf::Writer& w) {
  const ModelConfig& c = p.base.config;
  const fs::path dir(p.base.path);
  if (c.rope_scaling.type == "llama3")
    fail("{}: llama3 rope scaling needs per-frequency factors, which this GGUF export does not write; use --format hf",
         p.base.path);
  if (!fs::exists(dir / "tokenizer.json"))
    fail("{}: GGUF export needs a byte-level BPE tokenizer.json (a SentencePiece tokenizer.model is not converted); use --format hf",
         p.base.path);
  const std::string tcfg = (dir / "tokenizer_config.json").string();
  text::TokenizerSpec spec = text::read_tokenizer_json((dir / "tokenizer.json").string(), tcfg);
  const std::string arch = c.arch == "qwen2" ? "qwen2" : "llama";
  const bool default_ignore = spec.pre == "llama3" || spec.pre == "llama-bpe";
  if (spec.ignore_merges.value_or(default_ignore) != default_ignore)
    fail("{}: model.ignore_merges = {} cannot be expressed in GGUF for the '{}' pre-tokenizer; use --format hf",
         spec.source, !default_ignore, spec.pre);

  w.add_string("general.architecture", arch);
  w.add_string("general.name", dir.filename().string());
  auto key = [&](const char* k) { return arch + "." + k; };
  w.add_u32(key("context_length"), static_cast<uint32_t>(c.max_position));
  w.add_u32(key("embedding_length"), static_cast<uint32_t>(c.hidden_size));
  w.add_u32(key("block_count"), static_cast<uint32_t>(c.num_layers));
  w.add_u32(key("feed_forward_length"), static_cast<uint32_t>(c.intermediate_size));
  w.add_u32(key("attention.head_count"), static_cast<uint32_t>(c.num_heads));
  w.add_u32(key("attention.head_count_kv"), static_cast<uint32_t>(c.num_kv_heads));
  w.add_f32(key("attention.layer_norm_rms_epsilon"), static_cast<float>(c.rms_norm_eps));
  w.add_f32(key("rope.freq_base"), static_cast<float>(c.rope_theta));
  w.add_u32(key("rope.dimension_count"), static_cast<uint32_t>(c.head_dim));
  if (c.head_dim * c.num_heads != c.hidden_size) {
    w.add_u32(key("attention.key_length"), static_cast<uint32_t>(c.head_dim));
    w.add_u32(key("attention.value_length"), static_cast<uint32_t>(c.head_dim));
  }
  w.add_u32(key("vocab_size"), static_cast<uint32_t>(c.vocab_size));
  if (c.rope_scaling.type == "linear") {
    w.add_string(key("rope.scaling.type"), "linear");
    w.add_f32(key("rope.scaling.factor"), static_cast<float>(c.rope_scaling.factor));
  }

  // The vocabulary: the model's tokens, added tokens at their ids, unused ids up to the
  // embedding's rows as [PADn] (type 5, never produced).
  size_t n = std::max(spec.tokens.size(), static_cast<size_t>(c.vocab_size));
  for (const auto& a : spec.added) n = std::max(n, static_cast<size_t>(a.id) + 1);
  if (n > static_cast<size_t>(c.vocab_size))
    fail("{}: the tokenizer has {} tokens, the embedding only {} rows", spec.source, n, c.vocab_size);
  std::vector<std::string> tokens(n);
  std::vector<int32_t> types(n, 1);
  for (size_t i = 0; i < spec.tokens.size(); ++i) tokens[i] = spec.tokens[i];
  for (const auto& a : spec.added) {
    tokens[a.id] = a.content;
    types[a.id] = a.special ? 3 : 4;
  }
  std::set<std::string> seen;
  for (size_t i = 0; i < n; ++i) {
    if (tokens[i].empty()) tokens[i] = fmt::format("[PAD{}]", i), types[i] = 5;
    if (!seen.insert(tokens[i]).second) fail("{}: token '{}' appears twice (id {})", spec.source, tokens[i], i);
  }
  std::vector<std::string> merges;
  merges.reserve(spec.merges.size());
  for (const auto& [a, b] : spec.merges) {
    if (a.find(' ') != std::string::npos || b.find(' ') != std::string::npos)
      fail("{}: merge ['{}', '{}'] holds a space, which GGUF merges cannot spell", spec.source, a, b);
    merges.push_back(a + " " + b);
  }
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", gguf_pre_name(spec.pre));
  w.add_string_array("tokenizer.ggml.tokens", tokens);
  w.add_i32_array("tokenizer.ggml.token_type", types);
  w.add_string_array("tokenizer.ggml.merges", merges);
  auto id = [&](const char* k, int32_t v) {
    if (v >= 0) w.add_u32(k, static_cast<uint32_t>(v));
  };
  id("tokenizer.ggml.bos_token_id", spec.special.bos);
  id("tokenizer.ggml.eos_token_id", spec.special.eos);
  id("tokenizer.ggml.unknown_token_id", spec.special.unk);
  id("tokenizer.ggml.padding_token_id", spec.special.pad);
  w.add_bool("tokenizer.ggml.add_bos_token", spec.special.add_bos);
  w.add_bool("tokenizer.ggml.add_eos_token", spec.special.add_eos);
  std::string jinja;
  if (fs::exists(tcfg)) jinja = json_string(read_json_file(tcfg, kMaxConfigBytes), "chat_template");
  if (jinja.empty() && fs::exists(dir / "chat_template.jinja")) jinja = read_file((dir / "chat_template.jinja").string());
  if (!jinja.empty()) w.add_string("tokenizer.chat_template", jinja);
}

}  // namespace

std::vector<std::string> write_gguf_export(const ExportPlan& p, const std::string& path) {
  const ModelConfig& c = p.base.config;
  gguf::Writer w;
  std::string arch;
  if (p.base.format == "gguf") {
    gguf::File src = gguf::File::open(p.base.path);
    arch = src.get_string("general.architecture");
    w.add_string("general.architecture", arch);
    for (const auto& [k, v] : src.metadata()) {
      if (k == "general.architecture" || k == "general.file_type" || k == "general.alignment" ||
          k == "general.quantization_version" || k.starts_with("quantize.") || k.starts_with("split."))
        continue;
      w.add(k, v);
    }
  } else {
    hf_gguf_metadata(p, w);
    arch = c.arch == "qwen2" ? "qwen2" : "llama";
  }
  w.add_u32("general.file_type", p.dtype == DType::F32 ? 0 : 1);  // ALL_F32, MOSTLY_F16

  const bool permute = arch == "llama" || arch == "mistral";
  // llama.cpp's order: embedding, blocks, final norm, head.
  std::vector<std::string> order = {"model.embed_tokens.weight"};
  for (const std::string& name : expected_weight_names(c))
    if (name.starts_with("model.layers.")) order.push_back(name);
  order.push_back("model.norm.weight");
  if (!c.tie_word_embeddings) order.push_back("lm_head.weight");
  std::vector<HostTensor> keep;
  keep.reserve(order.size());
  for (const std::string& name : order) {
    auto it = p.weights.find(name);
    if (it == p.weights.end()) fail("{}: weight '{}' is missing", p.base.path, name);
    HostTensor t = it->second;
    if (permute) {
      if (name.find("self_attn.q_proj.") != std::string::npos) t = llama_cpp_rotary_rows(t, c.num_heads, /*to_gguf=*/true, name);
      if (name.find("self_attn.k_proj.") != std::string::npos) t = llama_cpp_rotary_rows(t, c.num_kv_heads, /*to_gguf=*/true, name);
    }
    // Norms and biases (1-D) stay F32, as llama.cpp's converter writes them.
    keep.push_back(convert(t, t.shape.size() == 1 ? DType::F32 : p.dtype));
    w.add_tensor(gguf_name(name), keep.back());
  }
  w.write(path);
  return {path};
}

DType parse_gguf_dtype(const std::string& s) {
  if (s == "f32" || s == "fp32" || s == "float32") return DType::F32;
  if (s == "f16" || s == "fp16" || s == "float16") return DType::F16;
  fail("--dtype '{}' is not a GGUF export type (f32, f16)", s);
}

}  // namespace rlhf::exporter
