#include "rlhf/model/loader.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "rlhf/model/gguf.h"
#include "rlhf/model/registry.h"
#include "rlhf/model/safetensors.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"
#include "rlhf/util/hash.h"
#include "rlhf/util/json_file.h"

namespace rlhf {
namespace fs = std::filesystem;

namespace {

constexpr const char* kTargets[] = {"q_proj", "k_proj", "v_proj", "o_proj"};

// ---- GGUF ------------------------------------------------------------------------------

ModelConfig gguf_config(const gguf::File& f) {
  const std::string arch = f.get_string("general.architecture");
  if (arch != "llama" && arch != "qwen2" && arch != "mistral")
    fail("{}: architecture '{}' is not supported (llama, mistral, qwen2)", f.path(), arch);
  auto key = [&](const char* k) { return arch + "." + k; };
  ModelConfig c;
  c.arch = arch;
  c.num_layers = static_cast<int64_t>(f.get_uint(key("block_count")));
  c.hidden_size = static_cast<int64_t>(f.get_uint(key("embedding_length")));
  c.intermediate_size = static_cast<int64_t>(f.get_uint(key("feed_forward_length")));
  c.num_heads = static_cast<int64_t>(f.get_uint(key("attention.head_count")));
  c.num_kv_heads = static_cast<int64_t>(f.find_uint(key("attention.head_count_kv")).value_or(c.num_heads));
  c.head_dim = c.num_heads > 0 ? c.hidden_size / c.num_heads : 0;
  if (auto kl = f.find_uint(key("attention.key_length"))) c.head_dim = static_cast<int64_t>(*kl);
  c.max_position = static_cast<int64_t>(f.find_uint(key("context_length")).value_or(4096));
  c.rms_norm_eps = f.find_float(key("attention.layer_norm_rms_epsilon")).value_or(1e-5);
  c.rope_theta = f.find_float(key("rope.freq_base")).value_or(10000.0);
  if (auto st = f.find_string(key("rope.scaling.type")); st && *st != "none") {
    if (*st != "linear") fail("{}: rope scaling '{}' is not supported in GGUF files", f.path(), *st);
    c.rope_scaling.type = "linear";
    c.rope_scaling.factor = f.find_float(key("rope.scaling.factor")).value_or(1.0);
  }
  if (f.find_tensor("rope_freqs.weight"))
    fail("{}: per-frequency rope factors (rope_freqs.weight, Llama 3.1 style) are not supported in "
         "GGUF files; use the Hugging Face folder of this model", f.path());
  const gguf::TensorInfo* emb = f.find_tensor("token_embd.weight");
  if (!emb) fail("{}: tensor 'token_embd.weight' is missing", f.path());
  c.vocab_size = emb->shape.at(0);
  c.tie_word_embeddings = f.find_tensor("output.weight") == nullptr;
  c.attention_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
  c.validate(f.path());
  return c;
}


std::map<std::string, HostTensor> gguf_weights(const gguf::File& f, const ModelConfig& c) {
  std::map<std::string, HostTensor> w;
  auto take = [&](const std::string& gname, const std::string& hname) {
    const gguf::TensorInfo* t = f.find_tensor(gname);
    if (!t) fail("{}: tensor '{}' is missing", f.path(), gname);
    w[hname] = f.load(*t);
  };
  auto take_opt = [&](const std::string& gname, const std::string& hname) {
    if (f.find_tensor(gname)) take(gname, hname);
  };
  take("token_embd.weight", "model.embed_tokens.weight");
  take("output_norm.weight", "model.norm.weight");
  if (!c.tie_word_embeddings) take("output.weight", "lm_head.weight");
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    const std::string h = "model.layers." + std::to_string(i) + ".";
    take(b + "attn_norm.weight", h + "input_layernorm.weight");
    take(b + "ffn_norm.weight", h + "post_attention_layernorm.weight");
    take(b + "attn_q.weight", h + "self_attn.q_proj.weight");
    take(b + "attn_k.weight", h + "self_attn.k_proj.weight");
    take(b + "attn_v.weight", h + "self_attn.v_proj.weight");
    take(b + "attn_output.weight", h + "self_attn.o_proj.weight");
    take_opt(b + "attn_q.bias", h + "self_attn.q_proj.bias");
    take_opt(b + "attn_k.bias", h + "self_attn.k_proj.bias");
    take_opt(b + "attn_v.bias", h + "self_attn.v_proj.bias");
    take(b + "ffn_gate.weight", h + "mlp.gate_proj.weight");
    take(b + "ffn_up.weight", h + "mlp.up_proj.weight");
    take(b + "ffn_down.weight", h + "mlp.down_proj.weight");
    // Only llama-architecture files are written with the rotary permutation.
    if (c.arch == "llama" || c.arch == "mistral") {
      for (auto [name, heads] : {std::pair{"self_attn.q_proj.", c.num_heads}, std::pair{"self_attn.k_proj.", c.num_kv_heads}}) {
        for (const char* kind : {"weight", "bias"}) {
          auto it = w.find(h + name + kind);
          if (it != w.end()) it->second = llama_cpp_rotary_rows(it->second, heads, /*to_gguf=*/false, f.path() + ":" + it->first);
        }
      }
    }
  }
  return w;
}

text::TokenizerSpec gguf_tokenizer_spec(const gguf::File& f) {
  const std::string model = f.get_string("tokenizer.ggml.model");
  if (model != "gpt2")
    fail("{}: tokenizer model '{}' is not supported in GGUF files (byte-level BPE, 'gpt2'); for a "
         "SentencePiece model use its Hugging Face folder with tokenizer.model", f.path(), model);
  text::TokenizerSpec s;
  s.source = f.path();
  s.pre = f.find_string("tokenizer.ggml.pre").value_or("gpt2");
  if (s.pre == "default") s.pre = "gpt2";
  s.tokens = f.get_string_array("tokenizer.ggml.tokens");
  if (f.has("tokenizer.ggml.token_type")) {
    for (int64_t t : f.get_int_array("tokenizer.ggml.token_type")) s.token_types.push_back(static_cast<int32_t>(t));
    if (s.token_types.size() != s.tokens.size())
      fail("{}: tokenizer.ggml.token_type has {} entries for {} tokens", f.path(), s.token_types.size(), s.tokens.size());
  }
  for (const std::string& m : f.get_string_array("tokenizer.ggml.merges")) {
    auto sp = m.find(' ', 1);
    if (sp == std::string::npos) fail("{}: tokenizer.ggml.merges entry '{}' has no space", f.path(), m);
    s.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
  }
  for (size_t i = 0; i < s.token_types.size(); ++i) {
    if (s.token_types[i] == 3 || s.token_types[i] == 4)
      s.added.push_back({static_cast<int32_t>(i), s.tokens[i], s.token_types[i] == 3});
  }
  auto id = [&](const char* key) -> int32_t {
    auto v = f.find_uint(key);
    if (!v) return -1;
    if (*v >= s.tokens.size()) fail("{}: {} = {} is not a token id", f.path(), key, *v);
    return static_cast<int32_t>(*v);
  };
  s.special.bos = id("tokenizer.ggml.bos_token_id");
  s.special.eos = id("tokenizer.ggml.eos_token_id");
  s.special.pad = id("tokenizer.ggml.padding_token_id");
  s.special.unk = id("tokenizer.ggml.unknown_token_id");
  if (f.has("tokenizer.ggml.add_bos_token")) s.special.add_bos = f.get_bool("tokenizer.ggml.add_bos_token");
  return s;
}

// ---- Hugging Face folder -----------------------------------------------------------------


void fill_stop_and_pad(ModelFiles& m, const std::vector<int32_t>& extra_stops) {
  const text::Tokenizer& tok = *m.tokenizer;
  std::vector<int32_t> stops;
  if (tok.special().eos >= 0) stops.push_back(tok.special().eos);
  for (int32_t id : extra_stops) stops.push_back(id);
  // The end-of-turn token of the chat style ends a completion too.
  for (const char* t : {"<|im_end|>", "<|eot_id|>", "<|end_of_text|>"}) {
    if (auto id = tok.token_id(t)) stops.push_back(*id);
  }
  std::sort(stops.begin(), stops.end());
  stops.erase(std::unique(stops.begin(), stops.end()), stops.end());
  if (stops.empty()) fail("{}: the tokenizer names no EOS token", m.path);
  m.stop_ids = stops;
  auto is_stop = [&](int32_t id) { return std::binary_search(stops.begin(), stops.end(), id); };
  // A pad id distinct from every stop id: the model's own when it is, else unk, bos, 0, 1, ...
  std::vector<int32_t> candidates = {tok.special().pad, tok.special().unk, tok.special().bos};
  for (int32_t i = 0; i < 16; ++i) candidates.push_back(i);
  for (int32_t id : candidates) {
    if (id >= 0 && static_cast<size_t>(id) < tok.vocab_size() && !is_stop(id)) {
      m.pad_id = id;
      return;
    }
  }
  fail("{}: cannot choose a pad token distinct from the stop tokens", m.path);
}

void read_gguf(ModelFiles& m, bool weights) {
  gguf::File f = gguf::File::open(m.path);
  m.format = "gguf";
  m.config = gguf_config(f);
  m.tokenizer = text::make_bpe_tokenizer(gguf_tokenizer_spec(f));
  if ((int64_t)m.tokenizer->vocab_size() > m.config.vocab_size)
    fail("{}: the tokenizer has {} tokens, the embedding only {} rows", m.path, m.tokenizer->vocab_size(), m.config.vocab_size);
  std::string bos_text = m.tokenizer->special().bos >= 0 ? m.tokenizer->token_bytes(m.tokenizer->special().bos) : "";
  m.chat_template = text::ChatTemplate::from_jinja(f.find_string("tokenizer.chat_template").value_or(""), bos_text);
  fill_stop_and_pad(m, {});
  if (weights) m.weights = gguf_weights(f, m.config);
}

// The files of a Hugging Face folder that read_model reads, by role (empty: not there). The
// loader takes every path from here and model_content_hash hashes exactly these, so an edit
// to any file the loader reads gives the folder another hash.
struct HfFolderFiles {
  fs::path config;             // config.json
  fs::path tokenizer;          // tokenizer.json, else tokenizer.model
  fs::path tokenizer_config;   // tokenizer_config.json: special tokens, the chat template
  fs::path chat_template;      // chat_template.jinja: the template when tokenizer_config has none
  fs::path generation_config;  // generation_config.json: more ids that end a completion
  std::vector<fs::path> weights;  // model.safetensors.index.json and every *.safetensors

