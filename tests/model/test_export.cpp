// rlhf export: merged adapters as other tools see them. A tiny Llama with a trained-looking
// reward adapter (and head) and a policy adapter: the Hugging Face folders loaded by
// transformers (causal LM and sequence classification) give our runtime's logits and
// rewards with the adapter on; the GGUF files read back by our loader and by transformers
// give them too, and the gguf package lists the expected tensors and types; a GGUF base
// exports with the same results. The tokenizer.json synthesized from the default model's
// GGUF tokenizes as ours in HF tokenizers. Bad input gives a clear error and leaves nothing.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <random>
#include <tuple>
#include <set>

#include "rlhf/export/export.h"
#include "rlhf/model/loader.h"
#include "rlhf/model/model.h"
#include "rlhf/model/safetensors.h"
#include "rlhf/train/adapter_io.h"
#include "rlhf/train/reward_model.h"
#include "rlhf/train/trained_folder.h"
#include "rlhf/util/error.h"
#include "test_util.h"
#include "tiny_model.h"

namespace rlhf {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int32_t kEos = 256, kPad = 257;  // the tiny tokenizer's <|endoftext|> and <pad>

// A tiny base with two trained-looking adapters on it, as train-reward and train-policy
// leave them on disk.
struct Trained {
  fs::path base, reward, policy;
  std::unique_ptr<Model> model;
  std::unique_ptr<RewardModel> rm;
  const LoraAdapter* policy_adapter = nullptr;
};

TrainedFolder base_info(const Trained& t, const LoraConfig& lora, TrainedFolder::Kind kind) {
  TrainedFolder info;
  info.kind = kind;
  info.base_reference = t.base.string();
  info.base_path = t.base.string();
  info.base_format = "hf";
  info.base_sha256 = model_content_hash(t.base.string());
  info.lora = lora;
  info.eos_id = kEos;
  info.pad_id = kPad;
  if (kind == TrainedFolder::Kind::RewardModel) info.hidden_size = t.model->config.hidden_size;
  return info;
}

std::unique_ptr<Trained> make_trained(const fs::path& root) {
  auto t = std::make_unique<Trained>();
  t->base = root / "base";
  t->reward = root / "reward";
  t->policy = root / "policy";
  testing::write_tiny_hf_model(t->base, 7);
  t->model = load_model(t->base.string());
  torch::manual_seed(5);

  LoraConfig rl;
  rl.rank = 4;
  rl.alpha = 8;  // scale 2
  rl.targets = {"q_proj", "k_proj", "v_proj", "o_proj"};
  t->rm = std::make_unique<RewardModel>(*t->model->net, rl, 1);
  {
    torch::NoGradGuard ng;
    for (auto& [name, p] : t->rm->parameters())
      if (name.find("lora_B") != std::string::npos) p.normal_(0.0, 0.1);
      else if (name == "score.weight") p.normal_(0.0, 0.5);
  }
  t->rm->shift_bias(0.625);
  fs::create_directories(t->reward);
  t->rm->save_weights(t->reward.string(), t->base.string());
  write_reward_model_info(t->reward.string(), base_info(*t, rl, TrainedFolder::Kind::RewardModel));

  LoraConfig pl;
  pl.rank = 2;
  pl.alpha = 3;  // scale 1.5
  pl.targets = {"all-linear"};
  LoraAdapter& ad = t->model->net->add_adapter("policy", pl, 2);
  {
    torch::NoGradGuard ng;
    for (auto& row : ad.b)
      for (auto& b : row)
        if (b.defined()) b.normal_(0.0, 0.1);
  }
  t->policy_adapter = &ad;
  fs::create_directories(t->policy);
  save_adapter(t->policy.string(), ad, {.base_reference = t->base.string()});
  write_policy_folder_manifest(t->policy.string(), base_info(*t, pl, TrainedFolder::Kind::Policy));
  return t;
}

std::vector<std::vector<int64_t>> sample_ids(int rows, int len, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int64_t>> ids(rows);
  for (auto& r : ids) {
    for (int i = 0; i + 1 < len; ++i) r.push_back(static_cast<int64_t>(rng() % 256));
    r.push_back(kEos);
  }
  return ids;
}

torch::Tensor to_tensor(const std::vector<std::vector<int64_t>>& ids) {
  std::vector<int64_t> flat;
  for (const auto& r : ids) flat.insert(flat.end(), r.begin(), r.end());
  return torch::tensor(flat, torch::kInt64).view({static_cast<int64_t>(ids.size()), -1});
}

// Our runtime's logits [B, T, V] of unpadded rows with the given adapters on.
torch::Tensor our_logits(const Model& m, const std::vector<std::vector<int64_t>>& ids,
                         std::vector<const LoraAdapter*> adapters = {}) {
  torch::NoGradGuard ng;
  auto tokens = to_tensor(ids);
  const int64_t B = tokens.size(0), T = tokens.size(1);
  auto key_mask = torch::ones({B, T}, torch::kBool);
  ForwardArgs a;
  a.tokens = tokens;
  a.positions = positions_from_mask(key_mask);
  a.attn_mask = make_attention_mask(key_mask, 0, T);
  a.adapters = std::move(adapters);
  return m.net->logits(m.net->hidden(a));
}

torch::Tensor read_f32(const fs::path& p, std::vector<int64_t> shape) {
  std::string raw = testing::read_text(p);
  int64_t n = 1;
  for (auto d : shape) n *= d;
  EXPECT_EQ(raw.size(), static_cast<size_t>(n) * 4) << p;
  if (raw.size() != static_cast<size_t>(n) * 4) return torch::zeros(shape);
  return torch::from_blob(raw.data(), shape, torch::kFloat32).clone();
}

float max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<float>(); }

