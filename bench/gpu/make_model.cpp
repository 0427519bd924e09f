// bench_gpu_model: writes what bench/gpu/check.sh measures on, with no download: a randomly
// initialised Llama-shaped model as a Hugging Face folder (config.json, model.safetensors, a
// byte-level tokenizer with a ChatML template), preference pairs and prompts of fixed byte
// lengths (one token per byte). Prints one JSON line: the model's shape and parameter count.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "rlhf/model/config.h"
#include "rlhf/model/host_tensor.h"
#include "rlhf/model/safetensors.h"
#include "rlhf/text/tokenizer.h"
#include "rlhf/util/error.h"

namespace fs = std::filesystem;

namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint16_t to_bf16(float f) {  // round to nearest even
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFF + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

// One weight to fill: its name, shape, and either the value of every element (norms) or the
// standard deviation of a uniform random fill.
struct Spec {
  std::string name;
  std::vector<int64_t> shape;
  bool constant = false;
  float value = 0;
};

rlhf::HostTensor fill(const Spec& s, rlhf::DType dtype, float stddev, uint64_t seed) {
  rlhf::HostTensor t;
  t.shape = s.shape;
  t.dtype = dtype;
  const int64_t n = t.numel();
  t.nbytes = static_cast<size_t>(n) * rlhf::dtype_size(dtype);
  std::shared_ptr<uint8_t[]> buf(new uint8_t[t.nbytes]);
  uint64_t state = seed;
  for (char c : s.name) state = state * 1099511628211ull + static_cast<uint8_t>(c);
  const float a = stddev * std::sqrt(3.0f);  // uniform on [-a, a] has this standard deviation
  for (int64_t i = 0; i < n; ++i) {
    float v = s.constant ? s.value : a * (2.0f * static_cast<float>(splitmix64(state) >> 40) / 16777216.0f - 1.0f);
    if (dtype == rlhf::DType::BF16) {
      const uint16_t h = to_bf16(v);
      std::memcpy(buf.get() + 2 * i, &h, 2);
    } else {
      std::memcpy(buf.get() + 4 * i, &v, 4);
    }
  }
  t.data = buf.get();
  t.owner = std::shared_ptr<const void>(buf, buf.get());
  return t;
}

void write_tokenizer(const fs::path& dir) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[rlhf::text::byte_level_symbol(static_cast<uint8_t>(b))] = b;
  auto added = [](int id, const char* content) { return nlohmann::json{{"id", id}, {"content", content}, {"special", true}}; };
  nlohmann::json tok = {
      {"version", "1.0"},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"added_tokens", nlohmann::json::array({added(256, "<|endoftext|>"), added(257, "<pad>"),
                                              added(258, "<|im_start|>"), added(259, "<|im_end|>")})}};
  std::ofstream(dir / "tokenizer.json") << tok.dump();
  const char* chatml =
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
      "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  nlohmann::json cfg = {{"eos_token", "<|endoftext|>"}, {"pad_token", "<pad>"}, {"chat_template", chatml}};
  std::ofstream(dir / "tokenizer_config.json") << cfg.dump(2);
}