  static HfFolderFiles of(const fs::path& dir) {
    HfFolderFiles f;
    auto present = [&](const char* name) { return fs::is_regular_file(dir / name) ? dir / name : fs::path(); };
    f.config = dir / "config.json";
    f.tokenizer = present("tokenizer.json");
    if (f.tokenizer.empty()) f.tokenizer = present("tokenizer.model");
    f.tokenizer_config = present("tokenizer_config.json");
    f.chat_template = present("chat_template.jinja");
    f.generation_config = present("generation_config.json");
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      if (e.is_regular_file(ec) && (name.ends_with(".safetensors") || name == "model.safetensors.index.json"))
        f.weights.push_back(e.path());
    }
    if (ec) fail("{}: cannot list folder: {}", dir.string(), ec.message());
    return f;
  }

  // Every file, sorted by name.
  std::vector<std::string> all() const {
    std::vector<std::string> out;
    for (const fs::path* p : {&config, &tokenizer, &tokenizer_config, &chat_template, &generation_config})
      if (!p->empty()) out.push_back(p->string());
    for (const auto& w : weights) out.push_back(w.string());
    std::sort(out.begin(), out.end());
    return out;
  }
};

void read_hf_folder(ModelFiles& m, bool weights) {
  const HfFolderFiles files = HfFolderFiles::of(m.path);
  m.format = "hf";
  m.config = parse_hf_config(read_json_file(files.config.string()), files.config.string());
  const std::string tcfg = files.tokenizer_config.string();
  if (files.tokenizer.filename() == "tokenizer.json") {
    m.tokenizer = text::load_tokenizer_json(files.tokenizer.string(), tcfg);
  } else if (files.tokenizer.filename() == "tokenizer.model") {
    m.tokenizer = text::load_sentencepiece(files.tokenizer.string());
  } else {
    fail("{}: no tokenizer.json or tokenizer.model in this folder", m.path);
  }
  std::string jinja;
  if (!tcfg.empty()) {
    auto j = read_json_file(tcfg);
    if (j.contains("chat_template") && j["chat_template"].is_string()) jinja = j["chat_template"];
  }
  if (jinja.empty() && !files.chat_template.empty()) jinja = read_file(files.chat_template.string());
  std::string bos_text = m.tokenizer->special().bos >= 0 ? m.tokenizer->token_bytes(m.tokenizer->special().bos) : "";
  m.chat_template = text::ChatTemplate::from_jinja(jinja, bos_text);
  std::vector<int32_t> extra;
  if (!files.generation_config.empty()) {
    const std::string gpath = files.generation_config.string();
    auto g = read_json_file(gpath);
    if (auto it = g.find("eos_token_id"); it != g.end()) {
      if (it->is_number_integer()) extra.push_back(it->get<int32_t>());
      else if (it->is_array())
        for (auto& e : *it) {
          if (!e.is_number_integer()) fail("{}: eos_token_id must hold integers", gpath);
          extra.push_back(e.get<int32_t>());
        }
    }
  }
  for (int32_t id : extra)
    if (id < 0 || static_cast<size_t>(id) >= m.tokenizer->vocab_size()) fail("{}: eos_token_id {} is not a token id", m.path, id);
  fill_stop_and_pad(m, extra);
  if (!weights) return;
  auto archive = std::make_shared<safetensors::Archive>(safetensors::Archive::open(m.path));
  for (const std::string& name : expected_weight_names(m.config)) {
    if (!archive->contains(name)) {
      if (name == "lm_head.weight" && m.config.tie_word_embeddings) continue;
      fail("{}: weight '{}' is missing", m.path, name);
    }
    HostTensor t = archive->get(name);
    auto keep = t.owner;
    t.owner = std::shared_ptr<const void>(archive, keep.get());  // keep the archive alive
    m.weights[name] = t;
  }
}

}  // namespace

