// The judge on a model with a small context: the prompt, the explanation's lead-in and the
// explanation always fit; a text too long loses its middle, never the template's start or
// the question at the end.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "rlhf/eval/judge.h"
#include "rlhf/model/model.h"
#include "rlhf/util/error.h"
#include "test_util.h"
#include "tiny_model.h"

namespace rlhf::eval {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int64_t kContext = 640;  // tokens (one per byte): the judge's instructions take about 400

fs::path small_judge(const fs::path& dir, int64_t context) {
  rlhf::testing::write_tiny_hf_model(dir, 11);
  json cfg = json::parse(rlhf::testing::read_text(dir / "config.json"));
  cfg["max_position_embeddings"] = context;
  std::ofstream(dir / "config.json") << cfg.dump(2);
  return dir;
}

// "BEGIN w0001 w0002 ... wNNNN END": the start, the middle and the end can be told apart.
std::string long_text(int words, const std::string& begin, const std::string& end) {
  std::string s = begin;
  for (int i = 1; i <= words; ++i) s += fmt::format(" w{:04d}", i);
  return s + " " + end;
}

JudgeConfig config_for(const fs::path& model) {
  JudgeConfig jc;
  jc.model = model.string();
  jc.explanation_tokens = 24;
  jc.batch_size = 2;
  return jc;
}

class JudgeContext : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::set_num_threads(1);
    dir = rlhf::testing::scratch_dir();
    model_dir = small_judge(dir / "judge", kContext);
    jc = config_for(model_dir);
    judge = std::make_unique<Judge>(jc);
    model = load_model(jc.model);
    header = judge->prompt_ids({"", "", ""});  // the instructions alone
  }
  std::string text(const std::vector<int32_t>& ids) const { return model->tokenizer->decode(ids); }
  // The rendered prompt fits with the lead-in and the explanation, and keeps the template's start.
  void expect_fits_and_keeps_the_header(const std::vector<int32_t>& ids) const {
    EXPECT_LE(static_cast<int64_t>(ids.size()), judge->prompt_budget());
    EXPECT_LE(static_cast<int64_t>(ids.size()) + judge->lead_in_tokens() + jc.explanation_tokens, kContext);
    const std::string bare = text(header), got = text(ids);
    const size_t start = bare.find("Text and instruction:");  // where the dataset's text begins
    ASSERT_NE(start, std::string::npos) << bare;
    EXPECT_EQ(got.substr(0, start), bare.substr(0, start)) << got;
    EXPECT_TRUE(got.ends_with("Answer with one letter.\nAnswer:")) << got;  // the question survives
  }
  fs::path dir, model_dir;
  JudgeConfig jc;
  std::unique_ptr<Judge> judge;
  std::unique_ptr<Model> model;
  std::vector<int32_t> header;
};

TEST_F(JudgeContext, BudgetLeavesRoomForTheLeadInAndTheExplanation) {
  EXPECT_GT(judge->lead_in_tokens(), 20);  // "Neither response is clearly better:" in bytes
  EXPECT_EQ(judge->prompt_budget(), kContext - jc.explanation_tokens - judge->lead_in_tokens());
}

TEST_F(JudgeContext, ALongTextLosesItsMiddleNotItsStartOrEnd) {
  PairToJudge pair{long_text(600, "BEGIN-OF-TEXT", "END-OF-TEXT"), "A cat sat.", "Dogs bark."};
  auto ids = judge->prompt_ids(pair);
  expect_fits_and_keeps_the_header(ids);
  const std::string got = text(ids);
  EXPECT_NE(got.find("BEGIN-OF-TEXT w0001"), std::string::npos) << got;
  EXPECT_NE(got.find("w0600 END-OF-TEXT"), std::string::npos) << got;
  EXPECT_NE(got.find("[...]"), std::string::npos) << got;
  EXPECT_EQ(got.find("w0300"), std::string::npos) << got;  // the middle is gone
  EXPECT_NE(got.find("Response A:\nA cat sat."), std::string::npos) << got;  // the responses are whole
  EXPECT_NE(got.find("Response B:\nDogs bark."), std::string::npos) << got;
}

TEST_F(JudgeContext, LongResponsesLoseTheirMiddlesToo) {
  PairToJudge pair{"Summarize: " + long_text(300, "TEXT-START", "TEXT-END"), long_text(300, "A-START", "A-END"),
                   long_text(300, "B-START", "B-END")};
  auto ids = judge->prompt_ids(pair);
  expect_fits_and_keeps_the_header(ids);
  const std::string got = text(ids);
  for (const char* kept : {"Summarize: TEXT-START", "A-START", "A-END", "B-START", "B-END"})
    EXPECT_NE(got.find(kept), std::string::npos) << kept << " in " << got;
}

TEST_F(JudgeContext, JudgingLongPairsRunsWithinTheContext) {
  std::vector<PairToJudge> pairs = {
      {long_text(800, "BEGIN", "END"), "Short.", "Also short."},
      {"Short text.", long_text(400, "A", "A"), long_text(500, "B", "B")},
      {"Short text.", "Short.", "Short too."},
  };
  std::vector<JudgedPair> judged;
  ASSERT_NO_THROW(judged = judge->judge(pairs));
  ASSERT_EQ(judged.size(), pairs.size());
  for (const auto& j : judged) EXPECT_FALSE(j.explanation.empty());
}

TEST(JudgeContextTooSmall, ContextBelowTheInstructionsIsAClearError) {
  auto dir = rlhf::testing::scratch_dir();
  JudgeConfig jc = config_for(small_judge(dir / "judge", 256));
  try {
    Judge judge(jc);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("context (256 tokens)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("instructions alone take"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace rlhf::eval