// Text of exactly `bytes` bytes made of words (a trailing space trimmed, padded with '.').
std::string words_of(std::mt19937& rng, size_t bytes, bool marker) {
  static const char* words[] = {"cat", "dog", "sun", "sea", "red", "map", "pen", "cup", "box", "hat", "owl", "fig"};
  std::string s;
  while (s.size() < bytes) {
    if (marker && s.size() >= bytes / 2 && s.find('#') == std::string::npos) s += "# ";
    s += std::string(words[rng() % 12]) + " ";
  }
  s.resize(bytes);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_gpu_model: a random Llama-shaped model, preference pairs and prompts for bench/gpu/check.sh"};
  std::string out, dtype = "bf16";
  rlhf::ModelConfig c;
  c.vocab_size = 260;  // 256 bytes, <|endoftext|>, <pad>, <|im_start|>, <|im_end|>
  c.num_layers = 16, c.hidden_size = 2048, c.intermediate_size = 8192, c.num_heads = 32, c.num_kv_heads = 8;
  c.max_position = 4096;
  c.rope_theta = 500000;
  c.tie_word_embeddings = true;
  float stddev = 0.02f;
  uint64_t seed = 0;
  int pairs = 256, prompts = 256;
  size_t prompt_bytes = 256, completion_bytes = 64;
  app.add_option("--out", out, "folder to write: model/, preferences.jsonl, prompts.jsonl")->required();
  app.add_option("--layers", c.num_layers);
  app.add_option("--hidden", c.hidden_size);
  app.add_option("--intermediate", c.intermediate_size);
  app.add_option("--heads", c.num_heads);
  app.add_option("--kv-heads", c.num_kv_heads);
  app.add_option("--dtype", dtype, "bf16 or fp32 (the weights in the file)")->check(CLI::IsMember({"bf16", "fp32"}));
  app.add_option("--init-std", stddev, "standard deviation of the random weights (norms are 1)");
  app.add_option("--seed", seed);
  app.add_option("--pairs", pairs, "preference pairs written");
  app.add_option("--prompts", prompts, "prompts written");
  app.add_option("--prompt-bytes", prompt_bytes, "bytes (= tokens) of every prompt");
  app.add_option("--completion-bytes", completion_bytes, "bytes (= tokens) of every completion");
  CLI11_PARSE(app, argc, argv);
  try {
    if (c.num_heads <= 0 || c.hidden_size % c.num_heads != 0 || c.num_kv_heads <= 0 || c.num_heads % c.num_kv_heads != 0)
      rlhf::fail("--hidden must be a multiple of --heads, and --heads of --kv-heads");
    c.head_dim = c.hidden_size / c.num_heads;
    c.validate("bench_gpu_model");

    const fs::path dir = fs::path(out) / "model";
    fs::create_directories(dir);
    std::vector<Spec> specs = {{"model.embed_tokens.weight", {c.vocab_size, c.hidden_size}},
                               {"model.norm.weight", {c.hidden_size}, true, 1.0f}};
    const int64_t H = c.hidden_size, q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
    for (int64_t i = 0; i < c.num_layers; ++i) {
      const std::string p = "model.layers." + std::to_string(i) + ".";
      specs.push_back({p + "input_layernorm.weight", {H}, true, 1.0f});
      specs.push_back({p + "post_attention_layernorm.weight", {H}, true, 1.0f});
      specs.push_back({p + "self_attn.q_proj.weight", {q, H}});
      specs.push_back({p + "self_attn.k_proj.weight", {kv, H}});
      specs.push_back({p + "self_attn.v_proj.weight", {kv, H}});
      specs.push_back({p + "self_attn.o_proj.weight", {H, q}});
      specs.push_back({p + "mlp.gate_proj.weight", {c.intermediate_size, H}});
      specs.push_back({p + "mlp.up_proj.weight", {c.intermediate_size, H}});
      specs.push_back({p + "mlp.down_proj.weight", {H, c.intermediate_size}});
    }
    const rlhf::DType dt = dtype == "bf16" ? rlhf::DType::BF16 : rlhf::DType::F32;
    std::vector<rlhf::HostTensor> filled(specs.size());
    const size_t workers = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
    std::vector<std::thread> pool;
    for (size_t w = 0; w < workers; ++w)
      pool.emplace_back([&, w] {
        for (size_t i = w; i < specs.size(); i += workers) filled[i] = fill(specs[i], dt, stddev, seed);
      });
    for (auto& t : pool) t.join();
    std::map<std::string, rlhf::HostTensor> weights;
    for (size_t i = 0; i < specs.size(); ++i) weights[specs[i].name] = std::move(filled[i]);
    rlhf::safetensors::write((dir / "model.safetensors").string(), weights);
    nlohmann::json cfg = rlhf::to_hf_config(c);
    cfg["torch_dtype"] = dtype == "bf16" ? "bfloat16" : "float32";
    std::ofstream(dir / "config.json") << cfg.dump(2);
    write_tokenizer(dir);

    // Pairs: the chosen completion carries a '#' marker, the rejected one does not.
    std::mt19937 rng(static_cast<uint32_t>(seed) + 1);
    std::ofstream pf(fs::path(out) / "preferences.jsonl"), qf(fs::path(out) / "prompts.jsonl");
    for (int i = 0; i < pairs; ++i) {
      const int choice = static_cast<int>(rng() % 2);
      std::string prompt = words_of(rng, prompt_bytes, false);
      std::string marked = words_of(rng, completion_bytes - 1, true), plain = words_of(rng, completion_bytes - 1, false);
      pf << nlohmann::json{{"input_text", prompt},
                           {"candidate_0", choice == 0 ? marked : plain},
                           {"candidate_1", choice == 1 ? marked : plain},
                           {"choice", choice}}.dump()
         << "\n";
    }
    for (int i = 0; i < prompts; ++i) qf << nlohmann::json{{"input_text", words_of(rng, prompt_bytes, false)}}.dump() << "\n";

    nlohmann::json info = {{"model", dir.string()},         {"layers", c.num_layers},
                           {"hidden", c.hidden_size},       {"intermediate", c.intermediate_size},
                           {"heads", c.num_heads},          {"kv_heads", c.num_kv_heads},
                           {"vocab", c.vocab_size},         {"parameters", c.num_parameters()},
                           {"embedding_parameters", c.vocab_size * c.hidden_size}, {"weights_dtype", dtype}};
    std::printf("%s\n", info.dump().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gpu_model: %s\n", e.what());
    return 1;
  }
  return 0;
}
