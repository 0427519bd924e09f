#include "rlhf/model/export.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "rlhf/model/gguf.h"
#include "rlhf/model/gguf_write.h"
#include "rlhf/model/peft_config.h"
#include "rlhf/model/registry.h"
#include "rlhf/model/safetensors.h"
#include "rlhf/text/pretokenizer.h"
#include "rlhf/text/tokenizer.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"
#include "rlhf/util/json_file.h"

namespace rlhf {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

constexpr size_t kMaxJsonBytes = size_t(64) << 20;
constexpr const char* kProjNames[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

json read_json(const std::string& path) { return read_json_file(path, kMaxJsonBytes); }

std::string json_string(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// ---- float conversions -------------------------------------------------------------------

uint16_t float_to_half(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t a = x & 0x7fffffff;
  if (a >= 0x7f800000) return sign | 0x7c00 | (a > 0x7f800000 ? 0x200 : 0);  // inf, nan
  if (a >= 0x477ff000) return sign | 0x7c00;  // 65520 and above round to infinity
  if (a < 0x38800000) {  // below 2^-14: a subnormal half, round(|f| · 2^24) (exact product)
    const float scaled = std::bit_cast<float>(a) * 16777216.0f;
    return sign | static_cast<uint16_t>(std::nearbyint(scaled));
  }
  uint32_t h = ((((a >> 23) - 127 + 15) << 10) | ((a & 0x7fffff) >> 13));
  const uint32_t rest = a & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) ++h;  // to nearest, ties to even
  return sign | static_cast<uint16_t>(h);
}

uint16_t float_to_bf16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((x >> 16) | 0x40);  // quiet nan
  return static_cast<uint16_t>((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

// An owned float32 copy of any host tensor.
HostTensor to_f32(const HostTensor& t) {
  HostTensor out = make_f32_tensor(t.shape);
  const gguf::TensorType type = t.dtype == DType::F32   ? gguf::TensorType::F32
                                : t.dtype == DType::F16 ? gguf::TensorType::F16
                                                        : gguf::TensorType::BF16;
  if (out.numel() > 0) gguf::dequantize(type, t.data, mutable_f32(out), out.numel());
  return out;
}

// `t` in dtype d: itself when it already is, else converted through float32.
HostTensor convert(const HostTensor& t, DType d) {
  if (t.dtype == d) return t;
  HostTensor f = t.dtype == DType::F32 ? t : to_f32(t);
  if (d == DType::F32) return f;
  auto buf = std::make_shared<std::vector<uint16_t>>(static_cast<size_t>(f.numel()));
  const float* src = reinterpret_cast<const float*>(f.data);
  for (size_t i = 0; i < buf->size(); ++i) (*buf)[i] = d == DType::F16 ? float_to_half(src[i]) : float_to_bf16(src[i]);
  HostTensor out;
  out.shape = t.shape;
  out.dtype = d;
  out.data = reinterpret_cast<const uint8_t*>(buf->data());
  out.nbytes = buf->size() * 2;
  out.owner = buf;
  return out;
}

std::string shape_str(const std::vector<int64_t>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

// ---- the adapter folder ------------------------------------------------------------------

struct LoraPair {
  HostTensor a, b;  // a [r, in], b [out, r] (any float type, as stored)
  std::string a_name, b_name;
};

struct Adapter {
  std::string dir;
  std::string kind;  // reward, policy, peft
  std::string meta_path;  // reward_model.json / policy.json / adapter_config.json
  std::string base_reference, base_path, base_sha256;  // as recorded
  int64_t rank = 0;
  double alpha = 0;
  std::vector<std::string> targets;
  std::string weights_path;
  std::map<std::string, LoraPair> pairs;  // base weight name ("model.layers.0.self_attn.q_proj.weight") -> A, B
  int32_t pad_id = -1;  // reward models: the padding id used when scoring
  // reward head
  HostTensor score_weight;  // [1, H]
  double score_bias = 0;
};

// Base fields of reward_model.json / policy.json: nested {"base_model": {...}} or flat.
void read_base_fields(const json& j, const std::string& source, Adapter& ad) {
  if (!j.is_object()) fail("{}: not a JSON object", source);
  if (auto it = j.find("base_model"); it != j.end() && it->is_object()) {
    ad.base_reference = json_string(*it, "reference");
    ad.base_path = json_string(*it, "path");
    ad.base_sha256 = json_string(*it, "sha256");
  }
  if (ad.base_reference.empty()) ad.base_reference = json_string(j, "base_reference");
  if (ad.base_path.empty()) ad.base_path = json_string(j, "base_path");
  if (ad.base_sha256.empty()) ad.base_sha256 = json_string(j, "base_sha256");
  if (ad.base_reference.empty() && ad.base_path.empty())
    fail("{}: field 'base_model.reference' (or 'base_reference') is missing", source);
  auto int_field = [&](const json& obj, const char* key) -> std::optional<int64_t> {
    auto it = obj.find(key);
    if (it == obj.end()) return std::nullopt;
    if (!it->is_number_integer()) fail("{}: field '{}' must be an integer", source, key);
    return it->get<int64_t>();
  };
  std::optional<int64_t> pad;
  if (auto it = j.find("encoding"); it != j.end() && it->is_object()) pad = int_field(*it, "pad_id");
  if (!pad) pad = int_field(j, "pad_id");
  if (!pad && j.contains("encode") && j["encode"].is_object()) pad = int_field(j["encode"], "pad_id");
  if (pad) ad.pad_id = static_cast<int32_t>(*pad);
  if (auto it = j.find("lora"); it != j.end() && it->is_object()) {
    auto r = int_field(*it, "rank");
    if (r) ad.rank = *r;
    if (auto a = it->find("alpha"); a != it->end() && a->is_number()) ad.alpha = a->get<double>();
  }
}

// adapter_config.json (peft): rank, alpha, targets; only plain LoRA is merged here.
void read_peft_config(const std::string& path, Adapter& ad) {
  const PeftLoraConfig p = read_peft_lora_config(path);
  const int64_t rank = p.rank;
  const double alpha = p.alpha;
  ad.targets = p.targets;
  if (ad.rank != 0 && ad.rank != rank)
    fail("{}: r = {} but {} records LoRA rank {}", path, rank, ad.meta_path, ad.rank);
  if (ad.alpha != 0 && std::abs(ad.alpha - alpha) > 1e-9 * alpha)
    fail("{}: lora_alpha = {} but {} records alpha {}", path, alpha, ad.meta_path, ad.alpha);
  ad.rank = rank;
  ad.alpha = alpha;
  if (ad.base_reference.empty() && ad.base_path.empty()) ad.base_reference = p.base_model;
}

// What the adapter folder is and which base it names; tensors are read later (read_lora).
Adapter read_adapter_meta(const std::string& dir) {
  Adapter ad;
  ad.dir = dir;
  if (!fs::is_directory(dir)) fail("{}: no such adapter folder", dir);
  const fs::path d(dir);
  if (fs::exists(d / "reward_model.json")) {
    ad.kind = "reward";
    ad.meta_path = (d / "reward_model.json").string();
    json j = read_json(ad.meta_path);
    if (json_string(j, "format") != "rlhf.reward_model") fail("{}: field 'format' is not \"rlhf.reward_model\"", ad.meta_path);
    read_base_fields(j, ad.meta_path, ad);
  } else if (fs::exists(d / "policy.json")) {
    ad.kind = "policy";
    ad.meta_path = (d / "policy.json").string();
    json j = read_json(ad.meta_path);
    if (auto f = json_string(j, "format"); !f.empty() && f != "rlhf.policy")
      fail("{}: field 'format' is \"{}\", not \"rlhf.policy\"", ad.meta_path, f);
    read_base_fields(j, ad.meta_path, ad);
  } else {
    ad.kind = "peft";
    ad.meta_path = (d / "adapter_config.json").string();
  }
  const std::string peft = (d / "adapter_config.json").string();
  if (!fs::exists(peft))
    fail("{}: adapter_config.json is missing (an adapter folder holds adapter_config.json and adapter_model.safetensors)", dir);
  read_peft_config(peft, ad);
  ad.weights_path = (d / "adapter_model.safetensors").string();
  if (!fs::exists(ad.weights_path)) fail("{}: adapter_model.safetensors is missing", dir);
  if (ad.kind == "reward" && !fs::exists(d / "reward_head.safetensors"))
    fail("{}: reward_head.safetensors is missing", dir);
  if (ad.base_reference.empty() && ad.base_path.empty())
    fail("{}: names no base model (base_model_name_or_path is empty); pass --model", peft);
  return ad;
}

// The adapter's tensors, checked against the base weights: every tensor a LoRA A or B of a
// projection the base has, in pairs, of the adapter's rank and the weight's shape.
void read_lora(Adapter& ad, const ModelFiles& base) {
  auto archive = std::make_shared<safetensors::Archive>(safetensors::Archive::open(ad.weights_path));
  const std::string& path = ad.weights_path;
  for (const std::string& full : archive->names()) {
    const std::string prefix = "base_model.model.";
    std::string name = full.starts_with(prefix) ? full.substr(prefix.size()) : "";
    // model.layers.N.(self_attn|mlp).PROJ.lora_(A|B).weight
    std::string target;
    char which = 0;
    for (const char* ab : {".lora_A.weight", ".lora_B.weight"}) {
      if (name.ends_with(ab)) {
        target = name.substr(0, name.size() - std::strlen(ab)) + ".weight";
        which = ab[6];
      }
    }
    bool known = false;
    if (which && target.starts_with("model.layers.")) {
      size_t p = std::strlen("model.layers.");
      size_t q = target.find('.', p);
      const std::string layer = q == std::string::npos ? "" : target.substr(p, q - p);
      const bool digits = !layer.empty() && std::all_of(layer.begin(), layer.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
      for (int k = 0; digits && k < 7; ++k) {
        const std::string want = std::string(k <= 3 ? ".self_attn." : ".mlp.") + kProjNames[k] + ".weight";
        if (target.substr(q) == want) known = true;
      }
    }
    if (!known)
      fail("{}: tensor '{}' is not a LoRA weight of a projection (base_model.model.model.layers.N.self_attn|mlp.<proj>.lora_A|lora_B.weight)",
           path, full);
    auto wit = base.weights.find(target);
    if (wit == base.weights.end())
      fail("{}: tensor '{}' adapts '{}', which the base model {} does not have", path, full, target, base.path);
    HostTensor t = archive->get(full);
    t.owner = std::shared_ptr<const void>(archive, t.owner.get());
    LoraPair& pr = ad.pairs[target];
    (which == 'A' ? pr.a : pr.b) = t;
    (which == 'A' ? pr.a_name : pr.b_name) = full;
  }
  if (ad.pairs.empty()) fail("{}: holds no LoRA tensors", path);
  for (auto& [target, pr] : ad.pairs) {
    const auto& w = base.weights.at(target).shape;
    if (pr.a_name.empty()) fail("{}: the LoRA A of '{}' is missing (there is only '{}')", path, target, pr.b_name);
    if (pr.b_name.empty()) fail("{}: the LoRA B of '{}' is missing (there is only '{}')", path, target, pr.a_name);
    const int64_t out = w.at(0), in = w.at(1);
    if (pr.a.shape != std::vector<int64_t>{ad.rank, in})
      fail("{}: tensor '{}' has shape {}; the base weight {} and rank {} need [{}, {}]", path, pr.a_name,
           shape_str(pr.a.shape), shape_str(w), ad.rank, ad.rank, in);
    if (pr.b.shape != std::vector<int64_t>{out, ad.rank})
      fail("{}: tensor '{}' has shape {}; the base weight {} and rank {} need [{}, {}]", path, pr.b_name,
           shape_str(pr.b.shape), shape_str(w), ad.rank, out, ad.rank);
  }
}

void read_reward_head(Adapter& ad, const ModelFiles& base) {
  const std::string path = (fs::path(ad.dir) / "reward_head.safetensors").string();
  auto archive = safetensors::Archive::open(path);
  const int64_t H = base.config.hidden_size;
  for (const char* n : {"score.weight", "score.bias"})
    if (!archive.contains(n)) fail("{}: tensor '{}' is missing", path, n);
  HostTensor w = to_f32(archive.get("score.weight"));
  HostTensor b = to_f32(archive.get("score.bias"));
  if (w.shape != std::vector<int64_t>{1, H})
    fail("{}: tensor 'score.weight' has shape {}; the base model's hidden size {} needs [1, {}]", path, shape_str(w.shape), H, H);
  if (b.shape != std::vector<int64_t>{1}) fail("{}: tensor 'score.bias' has shape {}, not [1]", path, shape_str(b.shape));
  ad.score_weight = w;
  ad.score_bias = reinterpret_cast<const float*>(b.data)[0];
}

// W + scale · B·A in float32 (HF layout [out, in]).
HostTensor merge(const HostTensor& w, const LoraPair& pr, double scale) {
  HostTensor out = to_f32(w);
  HostTensor a = to_f32(pr.a), b = to_f32(pr.b);
  const int64_t O = w.shape[0], I = w.shape[1], R = a.shape[0];
  float* W = mutable_f32(out);
  const float* A = reinterpret_cast<const float*>(a.data);
  const float* B = reinterpret_cast<const float*>(b.data);
  std::vector<double> row(static_cast<size_t>(I));
  for (int64_t o = 0; o < O; ++o) {
    std::fill(row.begin(), row.end(), 0.0);
    for (int64_t r = 0; r < R; ++r) {
      const double c = B[o * R + r];
      if (c == 0) continue;
      const float* ar = A + r * I;
      for (int64_t i = 0; i < I; ++i) row[i] += c * ar[i];
    }
    float* wr = W + o * I;
    for (int64_t i = 0; i < I; ++i) wr[i] = static_cast<float>(wr[i] + scale * row[i]);
  }
  return out;
}

// ---- options -----------------------------------------------------------------------------

DType parse_hf_dtype(const std::string& s) {
  if (s == "fp32" || s == "float32" || s == "f32") return DType::F32;
  if (s == "bf16" || s == "bfloat16") return DType::BF16;
  if (s == "fp16" || s == "float16" || s == "f16") return DType::F16;
  fail("--dtype '{}' is not a Hugging Face export type (fp32, bf16, fp16)", s);
}

DType parse_gguf_dtype(const std::string& s) {
  if (s == "f32" || s == "fp32" || s == "float32") return DType::F32;
  if (s == "f16" || s == "fp16" || s == "float16") return DType::F16;
  fail("--dtype '{}' is not a GGUF export type (f32, f16)", s);
}

const char* hf_dtype_name(DType d) { return d == DType::F32 ? "fp32" : d == DType::BF16 ? "bf16" : "fp16"; }
const char* torch_dtype_name(DType d) { return d == DType::F32 ? "float32" : d == DType::BF16 ? "bfloat16" : "float16"; }

std::string arch_class(const std::string& arch) {
  if (arch == "qwen2") return "Qwen2";
  if (arch == "mistral") return "Mistral";
  return "Llama";
}

// ---- output placement --------------------------------------------------------------------

// Removes a temporary folder or file unless released.
struct TempPath {
  std::string path;
  ~TempPath() {
    if (path.empty()) return;
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

bool dir_is_empty(const fs::path& p) { return fs::is_directory(p) && fs::directory_iterator(p) == fs::directory_iterator(); }

void check_output(const ExportOptions& o, const std::string& base_path) {
  if (o.output.empty()) fail("--output is required");
  const fs::path out(o.output);
  std::error_code ec;
  if (fs::exists(out, ec)) {
    if (!base_path.empty() && fs::equivalent(out, base_path, ec))
      fail("{}: the output is the base model itself; choose another --output", o.output);
    if (!o.adapter.empty() && fs::exists(o.adapter) && fs::equivalent(out, o.adapter, ec))
      fail("{}: the output is the adapter folder itself; choose another --output", o.output);
    if (o.format == "hf") {
      if (!fs::is_directory(out)) fail("{}: exists and is not a folder; choose another --output", o.output);
      if (!dir_is_empty(out) && !fs::exists(out / "export.json"))
        fail("{}: exists and is not an earlier export (no export.json in it); choose another --output or remove it", o.output);
    } else {
      if (!fs::is_regular_file(out)) fail("{}: exists and is not a file; choose another --output", o.output);
      std::ifstream f(out, std::ios::binary);
      char magic[4] = {};
      f.read(magic, 4);
      if (f.gcount() != 4 || std::memcmp(magic, "GGUF", 4) != 0)
        fail("{}: exists and is not a GGUF file; choose another --output or remove it", o.output);
    }
  }
}

// ---- tokenizer.json from GGUF metadata -------------------------------------------------

// The split regexes of the Split+ByteLevel families; each is checked against the runtime's
// own table (PreTokenizer::family_of_regex) before use.
constexpr const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

ojson byte_level(bool use_regex) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", use_regex}};
}

// The HF pre_tokenizer of a GGUF tokenizer.ggml.pre family, and whether BPE ignores merges.
std::pair<ojson, bool> hf_pre_tokenizer(const std::string& pre, const std::string& source) {
  if (pre == "gpt2" || pre == "gpt-2" || pre == "default") return {byte_level(true), false};
  if (pre == "smollm" || pre == "starcoder")
    return {ojson{{"type", "Sequence"},
                  {"pretokenizers", ojson::array({ojson{{"type", "Digits"}, {"individual_digits", true}}, byte_level(true)})}},
            false};
  const char* regex = nullptr;
  std::string family;
  if (pre == "llama3" || pre == "llama-bpe") regex = kLlama3Regex, family = "llama3";
  if (pre == "qwen2") regex = kQwen2Regex, family = "qwen2";
  if (!regex)
    fail("{}: tokenizer.ggml.pre '{}' has no Hugging Face equivalent here (gpt2, smollm, starcoder, llama-bpe, qwen2)", source, pre);
  if (text::PreTokenizer::family_of_regex(regex) != family)
    fail("{}: internal: the split regex of '{}' differs from the tokenizer's", source, pre);
  ojson split = {{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}};
  return {ojson{{"type", "Sequence"}, {"pretokenizers", ojson::array({split, byte_level(false)})}}, family == "llama3"};
}

// The GGUF tokenizer.ggml.pre name for a runtime pre-tokenizer family (llama.cpp's names).
std::string gguf_pre_name(const std::string& family) {
  if (family == "gpt2" || family == "gpt-2") return "gpt-2";
  if (family == "llama3" || family == "llama-bpe") return "llama-bpe";
  return family;  // smollm, starcoder, qwen2
}

// ---- GGUF names --------------------------------------------------------------------------

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


// ---- the export --------------------------------------------------------------------------

struct Plan {
  ExportOptions opt;
  std::optional<Adapter> adapter;
  ModelFiles base;
  bool seq_cls = false;
  DType dtype = DType::F32;
  std::map<std::string, HostTensor> weights;  // HF names, merged, float types as read
  int64_t merged = 0;
};

std::string base_reference_of(const ExportOptions& o, const std::optional<Adapter>& ad) {
  if (!o.model.empty()) return o.model;
  if (!ad) fail("nothing to export: give --adapter (a trained adapter folder) or --model (a base model)");
  std::error_code ec;
  if (!ad->base_path.empty() && fs::exists(ad->base_path, ec)) return ad->base_path;
  if (!ad->base_reference.empty()) return ad->base_reference;
  return ad->base_path;
}

Plan prepare(const ExportOptions& o) {
  if (o.format != "hf" && o.format != "gguf") fail("--format '{}' is not supported (hf, gguf)", o.format);
  Plan p;
  p.opt = o;
  if (!o.adapter.empty()) p.adapter = read_adapter_meta(o.adapter);
  const std::string ref = base_reference_of(o, p.adapter);
  const std::string base_path = resolve_model_reference(ref);
  check_output(o, base_path);
  if (p.adapter && !p.adapter->base_sha256.empty()) {
    const std::string hash = model_content_hash(base_path);
    if (hash != p.adapter->base_sha256)
      fail("{}: the base model {} ({}) is not the one this adapter was trained on (sha256 {} != {} recorded in {}); "
           "pass --model with the right model",
           o.adapter, ref, base_path, hash.substr(0, 12), p.adapter->base_sha256.substr(0, 12), p.adapter->meta_path);
  }
  p.base = read_model(ref, /*weights=*/true);
  p.seq_cls = p.adapter && p.adapter->kind == "reward";
  if (p.seq_cls && o.format == "gguf")
    fail("{}: a reward model exports to the Hugging Face format only (--format hf: {}ForSequenceClassification)", o.adapter,
         arch_class(p.base.config.arch));

  if (o.format == "hf") {
    if (!o.dtype.empty()) p.dtype = parse_hf_dtype(o.dtype);
    else if (p.base.format == "hf") p.dtype = p.base.weights.at("model.embed_tokens.weight").dtype;
    else p.dtype = DType::F32;
  } else {
    p.dtype = o.dtype.empty() ? DType::F32 : parse_gguf_dtype(o.dtype);
  }

  p.weights = p.base.weights;
  if (p.adapter) {
    read_lora(*p.adapter, p.base);
    if (p.seq_cls) read_reward_head(*p.adapter, p.base);
    const double scale = p.adapter->alpha / static_cast<double>(p.adapter->rank);
    for (const auto& [target, pr] : p.adapter->pairs) {
      p.weights[target] = merge(p.base.weights.at(target), pr, scale);
      ++p.merged;
    }
    if (p.seq_cls) {
      const int32_t pad = p.adapter->pad_id;
      if (pad < 0 || pad >= p.base.config.vocab_size)
        fail("{}: field 'encoding.pad_id' = {} is not a token id of the base model", p.adapter->meta_path, pad);
      if (std::find(p.base.stop_ids.begin(), p.base.stop_ids.end(), pad) != p.base.stop_ids.end())
        fail("{}: pad id {} is a stop token; the sequence-classification head would read the wrong position",
             p.adapter->meta_path, pad);
    }
  }
  return p;
}

// ---- Hugging Face folder -------------------------------------------------------------------

ojson hf_config(const Plan& p) {
  const ModelConfig& c = p.base.config;
  ojson cfg;
  if (p.base.format == "hf") {
    cfg = ojson::parse(read_file((fs::path(p.base.path) / "config.json").string(), kMaxJsonBytes));
    cfg.erase("quantization_config");
  } else {
    cfg = ojson::parse(to_hf_config(c).dump());
    const auto& sp = p.base.tokenizer->special();
    if (sp.bos >= 0) cfg["bos_token_id"] = sp.bos;
    if (sp.eos >= 0) cfg["eos_token_id"] = sp.eos;
    if (sp.pad >= 0) cfg["pad_token_id"] = sp.pad;
  }
  cfg["torch_dtype"] = torch_dtype_name(p.dtype);
  cfg["dtype"] = torch_dtype_name(p.dtype);
  if (p.seq_cls) {
    cfg["architectures"] = {arch_class(c.arch) + "ForSequenceClassification"};
    cfg["id2label"] = {{"0", "LABEL_0"}};
    cfg["label2id"] = {{"LABEL_0", 0}};
    cfg["pad_token_id"] = p.adapter->pad_id;
    cfg["score_bias"] = p.adapter->score_bias;
  } else {
    cfg["architectures"] = {arch_class(c.arch) + "ForCausalLM"};
  }
  return cfg;
}

ojson generation_config(const Plan& p) {
  ojson g;
  const auto& sp = p.base.tokenizer->special();
  if (sp.bos >= 0) g["bos_token_id"] = sp.bos;
  if (p.base.stop_ids.size() == 1) g["eos_token_id"] = p.base.stop_ids[0];
  else g["eos_token_id"] = p.base.stop_ids;
  g["pad_token_id"] = p.base.pad_id;
  return g;
}

ojson export_record(const Plan& p, const std::string& kind) {
  ojson r = {{"format", "rlhf.export"}, {"version", 1}, {"kind", kind}, {"output_format", p.opt.format}};
  r["dtype"] = p.opt.format == "hf" ? hf_dtype_name(p.dtype) : (p.dtype == DType::F32 ? "f32" : "f16");
  r["base_model"] = {{"reference", p.base.reference}, {"path", p.base.path}, {"format", p.base.format}};
  if (p.adapter) {
    const Adapter& a = *p.adapter;
    r["adapter"] = {{"path", fs::absolute(a.dir).lexically_normal().string()},
                    {"kind", a.kind},
                    {"rank", a.rank},
                    {"alpha", a.alpha},
                    {"merged_weights", p.merged}};
    if (!a.base_sha256.empty()) r["base_model"]["sha256"] = a.base_sha256;
    if (p.seq_cls) {
      r["score_bias"] = a.score_bias;
      r["note"] = "score.weight is the reward head without its bias: reward = logit + score_bias";
    }
  }
  return r;
}

void write_json(const fs::path& path, const ojson& j) { write_file_atomic(path.string(), j.dump(2) + "\n"); }

std::vector<std::string> write_hf(const Plan& p, const fs::path& dir) {
  std::vector<std::string> files;
  std::map<std::string, HostTensor> out;
  const ModelConfig& c = p.base.config;
  for (const std::string& name : expected_weight_names(c)) {
    if (name == "lm_head.weight" && (p.seq_cls || c.tie_word_embeddings)) continue;
    auto it = p.weights.find(name);
    if (it == p.weights.end()) fail("{}: weight '{}' is missing", p.base.path, name);
    out[name] = convert(it->second, p.dtype);
  }
  if (p.seq_cls) out["score.weight"] = convert(p.adapter->score_weight, p.dtype);
  safetensors::write((dir / "model.safetensors").string(), out, {{"format", "pt"}});
  files.push_back("model.safetensors");
  write_json(dir / "config.json", hf_config(p));
  files.push_back("config.json");

  if (p.base.format == "hf") {
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                          "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja", "generation_config.json"}) {
      const fs::path src = fs::path(p.base.path) / f;
      if (!fs::exists(src)) continue;
      write_file_atomic((dir / f).string(), read_file(src.string(), size_t(1) << 30));
      files.push_back(f);
    }
  } else {
    for (auto& f : write_hf_tokenizer_from_gguf(p.base.path, dir.string())) files.push_back(f);
  }
  if (!fs::exists(dir / "generation_config.json")) {
    write_json(dir / "generation_config.json", generation_config(p));
    files.push_back("generation_config.json");
  }
  write_json(dir / "export.json", export_record(p, p.seq_cls ? "sequence-classification" : "causal-lm"));
  files.push_back("export.json");
  return files;
}

// ---- GGUF --------------------------------------------------------------------------------

// Metadata of a GGUF built from a Hugging Face folder's config and tokenizer.
void hf_gguf_metadata(const Plan& p, gguf::Writer& w) {
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
  if (fs::exists(tcfg)) jinja = json_string(read_json(tcfg), "chat_template");
  if (jinja.empty() && fs::exists(dir / "chat_template.jinja")) jinja = read_file((dir / "chat_template.jinja").string());
  if (!jinja.empty()) w.add_string("tokenizer.chat_template", jinja);
}

std::vector<std::string> write_gguf(const Plan& p, const std::string& path) {
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

}  // namespace

std::vector<std::string> write_hf_tokenizer_from_gguf(const std::string& gguf_path, const std::string& dir) {
  gguf::File f = gguf::File::open(gguf_path);
  const std::string model = f.get_string("tokenizer.ggml.model");
  if (model != "gpt2")
    fail("{}: tokenizer.ggml.model '{}' cannot be written as tokenizer.json here (byte-level BPE, 'gpt2', only)", gguf_path, model);
  const std::string pre = f.find_string("tokenizer.ggml.pre").value_or("gpt2");
  auto [pre_tokenizer, ignore_merges] = hf_pre_tokenizer(pre, gguf_path);
  const auto tokens = f.get_string_array("tokenizer.ggml.tokens");
  std::vector<int64_t> types;
  if (f.has("tokenizer.ggml.token_type")) {
    types = f.get_int_array("tokenizer.ggml.token_type");
    if (types.size() != tokens.size())
      fail("{}: tokenizer.ggml.token_type has {} entries for {} tokens", gguf_path, types.size(), tokens.size());
  }
  const auto merges = f.get_string_array("tokenizer.ggml.merges");

  ojson vocab = ojson::object();
  std::set<std::string> seen;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i].empty()) fail("{}: tokenizer.ggml.tokens[{}] is empty", gguf_path, i);
    if (!seen.insert(tokens[i]).second)
      fail("{}: tokenizer.ggml.tokens[{}] '{}' repeats an earlier token; tokenizer.json cannot hold it", gguf_path, i, tokens[i]);
    vocab[tokens[i]] = i;
  }
  ojson added = ojson::array();
  for (size_t i = 0; i < types.size(); ++i) {
    if (types[i] != 3 && types[i] != 4) continue;
    added.push_back({{"id", i}, {"content", tokens[i]}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                     {"normalized", false}, {"special", types[i] == 3}});
  }
  ojson merge_list = ojson::array();
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string& m = merges[i];
    const size_t sp = m.find(' ', 1);
    if (sp == std::string::npos || sp + 1 == m.size())
      fail("{}: tokenizer.ggml.merges[{}] '{}' is not two tokens separated by a space", gguf_path, i, m);
    merge_list.push_back(m);
  }
  auto token_at = [&](const char* key) -> std::optional<std::string> {
    auto v = f.find_uint(key);
    if (!v) return std::nullopt;
    if (*v >= tokens.size()) fail("{}: {} = {} is not a token id", gguf_path, key, *v);
    return tokens[*v];
  };
  const auto bos = token_at("tokenizer.ggml.bos_token_id");
  const auto eos = token_at("tokenizer.ggml.eos_token_id");
  const auto unk = token_at("tokenizer.ggml.unknown_token_id");
  const auto pad = token_at("tokenizer.ggml.padding_token_id");
  const bool add_bos = f.has("tokenizer.ggml.add_bos_token") && f.get_bool("tokenizer.ggml.add_bos_token");
  const bool add_eos = f.has("tokenizer.ggml.add_eos_token") && f.get_bool("tokenizer.ggml.add_eos_token");
  if ((add_bos && !bos) || (add_eos && !eos))
    fail("{}: tokenizer.ggml.add_{}_token is true but no such token id is set", gguf_path, add_bos && !bos ? "bos" : "eos");

  ojson post;
  if (add_bos || add_eos) {
    ojson single = ojson::array(), pair = ojson::array(), specials = ojson::object();
    auto special = [&](const std::string& t, int32_t id) {
      specials[t] = {{"id", t}, {"ids", {id}}, {"tokens", {t}}};
      return ojson{{"SpecialToken", {{"id", t}, {"type_id", 0}}}};
    };
    auto seq = [](const char* id, int type) { return ojson{{"Sequence", {{"id", id}, {"type_id", type}}}}; };
    const int32_t bos_id = add_bos ? static_cast<int32_t>(*f.find_uint("tokenizer.ggml.bos_token_id")) : -1;
    const int32_t eos_id = add_eos ? static_cast<int32_t>(*f.find_uint("tokenizer.ggml.eos_token_id")) : -1;
    if (add_bos) single.push_back(special(*bos, bos_id)), pair.push_back(special(*bos, bos_id));
    single.push_back(seq("A", 0));
    pair.push_back(seq("A", 0));
    if (add_eos) single.push_back(special(*eos, eos_id)), pair.push_back(special(*eos, eos_id));
    if (add_bos) pair.push_back(special(*bos, bos_id));
    pair.push_back(seq("B", 1));
    if (add_eos) pair.push_back(special(*eos, eos_id));
    post = {{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", specials}};
  } else {
    post = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}};
  }

  ojson tok = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", pre_tokenizer},
      {"post_processor", post},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", ignore_merges},
        {"vocab", vocab},
        {"merges", merge_list}}},
  };
  ojson cfg = {{"tokenizer_class", "PreTrainedTokenizerFast"},
               {"add_bos_token", add_bos},
               {"add_eos_token", add_eos},
               {"clean_up_tokenization_spaces", false}};
  auto put = [&](const char* k, const std::optional<std::string>& v) {
    if (v) cfg[k] = *v;
  };
  put("bos_token", bos);
  put("eos_token", eos);
  put("unk_token", unk);
  put("pad_token", pad);
  const std::string arch = f.find_string("general.architecture").value_or("llama");
  if (auto ctx = f.find_uint(arch + ".context_length")) cfg["model_max_length"] = *ctx;
  if (auto jinja = f.find_string("tokenizer.chat_template")) cfg["chat_template"] = *jinja;

  const fs::path d(dir);
  write_file_atomic((d / "tokenizer.json").string(), tok.dump(2) + "\n");
  write_file_atomic((d / "tokenizer_config.json").string(), cfg.dump(2) + "\n");
  return {"tokenizer.json", "tokenizer_config.json"};
}

