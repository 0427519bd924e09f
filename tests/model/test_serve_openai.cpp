// `rlhf serve` through the official openai Python client (tests/serve/openai_checks.py): the
// models it lists, chat and completions greedy outputs equal to `rlhf generate` and `rlhf
// infer --adapter` (fp32), streams that concatenate to the plain answer and end with
// `data: [DONE]`, log-probs equal to generate()'s, and every error's status and OpenAI shape.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/model/generate.h"
#include "rlhf/model/model.h"
#include "serve_fixture.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using rlhf::testing::cli;
using rlhf::testing::run_serve_script;
using rlhf::testing::ServeProcess;

constexpr const char* kKey = "test-key-0123";
constexpr const char* kPrompt = "What is the capital of France? Answer in one sentence.";
constexpr int kMaxTokens = 12;

// generate()'s greedy log-probs for `ids` on the base (fp32), stop ids as the server's.
std::vector<float> runtime_logprobs(const rlhf::Model& m, const std::vector<int32_t>& ids, int n) {
  rlhf::SamplingConfig s;
  s.temperature = 0;
  s.max_new_tokens = n;
  rlhf::GenerateOptions o;
  o.stop_ids = m.stop_ids;
  o.pad_id = m.pad_id;
  return rlhf::generate(*m.net, {ids}, s, o).logprobs[0];
}

// The server's log-probs equal the runtime's to 1e-4, one per generated token (the runtime
// also reports the stop token's, which the server may leave out).
void expect_logprobs(const json& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_TRUE(got.is_array()) << what;
  ASSERT_TRUE(got.size() == want.size() || got.size() + 1 == want.size())
      << what << ": " << got.size() << " log-probs, the runtime gives " << want.size();
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i].get<double>(), want[i], 1e-4) << what << " token " << i;
}

TEST(ServeOpenAI, ModelsChatStreamsCompletionsAdaptersAndLogprobsMatchTheRuntime) {
  RLHF_REQUIRE_SERVE(py, gguf);
  const fs::path dir = rlhf::testing::scratch_dir();

  // Two policies with non-zero LoRA weights on the default model.
  rlhf::testing::write_two_default_policies(gguf, dir, "p1", "p2", 9);
  auto model = rlhf::load_model(gguf, {torch::kFloat32, torch::kCPU});  // the runtime the server's log-probs match

  // rlhf infer --adapter on a few prompts: its prompt texts and greedy predictions.
  std::ofstream(dir / "in.jsonl") << "{\"input_text\": \"The weather today is sunny and warm.\"}\n"
                                     "{\"input_text\": \"Cats sleep most of the day.\"}\n";
  json adapters = json::array();
  std::vector<std::string> predictions;
  for (const std::string name : {"p1", "p2"}) {
    int rc = 0;
    const fs::path out = dir / (name + ".jsonl");
    std::string log = rlhf::testing::capture(cli() + " infer --adapter " + (dir / name).string() + " --input " +
                                                 (dir / "in.jsonl").string() + " --output " + out.string() +
                                                 " --max-new-tokens 10 --temperature 0 --batch-size 1 --dtype fp32"
                                                 " --no-progress",
                                             &rc, true);
    ASSERT_EQ(rc, 0) << log;
    for (const auto& row : rlhf::testing::read_jsonl(out)) {
      adapters.push_back({{"name", name},
                          {"prompt", row["inputs"]["inputs_pretokenized"]},
                          {"max_tokens", 10}});
      predictions.push_back(row["prediction"].get<std::string>());
    }
  }

  // rlhf generate --chat, greedy: the chat answer to compare with.
  int rc = 0;
  std::string generated = rlhf::testing::capture(cli() + " generate --chat --temperature 0 --dtype fp32 -n " +
                                                     std::to_string(kMaxTokens) + " --prompt '" + kPrompt + "'",
                                                 &rc);
  ASSERT_EQ(rc, 0);
  ASSERT_FALSE(generated.empty());
  ASSERT_EQ(generated.back(), '\n');
  generated.pop_back();

  ServeProcess server;
  const std::string err = server.start({"--dtype", "fp32", "--api-key", kKey, "--adapter",
                                        "p1=" + (dir / "p1").string(), "--adapter", "p2=" + (dir / "p2").string()},
                                       dir / "serve.log");
  ASSERT_EQ(err, "");
  json report = run_serve_script(py, "openai_checks.py", "api",
                                 {{"base_url", server.url()},
                                  {"api_key", kKey},
                                  {"prompt", kPrompt},
                                  {"max_tokens", kMaxTokens},
                                  {"adapters", adapters}},
                                 dir);
  rlhf::testing::expect_no_failures(report);

  // Models: the base under its reference name, each adapter with the base as parent.
  ASSERT_TRUE(report.contains("models")) << report.dump();
  const json& models = report["models"];
  ASSERT_EQ(models.size(), 3u) << models.dump();
  EXPECT_EQ(models[0]["id"], "smollm2-135m-instruct");
  EXPECT_TRUE(models[0]["parent"].is_null());
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(models[i]["object"], "model");
    EXPECT_EQ(models[i]["owned_by"], "rlhf");
    EXPECT_EQ(models[i]["root"], "smollm2-135m-instruct");
  }
  EXPECT_EQ(models[1]["id"], "p1");
  EXPECT_EQ(models[2]["id"], "p2");
  EXPECT_EQ(models[1]["parent"], "smollm2-135m-instruct");
  EXPECT_EQ(models[2]["parent"], "smollm2-135m-instruct");

  // Chat greedy == rlhf generate --chat --temperature 0.
  EXPECT_EQ(report["chat_text"], generated);
  EXPECT_GT(report["stream_chunks"].get<int>(), 1);

  // Each adapter by name == rlhf infer --adapter; and it changes something.
  ASSERT_EQ(report["adapters"].size(), predictions.size());
  int differ = 0;
  for (size_t i = 0; i < predictions.size(); ++i) {
    EXPECT_EQ(report["adapters"][i]["text"], predictions[i]) << "adapter prompt " << i;
    differ += report["adapters"][i]["text"] != report["adapters"][i]["base_text"];
  }
  EXPECT_GT(differ, 0) << "the adapters answer as the base does";

  // Log-probs == generate()'s on the same ids.
  {
    torch::NoGradGuard no_grad;
    auto chat_lp = runtime_logprobs(*model, model->encode_prompt(kPrompt, true), kMaxTokens);
    auto raw_lp = runtime_logprobs(*model, model->encode_prompt(kPrompt, false), kMaxTokens);
    expect_logprobs(report["chat_logprobs"], chat_lp, "chat");
    expect_logprobs(report["completion_logprobs"], raw_lp, "completions");
    EXPECT_EQ(report["chat_usage"][0].get<size_t>(), model->encode_prompt(kPrompt, true).size());
  }

  EXPECT_EQ(server.stop(), 0) << server.log();
}

