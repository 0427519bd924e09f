// One prompt format per pipeline run: `pipeline compile` resolves "auto" from every dataset
// (not from the first row of whichever dataset a stage reads), records it in the plan and
// gives it to every stage; datasets of mixed forms under "auto" are refused, naming a row of
// each and the key that decides.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "model/tiny_model.h"
#include "rlhf/pipeline/plan.h"
#include "rlhf/pipeline/spec.h"
#include "rlhf/util/error.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A tiny model with a ChatML template, plain preference pairs and prompts, and eval prompts in
// the form asked for.
fs::path write_project(const fs::path& dir, bool chat_eval, const std::string& format_line) {
  rlhf::testing::write_tiny_hf_model(dir / "model");
  json cfg = json::parse(rlhf::testing::read_text(dir / "model" / "tokenizer_config.json"));
  cfg["chat_template"] = "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n'}}";
  std::ofstream(dir / "model" / "tokenizer_config.json") << cfg.dump();
  std::ofstream prefs(dir / "prefs.jsonl"), prompts(dir / "prompts.jsonl"), eval(dir / "eval.jsonl");
  for (int i = 0; i < 6; ++i) {
    const std::string q = "say: " + std::to_string(i) + " ->";
    prefs << json{{"input_text", q}, {"candidate_0", " a"}, {"candidate_1", " b"}, {"choice", 0}}.dump() << "\n";
    prompts << json{{"input_text", q}}.dump() << "\n";
    if (chat_eval) eval << json{{"messages", {{{"author", "user"}, {"content", q}}}}}.dump() << "\n";
    else eval << json{{"input_text", q}}.dump() << "\n";
  }
  std::ofstream(dir / "spec.yaml") << "preference_dataset: prefs.jsonl\nprompt_dataset: prompts.jsonl\n"
                                      "eval_dataset: eval.jsonl\nlarge_model_reference: model\n"
                                      "prompt_sequence_length: 64\ntarget_sequence_length: 8\n"
                                      "reward_model_train_steps: 1\nreinforcement_learning_train_steps: 1\n"
                                      "advanced:\n  export_format: none\n"
                                   << format_line;
  return dir / "spec.yaml";
}

TEST(OnePromptFormat, PipelineCompileResolvesAutoFromEveryDatasetForEveryStage) {
  const fs::path dir = rlhf::testing::scratch_dir();
  auto plan = rlhf::pipeline::compile_plan(rlhf::pipeline::read_spec(write_project(dir, false, "").string()));
  EXPECT_EQ(plan.spec.prompt_format(), "raw");
  EXPECT_EQ(plan.spec.policy.prompt_format.value_or(""), "raw");
  size_t with_format = 0;
  for (const auto& s : plan.stages)
    if (s.params.contains("prompt_format")) {
      EXPECT_EQ(s.params["prompt_format"], "raw") << s.name;
      ++with_format;
    }
  EXPECT_GE(with_format, 3u) << "train_reward, train_policy and the inference stages";
}

TEST(OnePromptFormat, PipelineCompileRefusesMixedFormsUnderAuto) {
  const fs::path dir = rlhf::testing::scratch_dir();
  const fs::path spec = write_project(dir, true, "");
  const std::string err = rlhf::testing::error_of([&] { rlhf::pipeline::compile_plan(rlhf::pipeline::read_spec(spec.string())); });
  EXPECT_NE(err.find("advanced.prompt_format"), std::string::npos) << err;
  EXPECT_NE(err.find("eval.jsonl:1"), std::string::npos) << err;
  EXPECT_NE(err.find("prefs.jsonl:1"), std::string::npos) << err;
  // Saying how to render them settles it: every stage gets the same format.
  write_project(dir, true, "  prompt_format: chat\n");
  auto plan = rlhf::pipeline::compile_plan(rlhf::pipeline::read_spec(spec.string()));
  for (const auto& s : plan.stages)
    if (s.params.contains("prompt_format")) EXPECT_EQ(s.params["prompt_format"], "chat") << s.name;
}

}  // namespace