ExportResult export_model(const ExportOptions& options) {
  Plan p = prepare(options);
  ExportResult r;
  r.format = options.format;
  r.base_path = p.base.path;
  r.merged_weights = p.merged;
  r.adapter_kind = p.adapter ? p.adapter->kind : "";
  r.kind = p.seq_cls ? "sequence-classification" : "causal-lm";
  if (p.seq_cls) r.score_bias = p.adapter->score_bias;
  const fs::path out = fs::absolute(options.output).lexically_normal();
  r.output = out.string();
  if (options.format == "gguf") {
    r.dtype = p.dtype == DType::F32 ? "f32" : "f16";
    r.files = write_gguf(p, out.string());
    return r;
  }
  r.dtype = hf_dtype_name(p.dtype);
  // Into a temporary sibling folder, then renamed into place (an earlier export is moved
  // aside first and removed once the new one is there).
  const std::string pid = std::to_string(::getpid());
  TempPath tmp{out.string() + ".tmp." + pid};
  fs::remove_all(tmp.path);
  fs::create_directories(tmp.path);
  r.files = write_hf(p, tmp.path);
  std::error_code ec;
  TempPath old;
  if (fs::exists(out, ec)) {
    old.path = out.string() + ".old." + pid;
    fs::remove_all(old.path, ec);
    fs::rename(out, old.path, ec);
    if (ec) fail("{}: cannot move the earlier export aside: {}", out.string(), ec.message());
  }
  fs::rename(tmp.path, out, ec);
  if (ec) {
    std::error_code ec2;
    if (!old.path.empty()) fs::rename(old.path, out, ec2), old.path.clear();
    fail("{}: cannot rename the export into place: {}", out.string(), ec.message());
  }
  tmp.path.clear();
  return r;
}

}  // namespace rlhf