std::vector<std::string> expected_weight_names(const ModelConfig& c) {
  std::vector<std::string> names = {"model.embed_tokens.weight", "model.norm.weight"};
  if (!c.tie_word_embeddings) names.push_back("lm_head.weight");
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string h = "model.layers." + std::to_string(i) + ".";
    names.push_back(h + "input_layernorm.weight");
    names.push_back(h + "post_attention_layernorm.weight");
    for (const char* p : kTargets) names.push_back(h + "self_attn." + p + ".weight");
    if (c.attention_bias)
      for (const char* p : {"q_proj", "k_proj", "v_proj"}) names.push_back(h + "self_attn." + p + ".bias");
    for (const char* p : {"gate_proj", "up_proj", "down_proj"}) names.push_back(h + "mlp." + p + ".weight");
  }
  return names;
}

ModelFiles read_model(const std::string& reference, bool weights) {
  ModelFiles m;
  m.reference = reference;
  m.path = resolve_model_reference(reference);
  if (fs::is_directory(m.path)) {
    if (!fs::exists(fs::path(m.path) / "config.json"))
      fail("{}: a model folder needs config.json (a Hugging Face model folder)", m.path);
    read_hf_folder(m, weights);
  } else {
    read_gguf(m, weights);
  }
  return m;
}

