// Logits of our runtime against Hugging Face transformers (tests/parity/logits_ref.py): the
// SmolLM2 GGUF and the same weights as a safetensors folder, and tiny Llama / Qwen2 / Mistral
// models covering untied heads, rope scaling, q/k/v bias and sharded files. fp32, within 1e-3
// and the same argmax at every real position, padded batches included. Ours runs on
// RLHF_TEST_DEVICE (the CPU when unset); the reference runs in the dev venv's Python, or in
// RLHF_TEST_PYTHON when that one has transformers.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "rlhf/model/model.h"
#include "test_util.h"

namespace rlhf {
namespace {

namespace fs = std::filesystem;

// The Python that computes the reference: the dev venv, else RLHF_TEST_PYTHON when `modules`
// import there; nothing otherwise.
std::optional<std::string> reference_python(const std::string& modules) {
  if (auto py = testing::venv_python()) return py;
  const char* p = std::getenv("RLHF_TEST_PYTHON");
  if (p && *p && testing::run(std::string(p) + " -c 'import " + modules + "' >/dev/null 2>&1") == 0) return std::string(p);
  return std::nullopt;
}

#define REQUIRE_REFERENCE_PYTHON(var, modules)                                                    \
  auto var##_opt = reference_python(modules);                                                    \
  if (!var##_opt)                                                                                \
    GTEST_SKIP() << "transformers absent: run scripts/setup --dev, or set RLHF_TEST_PYTHON to a " \
                    "python with " modules;                                                      \
  const std::string var = *var##_opt

void check_cases(const fs::path& out, const std::string& gguf_path) {
  auto cases = nlohmann::json::parse(testing::read_text(out / "cases.json"));
  ASSERT_FALSE(cases.empty());
  const torch::Device dev(testing::test_device());
  std::map<std::string, std::unique_ptr<Model>> models;
  for (const auto& c : cases) {
    const std::string name = c["name"], ref = c["model"];
    SCOPED_TRACE(name);
    if (!models.count(ref)) {
      std::string path = ref == "gguf" ? gguf_path : (out / ref).string();
      models[ref] = load_model(path, {torch::kFloat32, dev});
    }
    const Model& m = *models[ref];
    auto shape = c["shape"].get<std::vector<int64_t>>();
    const int64_t B = shape[0], T = shape[1], V = shape[2];
    ASSERT_EQ(V, m.config.vocab_size);
    std::vector<int64_t> ids, mask;
    for (auto& row : c["ids"]) for (auto& v : row) ids.push_back(v.get<int64_t>());
    for (auto& row : c["mask"]) for (auto& v : row) mask.push_back(v.get<int64_t>());
    auto tokens = torch::tensor(ids, torch::kInt64).view({B, T}).to(dev);
    auto key_mask = torch::tensor(mask, torch::kInt64).view({B, T}).to(torch::kBool).to(dev);
    std::string raw = testing::read_text(out / c["logits"].get<std::string>());
    ASSERT_EQ(raw.size(), static_cast<size_t>(B * T * V) * 4);
    auto ref_logits = torch::from_blob(raw.data(), {B, T, V}, torch::kFloat32).clone().to(dev);

    torch::NoGradGuard ng;
    ForwardArgs a;
    a.tokens = tokens;
    a.positions = positions_from_mask(key_mask);
    a.attn_mask = make_attention_mask(key_mask, 0, T);
    auto ours = m.net->logits(m.net->hidden(a));
    auto real = key_mask.unsqueeze(-1).expand({B, T, V});
    auto diff = (ours - ref_logits).abs().masked_select(real).max().item<float>();
    EXPECT_LE(diff, 1e-3) << "max |ours - transformers| over real positions";
    auto same_argmax = (ours.argmax(-1) == ref_logits.argmax(-1)) | ~key_mask;
    EXPECT_TRUE(same_argmax.all().item<bool>()) << "argmax differs at some position";
    std::printf("[parity] %-32s max abs diff %.2e\n", name.c_str(), diff);
  }
}

TEST(ParityLogits, TinyModelsAgainstTransformers) {
  REQUIRE_REFERENCE_PYTHON(py, "transformers, numpy");
  auto out = testing::scratch_dir();
  ASSERT_EQ(testing::run(py + " " + (testing::source_dir() / "tests/parity/logits_ref.py").string() + " tiny " +
                         out.string()), 0);
  check_cases(out, "");
}

TEST(ParityLogits, SmolLM2GgufAndSafetensorsAgainstTransformers) {
  REQUIRE_REFERENCE_PYTHON(py, "transformers, numpy, gguf");
  auto gguf = testing::default_model_gguf();
  if (!gguf) GTEST_SKIP() << "default model absent: run scripts/setup";
  auto out = testing::scratch_dir();
  ASSERT_EQ(testing::run(py + " " + (testing::source_dir() / "tests/parity/logits_ref.py").string() + " gguf " +
                         *gguf + " " + out.string()), 0);
  check_cases(out, *gguf);
}

}  // namespace
}  // namespace rlhf