void expect_close_logits(const torch::Tensor& ours, const torch::Tensor& theirs, float tol, const std::string& what) {
  const float d = max_diff(ours, theirs);
  EXPECT_LE(d, tol) << what << ": max |ours - theirs|";
  EXPECT_TRUE(torch::equal(ours.argmax(-1), theirs.argmax(-1))) << what << ": argmax differs";
  std::printf("[export] %-44s max abs diff %.2e\n", what.c_str(), d);
}

// Runs tests/parity/export_ref.py on a list of jobs.
void run_reference(const std::string& py, const fs::path& dir, const json& jobs) {
  const fs::path file = dir / "jobs.json";
  std::ofstream(file) << jobs.dump();
  ASSERT_EQ(testing::run(py + " " + (testing::source_dir() / "tests/parity/export_ref.py").string() + " " + file.string()), 0);
}

json read_json_file(const fs::path& p) { return json::parse(testing::read_text(p)); }

// Nothing but `keep` in dir: no output, no temporary or set-aside files.
void expect_only(const fs::path& dir, const std::set<std::string>& keep) {
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_TRUE(keep.count(e.path().filename().string())) << "left behind: " << e.path();
}

class ExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = testing::scratch_dir();
    t_ = make_trained(root_);
  }
  fs::path root_;
  std::unique_ptr<Trained> t_;
};

