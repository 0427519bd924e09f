// The judge reads what the models read: the instruction given to both models at inference
// reaches the judge's context through `rlhf sxs` and `rlhf autosxs`, and through the
// pipeline's sxs and autosxs stages.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "judge_fixture.h"
#include "rlhf/eval/autosxs.h"
#include "rlhf/eval/judge.h"
#include "test_util.h"

namespace rlhf::eval {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using rlhf::testing::capture;
using rlhf::testing::cli;
using rlhf::testing::read_jsonl;

const std::string kInstruction = "Summarize in less than 50 words.";

void write_prompts(const fs::path& p, int n) {
  std::ofstream f(p);
  for (int i = 0; i < n; ++i) f << json{{"input_text", "post number " + std::to_string(i) + ": words ->"}}.dump() << "\n";
}

TEST(JudgeInstruction, AutoSxsOnTheSxsTableReadsTheInstructionOfTheInference) {
  auto dir = rlhf::testing::scratch_dir();
  const std::string model = rlhf::testing::tiny_judge(dir / "model").string();
  write_prompts(dir / "prompts.jsonl", 3);
  int status = 0;
  for (const char* side : {"untuned", "tuned"}) {
    const std::string log =
        capture(cli() + " infer --model " + model + " --input " + (dir / "prompts.jsonl").string() + " --output " +
                    (dir / (std::string(side) + ".jsonl")).string() + " --instruction '" + kInstruction +
                    "' --max-new-tokens 6 --temperature " + (std::string(side) == "tuned" ? "1" : "0") +
                    " --threads 1 --no-progress",
                &status, true);
    ASSERT_EQ(status, 0) << log;
  }
  std::string log = capture(cli() + " sxs " + (dir / "untuned.jsonl").string() + " " + (dir / "tuned.jsonl").string() +
                                " --output " + (dir / "sxs").string(),
                            &status, true);
  ASSERT_EQ(status, 0) << log;
  log = capture(cli() + " autosxs --input " + (dir / "sxs" / "sxs.jsonl").string() + " --output " +
                    (dir / "autosxs").string() + " --judge " + model + " --explanation-tokens 0 --threads 1 --quiet",
                &status, true);
  ASSERT_EQ(status, 0) << log;
  auto judged = read_jsonl(dir / "autosxs" / "judgments.jsonl");
  ASSERT_EQ(judged.size(), 3u);
  for (size_t i = 0; i < judged.size(); ++i)
    EXPECT_EQ(judged[i]["input_text"], kInstruction + "\n\npost number " + std::to_string(i) + ": words ->");

  // The prompt the judge model reads holds it, ahead of the post.
  auto pairs = read_autosxs_input((dir / "sxs" / "sxs.jsonl").string(), {});
  JudgeConfig jc;
  jc.model = model;
  jc.explanation_tokens = 0;
  Judge judge(jc);
  auto m = load_model(model);
  const std::string shown = m->tokenizer->decode(judge.prompt_ids({pairs[0].context, "a", "b"}));
  const size_t at = shown.find(kInstruction);
  ASSERT_NE(at, std::string::npos) << shown;
  EXPECT_LT(at, shown.find("post number 0"));
}

TEST(JudgeInstruction, ThePipelinesJudgeReadsTheSpecsInstruction) {
  auto dir = rlhf::testing::scratch_dir();
  rlhf::testing::tiny_judge(dir / "model", 5);
  write_prompts(dir / "prompts.jsonl", 4);
  {
    std::ofstream f(dir / "prefs.jsonl");
    for (int i = 0; i < 8; ++i)
      f << json{{"input_text", "post " + std::to_string(i)}, {"candidate_0", "short"},
                {"candidate_1", "a much longer answer " + std::to_string(i)}, {"choice", 0}}
               .dump()
        << "\n";
  }
  std::ofstream(dir / "spec.yaml") << "preference_dataset: prefs.jsonl\n"
                                      "prompt_dataset: prompts.jsonl\n"
                                      "eval_dataset: prompts.jsonl\n"
                                      "large_model_reference: model\n"
                                      "instruction: \"" << kInstruction << "\"\n"
                                      "prompt_sequence_length: 48\n"
                                      "target_sequence_length: 6\n"
                                      "reward_model_train_steps: 2\n"
                                      "reinforcement_learning_train_steps: 2\n"
                                      "autosxs:\n"
                                      "  explanation_tokens: 0\n"
                                      "advanced:\n"
                                      "  reward_model_batch_size: 4\n"
                                      "  reward_model_micro_batch_size: 4\n"
                                      "  reinforcement_learning_batch_size: 4\n"
                                      "  reinforcement_learning_micro_batch_size: 4\n"
                                      "  inference_batch_size: 4\n"
                                      "  seed: 3\n"
                                      "  threads: 1\n";
  int status = 0;
  const std::string log = capture(cli() + " pipeline run " + (dir / "spec.yaml").string() + " --run-dir " +
                                      (dir / "run").string() + " --quiet",
                                  &status, true);
  ASSERT_EQ(status, 0) << log;
  auto table = read_jsonl(dir / "run" / "sxs" / "sxs.jsonl");
  ASSERT_EQ(table.size(), 4u);
  EXPECT_EQ(table[0]["input_text"], "post number 0: words ->");
  EXPECT_EQ(table[0].value("instruction", ""), kInstruction);
  auto judged = read_jsonl(dir / "run" / "autosxs" / "judgments.jsonl");
  ASSERT_EQ(judged.size(), 4u);
  for (size_t i = 0; i < judged.size(); ++i)
    EXPECT_EQ(judged[i]["input_text"], kInstruction + "\n\npost number " + std::to_string(i) + ": words ->");
}

}  // namespace
}  // namespace rlhf::eval