TEST(ServeOpenAI, ErrorsHaveTheirStatusAndOpenAIShape) {
  RLHF_REQUIRE_SERVE(py, gguf);
  const fs::path dir = rlhf::testing::scratch_dir();
  const int64_t context = rlhf::load_model(gguf)->config.max_position;
  constexpr int64_t kMaxBody = 1 << 16;
  ASSERT_LT(3 * (context + 64) + 200, kMaxBody);  // the over-context prompt is within the body limit

  ServeProcess server;
  ASSERT_EQ(server.start({"--dtype", "fp32", "--api-key", kKey, "--max-body-bytes", std::to_string(kMaxBody),
                          "--max-tokens-limit", std::to_string(4 * context)},
                         dir / "serve.log"),
            "");
  json report = run_serve_script(py, "openai_checks.py", "errors",
                                 {{"base_url", server.url()},
                                  {"api_key", kKey},
                                  {"context", context},
                                  {"max_body_bytes", kMaxBody}},
                                 dir);
  rlhf::testing::expect_no_failures(report);
  // The context errors name the limit.
  EXPECT_NE(report.value("context_error", "").find(std::to_string(context)), std::string::npos) << report.dump();
  EXPECT_NE(report.value("context_error2", "").find(std::to_string(context)), std::string::npos) << report.dump();
  EXPECT_NE(report.value("unknown_model_error", "").find("no-such-model"), std::string::npos) << report.dump();
  EXPECT_EQ(server.stop(), 0) << server.log();
}

TEST(ServeOpenAI, AFullQueueAnswers503) {
  RLHF_REQUIRE_SERVE(py, gguf);
  const fs::path dir = rlhf::testing::scratch_dir();
  ServeProcess server;
  ASSERT_EQ(server.start({"--dtype", "fp32", "--api-key", kKey, "--max-queue", "1", "--max-batch", "1"},
                         dir / "serve.log"),
            "");
  json report = run_serve_script(py, "openai_checks.py", "overload",
                                 {{"base_url", server.url()}, {"api_key", kKey}, {"max_tokens", 24}}, dir);
  rlhf::testing::expect_no_failures(report);
  ASSERT_TRUE(report.contains("client_overload")) << report.dump();
  EXPECT_EQ(report["client_overload"][0], json::array({"InternalServerError", 503})) << report.dump();
  EXPECT_EQ(server.stop(), 0) << server.log();
}

}  // namespace