TEST_F(ExportTest, HuggingFaceFoldersMatchTransformers) {
  RLHF_REQUIRE_VENV(py);
  const fs::path rm_out = root_ / "rm-hf", pol_out = root_ / "policy-hf";
  // Through the command line: the fixed flags.
  ASSERT_EQ(testing::run(testing::cli() + " export --adapter " + t_->reward.string() + " --output " + rm_out.string()), 0);
  ASSERT_EQ(testing::run(testing::cli() + " export --adapter " + t_->policy.string() + " --output " + pol_out.string() +
                         " --format hf"),
            0);
  const json rm_cfg = read_json_file(rm_out / "config.json");
  EXPECT_EQ(rm_cfg["architectures"][0], "LlamaForSequenceClassification");
  EXPECT_EQ(rm_cfg["pad_token_id"], kPad);
  EXPECT_EQ(read_json_file(pol_out / "config.json")["architectures"][0], "LlamaForCausalLM");
  for (const char* f : {"model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "export.json"})
    EXPECT_TRUE(fs::exists(pol_out / f)) << f;
  // Tied embeddings stay tied: no lm_head in the file.
  EXPECT_FALSE(safetensors::Archive::open((pol_out / "model.safetensors").string()).contains("lm_head.weight"));

  auto ids = sample_ids(3, 11, 1);
  json jobs = json::array({
      {{"mode", "causal"}, {"model", pol_out.string()}, {"ids", ids}, {"out", (root_ / "policy.f32").string()}},
      {{"mode", "seqcls"}, {"model", rm_out.string()}, {"ids", ids}, {"out", (root_ / "rm.f32").string()}},
  });
  run_reference(py, root_, jobs);

  const int64_t B = 3, T = 11, V = t_->model->config.vocab_size;
  auto ours = our_logits(*t_->model, ids, {t_->policy_adapter});
  auto base = our_logits(*t_->model, ids);
  ASSERT_GT(max_diff(ours, base), 1e-2) << "the adapter must change the logits for this test to mean anything";
  expect_close_logits(ours, read_f32(root_ / "policy.f32", {B, T, V}), 1e-3, "policy adapter, HF causal LM");

  // Rewards: transformers' score (no bias) + the recorded score_bias = our reward.
  std::vector<std::vector<int32_t>> seqs;
  for (const auto& r : ids) seqs.emplace_back(r.begin(), r.end());
  torch::NoGradGuard ng;
  auto rewards = t_->rm->score(pack_sequences(seqs, kPad, false, torch::kCPU));
  auto hf = read_f32(root_ / "rm.f32", {B, 1}).view({B});
  const double bias = rm_cfg["score_bias"].get<double>();
  EXPECT_NEAR(bias, t_->rm->parameters()["score.bias"].item<float>(), 1e-6);
  EXPECT_NEAR(read_json_file(rm_out / "export.json")["score_bias"].get<double>(), bias, 1e-12);
  const float d = max_diff(rewards, hf + bias);
  EXPECT_LE(d, 1e-4) << "reward vs transformers score + score_bias";
  EXPECT_GT(std::abs(bias), 0.5);
  std::printf("[export] %-44s max abs diff %.2e\n", "reward model, HF sequence classification", d);
}

TEST_F(ExportTest, GgufFilesMatchTheMergedModel) {
  const fs::path f32 = root_ / "policy-f32.gguf", f16 = root_ / "policy-f16.gguf", bf16 = root_ / "policy-bf16";
  auto r = export_model({.adapter = t_->policy.string(), .output = f32.string(), .format = "gguf"});
  EXPECT_EQ(r.dtype, "f32");
  EXPECT_EQ(r.adapter_kind, "policy");
  EXPECT_EQ(r.merged_weights, 2 * 7);  // every projection of both layers
  export_model({.adapter = t_->policy.string(), .output = f16.string(), .format = "gguf", .dtype = "f16"});
  export_model({.adapter = t_->policy.string(), .output = bf16.string(), .format = "hf", .dtype = "bf16"});

  auto ids = sample_ids(2, 9, 2);
  auto ours = our_logits(*t_->model, ids, {t_->policy_adapter});
  expect_close_logits(ours, our_logits(*load_model(f32.string()), ids), 1e-4, "policy, GGUF f32, our loader");
  // Half-precision weights: close, not equal.
  const float scale = ours.abs().max().item<float>();
  const float d16 = max_diff(ours, our_logits(*load_model(f16.string()), ids));
  const float dbf16 = max_diff(ours, our_logits(*load_model(bf16.string()), ids));
  EXPECT_LE(d16, 0.02 * scale) << "GGUF f16";
  EXPECT_LE(dbf16, 0.1 * scale) << "HF bf16";
  std::printf("[export] %-44s max abs diff %.2e (logits up to %.1f)\n", "policy, GGUF f16", d16, scale);
  std::printf("[export] %-44s max abs diff %.2e\n", "policy, HF bf16", dbf16);
  // Half-precision files hold the float32 weights rounded to nearest.
  const fs::path fp32 = root_ / "policy-fp32", fp16 = root_ / "policy-fp16";
  export_model({.adapter = t_->policy.string(), .output = fp32.string(), .dtype = "fp32"});
  export_model({.adapter = t_->policy.string(), .output = fp16.string(), .dtype = "fp16"});
  auto full = safetensors::Archive::open((fp32 / "model.safetensors").string());
  for (auto [dir, type, rel] : {std::tuple{bf16, torch::kBFloat16, 1.0 / 256}, std::tuple{fp16, torch::kFloat16, 1.0 / 2048}}) {
    auto half = safetensors::Archive::open((dir / "model.safetensors").string());
    for (const std::string& name : full.names()) {
      SCOPED_TRACE(dir.filename().string() + ": " + name);
      const HostTensor& a = full.get(name);
      const HostTensor& b = half.get(name);
      ASSERT_EQ(b.dtype, type == torch::kBFloat16 ? DType::BF16 : DType::F16);
      auto fa = torch::from_blob(const_cast<uint8_t*>(a.data), a.shape, torch::kFloat32);
      auto fb = torch::from_blob(const_cast<uint8_t*>(b.data), b.shape, type).to(torch::kFloat32);
      EXPECT_TRUE(((fa - fb).abs() <= fa.abs() * rel + 1e-7).all().item<bool>());
    }
  }

  // The same adapter on the GGUF form of its base (Q/K in llama.cpp's layout), as a plain
  // peft folder: the recorded base hash would (rightly) refuse the GGUF.
  const fs::path base_gguf = root_ / "base.gguf", peft = root_ / "peft", on_gguf = root_ / "on-gguf.gguf",
                 on_gguf_hf = root_ / "on-gguf-hf";
  export_model({.output = base_gguf.string(), .format = "gguf", .model = t_->base.string()});
  fs::create_directories(peft);
  for (const char* f : {"adapter_model.safetensors", "adapter_config.json"}) fs::copy_file(t_->policy / f, peft / f);
  try {
    export_model({.adapter = t_->policy.string(), .output = (root_ / "refused.gguf").string(), .format = "gguf",
                  .model = base_gguf.string()});
    ADD_FAILURE() << "a base with another hash was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sha256"), std::string::npos) << e.what();
  }
  export_model({.adapter = peft.string(), .output = on_gguf.string(), .format = "gguf", .model = base_gguf.string()});
  export_model({.adapter = peft.string(), .output = on_gguf_hf.string(), .format = "hf", .model = base_gguf.string()});
  expect_close_logits(ours, our_logits(*load_model(on_gguf.string()), ids), 1e-4, "policy on a GGUF base, GGUF f32");
  expect_close_logits(ours, our_logits(*load_model(on_gguf_hf.string()), ids), 1e-4, "policy on a GGUF base, HF fp32");

  RLHF_REQUIRE_VENV(py);
  json jobs = json::array({
      {{"mode", "gguf_info"}, {"model", f32.string()}, {"out", (root_ / "f32.json").string()}},
      {{"mode", "gguf_info"}, {"model", f16.string()}, {"out", (root_ / "f16.json").string()}},
      {{"mode", "causal_gguf"}, {"model", f32.string()}, {"ids", ids}, {"out", (root_ / "gguf.f32").string()}},
      {{"mode", "causal"}, {"model", on_gguf_hf.string()}, {"ids", ids}, {"out", (root_ / "on-gguf-hf.f32").string()}},
  });
  run_reference(py, root_, jobs);
  const int64_t V = t_->model->config.vocab_size;
  expect_close_logits(ours, read_f32(root_ / "gguf.f32", {2, 9, V}), 1e-3, "policy, GGUF f32, transformers");
  expect_close_logits(ours, read_f32(root_ / "on-gguf-hf.f32", {2, 9, V}), 1e-3, "policy on a GGUF base, HF, transformers");

  std::set<std::string> expected = {"token_embd.weight", "output_norm.weight"};
  for (int l = 0; l < 2; ++l)
    for (const char* n : {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"})
      expected.insert("blk." + std::to_string(l) + "." + n + ".weight");
  for (auto [file, type] : {std::pair{"f32.json", "F32"}, std::pair{"f16.json", "F16"}}) {
    SCOPED_TRACE(file);
    json info = read_json_file(root_ / file);
    std::set<std::string> names;
    for (const auto& t : info["tensors"]) {
      const std::string name = t["name"];
      names.insert(name);
      const bool is_1d = t["shape"].size() == 1;
      EXPECT_EQ(t["type"], is_1d ? "F32" : type) << name;
      if (name == "token_embd.weight") EXPECT_EQ(t["shape"], json({64, V}));  // fastest axis first
    }
    EXPECT_EQ(names, expected);
    EXPECT_EQ(info["fields"]["general.architecture"], "llama");
    EXPECT_EQ(info["fields"]["general.file_type"], std::string(type) == "F32" ? 0 : 1);
    EXPECT_EQ(info["fields"]["tokenizer.ggml.model"], "gpt2");
    EXPECT_EQ(info["fields"]["llama.block_count"], 2);
    EXPECT_EQ(info["fields"]["tokenizer.ggml.tokens"]["array_len"], V);
  }
}

TEST_F(ExportTest, UntiedHeadIsKept) {
  // The tiny base with its own head: lm_head.weight / output.weight written and used.
  const fs::path untied = root_ / "untied";
  fs::create_directories(untied);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) fs::copy_file(t_->base / f, untied / f);
  ModelConfig c = t_->model->config;
  c.tie_word_embeddings = false;
  std::ofstream(untied / "config.json") << to_hf_config(c).dump(2);
  safetensors::write((untied / "model.safetensors").string(), testing::tiny_weights(c, 11));
  const fs::path peft = root_ / "peft-untied", hf = root_ / "untied-hf", gg = root_ / "untied.gguf";
  fs::create_directories(peft);
  fs::copy_file(t_->policy / "adapter_model.safetensors", peft / "adapter_model.safetensors");
  fs::copy_file(t_->policy / "adapter_config.json", peft / "adapter_config.json");
  export_model({.adapter = peft.string(), .output = hf.string(), .model = untied.string()});
  export_model({.adapter = peft.string(), .output = gg.string(), .format = "gguf", .model = untied.string()});
  EXPECT_TRUE(safetensors::Archive::open((hf / "model.safetensors").string()).contains("lm_head.weight"));

  auto base = load_model(untied.string());
  LoraAdapter& ad = base->net->add_adapter("policy", t_->policy_adapter->config, 0);
  {
    torch::NoGradGuard ng;
    for (size_t l = 0; l < ad.a.size(); ++l)
      for (int p = 0; p < kNumProj; ++p)
        if (ad.on[p]) ad.a[l][p].copy_(t_->policy_adapter->a[l][p]), ad.b[l][p].copy_(t_->policy_adapter->b[l][p]);
  }
  auto ids = sample_ids(2, 7, 3);
  auto ours = our_logits(*base, ids, {&ad});
  ASSERT_GT(max_diff(ours, our_logits(*base, ids)), 1e-2);
  expect_close_logits(ours, our_logits(*load_model(hf.string()), ids), 1e-4, "untied head, HF fp32, our loader");
  expect_close_logits(ours, our_logits(*load_model(gg.string()), ids), 1e-4, "untied head, GGUF f32, our loader");
}

TEST(ExportTokenizer, SynthesizedTokenizerJsonMatchesOurs) {
  auto gguf = testing::default_model_gguf();
  if (!gguf) GTEST_SKIP() << "default model absent: run scripts/setup";
  auto dir = testing::scratch_dir();
  auto files = write_hf_tokenizer_from_gguf(*gguf, dir.string());
  EXPECT_EQ(files, (std::vector<std::string>{"tokenizer.json", "tokenizer_config.json"}));
  ModelFiles m = read_model(*gguf, /*weights=*/false);
  const std::vector<std::string> texts = {
      "What is the capital of France?",
      "  two  spaces,\ttabs\tand\r\nCRLF lines\n\n\n",
      "don't won't I'm we'll they've",
      "Numbers 1234567 and 3.14159, 2024-11-26",
      "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
      "Résumé: naïve café — Ünïcödé 日本語のテキスト 🙂👍🏽",
      "<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n",
      "",
  };
  // Our own reader of the written files agrees with the GGUF tokenizer.
  auto reread = text::load_tokenizer_json((dir / "tokenizer.json").string(), (dir / "tokenizer_config.json").string());
  EXPECT_EQ(reread->special().bos, m.tokenizer->special().bos);
  EXPECT_EQ(reread->special().eos, m.tokenizer->special().eos);
  EXPECT_EQ(reread->special().pad, m.tokenizer->special().pad);
  for (const auto& t : texts) EXPECT_EQ(reread->encode(t), m.tokenizer->encode(t)) << t;

  RLHF_REQUIRE_VENV(py);
  json jobs = json::array({{{"mode", "tokenize"}, {"model", dir.string()}, {"texts", texts}, {"out", (dir / "ids.json").string()}}});
  run_reference(py, dir, jobs);
  json ids = read_json_file(dir / "ids.json");
  for (size_t i = 0; i < texts.size(); ++i) {
    SCOPED_TRACE(texts[i]);
    EXPECT_EQ(ids["raw"][i].get<std::vector<int32_t>>(), m.tokenizer->encode(texts[i]));
    EXPECT_EQ(ids["auto"][i].get<std::vector<int32_t>>(), m.tokenizer->encode_sequence(texts[i]));
  }
}

// ---- bad input -----------------------------------------------------------------------------

std::string export_error(const ExportOptions& o) {
  try {
    export_model(o);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void copy_folder(const fs::path& from, const fs::path& to) {
  fs::create_directories(to);
  fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
}

// A peft folder on the tiny base whose adapter_model.safetensors holds `tensors` (F32).
fs::path write_peft(const fs::path& dir, const fs::path& base, const std::map<std::string, std::vector<int64_t>>& tensors) {
  fs::create_directories(dir);
  std::map<std::string, HostTensor> w;
  for (const auto& [name, shape] : tensors) w[name] = make_f32_tensor(shape);
  safetensors::write((dir / "adapter_model.safetensors").string(), w);
  json cfg = {{"peft_type", "LORA"}, {"r", 2}, {"lora_alpha", 2}, {"target_modules", {"q_proj"}}, {"bias", "none"},
              {"base_model_name_or_path", base.string()}};
  std::ofstream(dir / "adapter_config.json") << cfg.dump();
  return dir;
}

TEST_F(ExportTest, BadInputGivesAClearErrorAndLeavesNothing) {
  const fs::path work = root_ / "bad";
  fs::create_directories(work);
  const std::string out = (work / "out").string(), out_gguf = (work / "out.gguf").string();
  std::set<std::string> keep;
  auto expect_error = [&](const ExportOptions& o, const std::string& needle) {
    SCOPED_TRACE(needle);
    const std::string e = export_error(o);
    EXPECT_NE(e.find(needle), std::string::npos) << "error was: " << e;
    expect_only(work, keep);
  };

  const fs::path no_weights = work / "no-weights";
  copy_folder(t_->reward, no_weights);
  fs::remove(no_weights / "adapter_model.safetensors");
  keep.insert("no-weights");
  expect_error({.adapter = no_weights.string(), .output = out}, "adapter_model.safetensors is missing");

  const fs::path no_config = work / "no-config";
  copy_folder(t_->policy, no_config);
  fs::remove(no_config / "adapter_config.json");
  keep.insert("no-config");
  expect_error({.adapter = no_config.string(), .output = out}, "adapter_config.json is missing");

  const fs::path no_head = work / "no-head";
  copy_folder(t_->reward, no_head);
  fs::remove(no_head / "reward_head.safetensors");
  keep.insert("no-head");
  expect_error({.adapter = no_head.string(), .output = out}, "reward_head.safetensors is missing");

  const std::string q0 = "base_model.model.model.layers.0.self_attn.q_proj.";
  keep.insert("shape");
  expect_error({.adapter = write_peft(work / "shape", t_->base, {{q0 + "lora_A.weight", {2, 10}}, {q0 + "lora_B.weight", {64, 2}}}).string(),
                .output = out},
               "has shape [2, 10]");
  keep.insert("rank");
  expect_error({.adapter = write_peft(work / "rank", t_->base, {{q0 + "lora_A.weight", {3, 64}}, {q0 + "lora_B.weight", {64, 3}}}).string(),
                .output = out},
               "rank 2");
  keep.insert("half");
  expect_error({.adapter = write_peft(work / "half", t_->base, {{q0 + "lora_A.weight", {2, 64}}}).string(), .output = out},
               "LoRA B of 'model.layers.0.self_attn.q_proj.weight' is missing");
  keep.insert("name");
  expect_error({.adapter = write_peft(work / "name", t_->base, {{"base_model.model.lm_head.lora_A.weight", {2, 64}}}).string(),
                .output = out},
               "is not a LoRA weight of a projection");
  keep.insert("layer");
  const std::string q9 = "base_model.model.model.layers.9.self_attn.q_proj.";
  expect_error({.adapter = write_peft(work / "layer", t_->base, {{q9 + "lora_A.weight", {2, 64}}, {q9 + "lora_B.weight", {64, 2}}}).string(),
                .output = out},
               "does not have");

  const fs::path other_base = work / "other-hash";
  copy_folder(t_->reward, other_base);
  json info = read_json_file(other_base / "reward_model.json");
  info["base_model"]["sha256"] = std::string(64, '0');
  std::ofstream(other_base / "reward_model.json") << info.dump();
  keep.insert("other-hash");
  expect_error({.adapter = other_base.string(), .output = out}, "is not the one this adapter was trained on (sha256");

  expect_error({.adapter = t_->reward.string(), .output = out_gguf, .format = "gguf"}, "Hugging Face format only");
  expect_error({.adapter = t_->policy.string(), .output = out, .format = "onnx"}, "--format 'onnx'");
  expect_error({.adapter = t_->policy.string(), .output = out, .dtype = "int8"}, "--dtype 'int8'");
  expect_error({.adapter = t_->policy.string(), .output = out_gguf, .format = "gguf", .dtype = "bf16"}, "--dtype 'bf16'");
  expect_error({.output = out}, "nothing to export");

  // An existing folder or file that is not an earlier export is never replaced.
  fs::create_directories(work / "taken");
  std::ofstream(work / "taken" / "notes.txt") << "mine";
  std::ofstream(work / "taken.gguf") << "not a model";
  keep.insert({"taken", "taken.gguf"});
  expect_error({.adapter = t_->policy.string(), .output = (work / "taken").string()}, "is not an earlier export");
  expect_error({.adapter = t_->policy.string(), .output = (work / "taken.gguf").string(), .format = "gguf"}, "is not a GGUF file");
  EXPECT_EQ(testing::read_text(work / "taken" / "notes.txt"), "mine");
  EXPECT_EQ(testing::read_text(work / "taken.gguf"), "not a model");

  // An earlier export is replaced whole.
  export_model({.adapter = t_->policy.string(), .output = out});
  std::ofstream(fs::path(out) / "stale.txt") << "from before";
  export_model({.adapter = t_->policy.string(), .output = out, .dtype = "fp16"});
  export_model({.adapter = t_->policy.string(), .output = out_gguf, .format = "gguf"});
  export_model({.adapter = t_->policy.string(), .output = out_gguf, .format = "gguf", .dtype = "f16"});
  keep.insert({"out", "out.gguf"});
  expect_only(work, keep);
  EXPECT_FALSE(fs::exists(fs::path(out) / "stale.txt"));
  EXPECT_EQ(read_json_file(fs::path(out) / "export.json")["dtype"], "fp16");

  // The command line reports the error and exits non-zero.
  int status = 0;
  std::string msg = testing::capture(testing::cli() + " export --adapter " + no_weights.string() + " --output " +
                                         (work / "cli-out").string(), &status, /*merge_stderr=*/true);
  EXPECT_NE(status, 0);
  EXPECT_NE(msg.find("adapter_model.safetensors is missing"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(work / "cli-out"));
}

}  // namespace
}  // namespace rlhf
