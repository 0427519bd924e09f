#include "rlhf/export/hf_folder.h"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "rlhf/export/export.h"
#include "rlhf/model/config.h"
#include "rlhf/model/gguf.h"
#include "rlhf/model/safetensors.h"
#include "rlhf/text/pretokenizer.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"

namespace rlhf {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

constexpr size_t kMaxConfigBytes = size_t(64) << 20;

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

namespace exporter {
namespace {

const char* torch_dtype_name(DType d) { return d == DType::F32 ? "float32" : d == DType::BF16 ? "bfloat16" : "float16"; }

ojson hf_config(const ExportPlan& p) {
  const ModelConfig& c = p.base.config;
  ojson cfg;
  if (p.base.format == "hf") {
    cfg = ojson::parse(read_file((fs::path(p.base.path) / "config.json").string(), kMaxConfigBytes));
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
    cfg["pad_token_id"] = p.folder->pad_id;
    cfg["score_bias"] = p.head.bias;
  } else {
    cfg["architectures"] = {arch_class(c.arch) + "ForCausalLM"};
  }
  return cfg;
}

ojson generation_config(const ExportPlan& p) {
  ojson g;
  const auto& sp = p.base.tokenizer->special();
  if (sp.bos >= 0) g["bos_token_id"] = sp.bos;
  if (p.base.stop_ids.size() == 1) g["eos_token_id"] = p.base.stop_ids[0];
  else g["eos_token_id"] = p.base.stop_ids;
  g["pad_token_id"] = p.base.pad_id;
  return g;
}

ojson export_record(const ExportPlan& p, const std::string& kind) {
  ojson r = {{"format", "rlhf.export"}, {"version", 1}, {"kind", kind}, {"output_format", p.options.format}};
  r["dtype"] = p.options.format == "hf" ? hf_dtype_name(p.dtype) : (p.dtype == DType::F32 ? "f32" : "f16");
  r["base_model"] = {{"reference", p.base.reference}, {"path", p.base.path}, {"format", p.base.format}};
  if (p.folder) {
    const TrainedFolder& a = *p.folder;
    r["adapter"] = {{"path", fs::absolute(a.dir).lexically_normal().string()},
                    {"kind", trained_folder_kind_name(a.kind)},
                    {"rank", a.lora.rank},
                    {"alpha", a.lora.alpha},
                    {"merged_weights", p.merged}};
    if (!a.base_sha256.empty()) r["base_model"]["sha256"] = a.base_sha256;
    if (p.seq_cls) {
      r["score_bias"] = p.head.bias;
      r["note"] = "score.weight is the reward head without its bias: reward = logit + score_bias";
    }
  }
  return r;
}

void write_json(const fs::path& path, const ojson& j) { write_file_atomic(path.string(), j.dump(2) + "\n"); }

}  // namespace

std::vector<std::string> write_hf_folder(const ExportPlan& p, const std::string& dir_name) {
  const fs::path dir(dir_name);
  std::vector<std::string> files;
  std::map<std::string, HostTensor> out;
  const ModelConfig& c = p.base.config;
  for (const std::string& name : expected_weight_names(c)) {
    if (name == "lm_head.weight" && (p.seq_cls || c.tie_word_embeddings)) continue;
    auto it = p.weights.find(name);
    if (it == p.weights.end()) fail("{}: weight '{}' is missing", p.base.path, name);
    out[name] = convert(it->second, p.dtype);
  }
  if (p.seq_cls) out["score.weight"] = convert(p.head.weight, p.dtype);
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

DType parse_hf_dtype(const std::string& s) {
  if (s == "fp32" || s == "float32" || s == "f32") return DType::F32;
  if (s == "bf16" || s == "bfloat16") return DType::BF16;
  if (s == "fp16" || s == "float16" || s == "f16") return DType::F16;
  fail("--dtype '{}' is not a Hugging Face export type (fp32, bf16, fp16)", s);
}

const char* hf_dtype_name(DType d) { return d == DType::F32 ? "fp32" : d == DType::BF16 ? "bf16" : "fp16"; }

std::string arch_class(const std::string& arch) {
  if (arch == "qwen2") return "Qwen2";
  if (arch == "mistral") return "Mistral";
  return "Llama";
}

}  // namespace exporter
}  // namespace rlhf