std::string model_content_hash(const std::string& path) {
  const bool folder = fs::is_directory(path);
  const std::vector<std::string> files = folder ? HfFolderFiles::of(path).all() : std::vector<std::string>{path};
  // The cache's key: the scheme, then every file's absolute path, size, modification and
  // change times and inode. Any write to a file (or a file added or removed) changes it.
  std::string key = "model_content_hash 2\n";
  for (const auto& f : files) {
    struct stat st {};
    if (::stat(f.c_str(), &st) != 0) fail("{}: cannot read: {}", f, std::strerror(errno));
    key += fmt::format("{}|{}|{}.{}|{}.{}|{}\n", fs::absolute(f).string(), st.st_size, st.st_mtim.tv_sec,
                       st.st_mtim.tv_nsec, st.st_ctim.tv_sec, st.st_ctim.tv_nsec, st.st_ino);
  }
  const std::string cache = cache_dir() + "/hashes/" + sha256_hex(key);
  std::error_code ec;
  if (fs::exists(cache, ec)) {
    std::string h = read_file(cache, 128);
    if (h.size() == 64) return h;
  }
  std::string h = folder ? sha256_files(files) : sha256_file(files[0]);
  try {
    write_file_atomic(cache, h);
  } catch (const Error&) {
    // an unwritable cache only costs time
  }
  return h;
}

HostTensor llama_cpp_rotary_rows(const HostTensor& t, int64_t n_head, bool to_gguf, const std::string& what) {
  if (n_head <= 0 || t.shape.empty() || t.shape[0] <= 0 || t.shape[0] % (2 * n_head) != 0)
    fail("tensor {}: {} rows cannot hold {} rotary heads", what, t.shape.empty() ? 0 : t.shape[0], n_head);
  const int64_t rows = t.shape[0], hd = rows / n_head, half = hd / 2;
  const size_t row_bytes = t.nbytes / static_cast<size_t>(rows);
  auto buf = std::make_shared<std::vector<uint8_t>>(t.nbytes);
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t j = 0; j < half; ++j)
      for (int64_t s = 0; s < 2; ++s) {
        const int64_t gguf_row = h * hd + 2 * j + s, hf_row = h * hd + s * half + j;
        const int64_t dst = to_gguf ? gguf_row : hf_row, src = to_gguf ? hf_row : gguf_row;
        std::memcpy(buf->data() + dst * row_bytes, t.data + src * row_bytes, row_bytes);
      }
  HostTensor out = t;
  out.data = buf->data();
  out.owner = buf;
  return out;
}

}  // namespace rlhf
