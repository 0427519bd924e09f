// `rlhf pipeline run` with the other policy methods on a tiny model made here: method dpo
// (train-dpo on the preference pairs, the reward model still trained for the side by side's
// scores) and method grpo with rule rewards and no reward model at all (the side by side
// without scores). Each runs, caches, and re-runs the policy when a method setting changes.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "model/pipeline_fixture.h"
#include "rlhf/pipeline/run_dir.h"
#include "test_util.h"

namespace rlhf::pipeline {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using rlhf::testing::capture;
using rlhf::testing::outcomes;
using rlhf::testing::read_text;
using rlhf::testing::run_cmd;

const char* kCommon = R"(eval_dataset: prompts.jsonl
large_model_reference: model
prompt_sequence_length: 32
target_sequence_length: 8
advanced:
  inference_batch_size: 4
  export_format: none
  checkpoint_every: 2
  seed: 3
  threads: 1
  dtype: fp32
)";

void write_pairs(const fs::path& path) {
  std::ofstream p(path);
  for (int i = 0; i < 8; ++i)
    p << json{{"input_text", "say: word " + std::to_string(i) + " ->"},
              {"candidate_0", "word " + std::to_string(i)},
              {"candidate_1", "a much longer answer about word " + std::to_string(i)},
              {"choice", 0}}
             .dump()
      << "\n";
}

std::string run_ok(const fs::path& spec, const fs::path& run) {
  int status = -1;
  const std::string log = capture(run_cmd(spec, run), &status, true);
  EXPECT_EQ(status, 0) << log;
  return log;
}

TEST(PipelineMethods, DpoTrainsThePolicyOnThePairsAndKeepsTheRewardModelForTheSxs) {
  const auto dir = rlhf::testing::scratch_dir();
  rlhf::testing::write_pipeline_model_and_prompts(dir);
  write_pairs(dir / "pairs.jsonl");
  std::ofstream(dir / "spec.yaml") << "method: dpo\npreference_dataset: pairs.jsonl\nreward_model_train_steps: 2\n"
                                      "dpo_train_steps: 3\ndpo_learning_rate_multiplier: 10\n"
                                   << kCommon
                                   << "  reward_model_batch_size: 4\n  reward_model_micro_batch_size: 4\n"
                                      "  dpo_batch_size: 4\n  dpo_micro_batch_size: 2\n  dpo_beta: 0.2\n";
  const fs::path spec = dir / "spec.yaml", run = dir / "run";
  std::string log = run_ok(spec, run);
  auto first = outcomes(log);
  for (const char* s : {"validate", "train_reward", "train_policy", "infer_untuned", "infer_tuned", "sxs"})
    EXPECT_EQ(first[s], "running") << s << "\n" << log;
  EXPECT_EQ(first.count("export"), 0u);
  auto m = read_manifest(run.string(), "train_policy");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->state, "done");
  EXPECT_TRUE(fs::exists(run / "train_policy" / "model" / "policy.json"));
  // DPO's curves under the policy stage, the reward model's scores in the side by side.
  const std::string report = read_text(run / "report.html");
  for (const char* tag : {"loss", "rewards/accuracies", "rewards/margins", "rank_loss"})
    EXPECT_NE(report.find(std::string("data-tag=\"") + tag + "\""), std::string::npos) << tag;
  const json sxs = json::parse(read_text(run / "sxs" / "summary.json"));
  EXPECT_EQ(sxs["rows"], 12);
  EXPECT_TRUE(sxs["b"].contains("mean_score")) << sxs.dump();

  // Cached; a DPO setting re-runs the policy and what reads it, not the reward model.
  const std::string adapter = read_text(run / "train_policy" / "model" / "adapter_model.safetensors");
  for (const auto& [s, o] : outcomes(run_ok(spec, run))) EXPECT_EQ(o, "cached") << s;
  std::ofstream(spec, std::ios::app) << "  dpo_loss_type: ipo\n";
  auto third = outcomes(run_ok(spec, run));
  for (const char* s : {"validate", "train_reward", "infer_untuned"}) EXPECT_EQ(third[s], "cached") << s;
  for (const char* s : {"train_policy", "infer_tuned", "sxs"}) EXPECT_EQ(third[s], "running") << s;
  EXPECT_NE(read_text(run / "train_policy" / "model" / "adapter_model.safetensors"), adapter);
}

