// `rlhf sxs` through the binary: the course's inference outputs, a missing input, and
// reward-model scores equal to `rlhf score` on the same prompts and responses (the seed's
// prompts scored without the instruction they already hold).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "rlhf/train/reward_trainer.h"
#include "test_util.h"
#include "tiny_model.h"

namespace {

using rlhf::testing::read_jsonl;

namespace fs = std::filesystem;
using nlohmann::json;
using rlhf::testing::capture;
using rlhf::testing::cli;

TEST(SxsCli, WritesTheFourFilesForTheCourseResults) {
  const fs::path course = rlhf::testing::source_dir() / "../shared/data/course";
  if (!fs::exists(course / "eval_results_untuned.jsonl"))
    GTEST_SKIP() << "the shared course data is absent (" << course.string() << ")";
  auto dir = rlhf::testing::scratch_dir();
  int rc = -1;
  const std::string out = capture(cli() + " sxs " + (course / "eval_results_untuned.jsonl").string() + " " +
                                      (course / "eval_results_tuned.jsonl").string() + " --output " +
                                      (dir / "sxs").string() + " --max-words 40",
                                  &rc, true);
  ASSERT_EQ(rc, 0) << out;
  for (const char* f : {"sxs.jsonl", "sxs.csv", "sxs.html", "summary.json"})
    EXPECT_TRUE(fs::exists(dir / "sxs" / f)) << f;
  EXPECT_EQ(read_jsonl(dir / "sxs/sxs.jsonl").size(), 5u);
  auto summary = json::parse(rlhf::testing::read_text(dir / "sxs/summary.json"));
  EXPECT_EQ(summary["rows"], 5);
  EXPECT_EQ(summary["max_words"], 40);
  EXPECT_NE(out.find("5 prompts"), std::string::npos) << out;
  EXPECT_NE(out.find("over 40 words"), std::string::npos) << out;

  // A missing input: non-zero, the file named, no output folder.
  const std::string missing = (dir / "no_such.jsonl").string();
  const std::string err = capture(cli() + " sxs " + missing + " " + (course / "eval_results_tuned.jsonl").string() +
                                      " --output " + (dir / "other").string(),
                                  &rc, true);
  EXPECT_NE(rc, 0);
  EXPECT_NE(err.find(missing), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(dir / "other"));
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".other"), std::string::npos) << e.path();
}

TEST(SxsCli, RewardScoresEqualRlhfScore) {
  auto dir = rlhf::testing::scratch_dir();
  rlhf::testing::write_tiny_hf_model(dir / "model");
  rlhf::testing::write_marker_preferences(dir / "prefs.jsonl", 64, 3);
  const std::string instruction = "Repeat with a mark.";
  rlhf::RewardTrainConfig c;
  c.preference_dataset = (dir / "prefs.jsonl").string();
  c.large_model_reference = (dir / "model").string();
  c.output = (dir / "rm").string();
  c.instruction = instruction;
  c.train_steps = 20;
  c.batch_size = 8;
  c.micro_batch_size = 8;
  c.learning_rate_multiplier = 50;
  c.prompt_sequence_length = 48;
  c.target_sequence_length = 24;
  c.checkpoint_every = 1000;
  c.progress = false;
  rlhf::train_reward_model(c);

  // A in the seed's form (the prompt with the instruction in it), B in ours (input_text and the
  // formatted prompt): joined on inputs_pretokenized; both scored with the plain prompt.
  auto prefs = read_jsonl(dir / "prefs.jsonl");
  std::ofstream fa(dir / "a.jsonl"), fb(dir / "b.jsonl"), fs_(dir / "score.jsonl");
  for (int i = 0; i < 6; ++i) {
    const std::string prompt = prefs[i]["input_text"];
    const std::string seen = instruction + "\n\n\n" + prompt;
    const std::string ra = prefs[i]["candidate_0"], rb = prefs[i]["candidate_1"];
    fa << json{{"inputs", {{"inputs_pretokenized", seen}, {"targets_pretokenized", ""}}}, {"prediction", ra}}.dump()
       << "\n";
    fb << json{{"input_text", prompt}, {"inputs", {{"inputs_pretokenized", seen}}}, {"prediction", rb},
               {"model", {{"reference", "tiny"}, {"adapter", "policy"}}}}
              .dump()
       << "\n";
    fs_ << json{{"input_text", prompt}, {"completion", ra}}.dump() << "\n"
        << json{{"input_text", prompt}, {"completion", rb}}.dump() << "\n";
  }
  fa.close(), fb.close(), fs_.close();

  int rc = -1;
  std::string out = capture(cli() + " sxs " + (dir / "a.jsonl").string() + " " + (dir / "b.jsonl").string() +
                                " --reward-model " + (dir / "rm").string() + " --output " + (dir / "sxs").string() +
                                " --threads 1 --no-progress",
                            &rc, true);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("6 prompts taken from inputs_pretokenized without the reward model's instruction"),
            std::string::npos)
      << out;
  out = capture(cli() + " score --reward-model " + (dir / "rm").string() + " --input " + (dir / "score.jsonl").string() +
                    " --output " + (dir / "scored.jsonl").string() + " --threads 1",
                &rc, true);
  ASSERT_EQ(rc, 0) << out;

  auto table = read_jsonl(dir / "sxs/sxs.jsonl");
  auto scored = read_jsonl(dir / "scored.jsonl");
  ASSERT_EQ(table.size(), 6u);
  ASSERT_EQ(scored.size(), 12u);
  int b_higher = 0;
  double sum_a = 0;
  for (size_t i = 0; i < 6; ++i) {
    const double sa = table[i]["score_a"], sb = table[i]["score_b"];
    EXPECT_NEAR(sa, scored[2 * i]["reward"].get<double>(), 1e-5) << i;
    EXPECT_NEAR(sb, scored[2 * i + 1]["reward"].get<double>(), 1e-5) << i;
    b_higher += sb > sa;
    sum_a += sa;
  }
  EXPECT_GT(std::abs(table[0]["score_a"].get<double>() - table[0]["score_b"].get<double>()), 1e-4)
      << "the two responses differ, so should their scores";
  auto summary = json::parse(rlhf::testing::read_text(dir / "sxs/summary.json"));
  EXPECT_NEAR(summary["b_score_higher"].get<double>(), b_higher / 6.0, 1e-12);
  EXPECT_NEAR(summary["a"]["mean_score"].get<double>(), sum_a / 6.0, 1e-9);
  EXPECT_EQ(summary["b"]["label"], "tiny + policy");
  EXPECT_EQ(summary["reward_model"], (dir / "rm").string());
  auto csv = rlhf::testing::read_text(dir / "sxs/sxs.csv");
  EXPECT_EQ(csv.rfind("id,input_text,response_a,response_b,words_a,words_b,score_a,score_b\r\n", 0), 0u);
  EXPECT_NE(rlhf::testing::read_text(dir / "sxs/sxs.html").find("reward A"), std::string::npos);
}

}  // namespace