TEST(PipelineMethods, GrpoWithRuleRewardsNeedsNoRewardModel) {
  const auto dir = rlhf::testing::scratch_dir();
  rlhf::testing::write_pipeline_model_and_prompts(dir);
  std::ofstream(dir / "spec.yaml") << "method: grpo\nprompt_dataset: prompts.jsonl\n"
                                      "rewards:\n  - max-words=3\n  - 'regex=word,? [0-9]'\n"
                                      "reinforcement_learning_train_steps: 2\nreinforcement_learning_rate_multiplier: 10\n"
                                   << kCommon
                                   << "  reinforcement_learning_batch_size: 2\n  reinforcement_learning_micro_batch_size: 4\n"
                                      "  num_generations: 2\n  reward_normalization_samples: 0\n  measure_kl: true\n";
  const fs::path spec = dir / "spec.yaml", run = dir / "run";
  {
    // A rule that reads a row field the prompts lack is refused at compile time, naming the key
    // and the line.
    std::ofstream(dir / "bad.yaml") << read_text(spec) << "rewards: [exact-match=answer]\n";
    std::string text = read_text(dir / "bad.yaml");
    text.erase(text.find("rewards:\n"), text.find("reinforcement_learning_train_steps") - text.find("rewards:\n"));
    std::ofstream(dir / "bad.yaml") << text;
    int status = 0;
    const std::string out = capture(rlhf::testing::cli() + " pipeline compile " + (dir / "bad.yaml").string(), &status, true);
    EXPECT_NE(status, 0);
    EXPECT_NE(out.find("key 'rewards': " + (dir / "prompts.jsonl").string() + ":1: field \"answer\" is missing"),
              std::string::npos)
        << out;
  }
  std::string log = run_ok(spec, run);
  auto first = outcomes(log);
  for (const char* s : {"validate", "train_policy", "infer_untuned", "infer_tuned", "sxs"})
    EXPECT_EQ(first[s], "running") << s << "\n" << log;
  EXPECT_EQ(first.count("train_reward"), 0u) << log;
  EXPECT_FALSE(read_manifest(run.string(), "train_reward").has_value());
  EXPECT_FALSE(fs::exists(run / "train_reward"));
  EXPECT_TRUE(fs::exists(run / "train_policy" / "model" / "policy.json"));
  const json plan = json::parse(read_text(run / "plan.json"));
  for (const auto& s : plan["stages"])
    if (s["name"] == "train_policy") {
      EXPECT_EQ(s["params"]["method"], "grpo");
      EXPECT_EQ(s["params"]["reward_rule"], (json{"max-words=3", "regex=word,? [0-9]"}));
      EXPECT_EQ(s["deps"], json::array());
    }
  // The side by side without a reward model: lengths, no scores.
  const json sxs = json::parse(read_text(run / "sxs" / "summary.json"));
  EXPECT_EQ(sxs["rows"], 12);
  EXPECT_FALSE(sxs["b"].contains("mean_score")) << sxs.dump();
  const std::string report = read_text(run / "report.html");
  EXPECT_NE(report.find("data-tag=\"reward\""), std::string::npos);
  EXPECT_NE(report.find("data-tag=\"objective/kl\""), std::string::npos);

  // Cached; another rule re-runs the policy.
  for (const auto& [s, o] : outcomes(run_ok(spec, run))) EXPECT_EQ(o, "cached") << s;
  std::string text = read_text(spec);
  text.replace(text.find("max-words=3"), 11, "max-words=4");
  std::ofstream(spec) << text;
  auto third = outcomes(run_ok(spec, run));
  EXPECT_EQ(third["validate"], "cached");
  EXPECT_EQ(third["infer_untuned"], "cached");
  EXPECT_EQ(third["train_policy"], "running");
}

}  // namespace
}  // namespace rlhf::pipeline
