// The AutoSxS judge on a tiny model made here: the judge's probabilities are the model's own
// at the answer token, both orders are read and combined, and `rlhf autosxs` writes what it
// promises. (Agreement with humans on real data is measured with the default model outside
// the suite; see the README.)
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "judge_fixture.h"
#include "rlhf/eval/judge.h"
#include "rlhf/train/reward_model.h"
#include "test_util.h"
#include "tiny_model.h"

namespace rlhf::eval {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using rlhf::testing::cli;
using rlhf::testing::read_text;
using rlhf::testing::read_jsonl;
using rlhf::testing::run;
using rlhf::testing::tiny_judge;

TEST(Judge, ProbabilitiesAreTheModelsAtTheAnswerToken) {
  torch::set_num_threads(1);
  auto dir = rlhf::testing::scratch_dir();
  JudgeConfig jc;
  jc.model = tiny_judge(dir / "judge").string();
  jc.explanation_tokens = 0;
  jc.batch_size = 3;
  jc.dtype = "fp32";  // compared with the model loaded in fp32 below
  Judge judge(jc);
  PairToJudge pair{"Summarize: the cat sat on the mat all day.", "A cat sat.", "Dogs bark loudly at night."};

  // By hand: one unpadded forward, softmax at the last position, "A" (byte 65) against "B" (66).
  std::vector<int32_t> ids = judge.prompt_ids(pair);
  auto m = load_model(jc.model);
  torch::NoGradGuard ng;
  SequenceBatch sb = pack_sequences({ids}, m->pad_id, true, torch::kCPU);
  ForwardArgs args;
  args.tokens = sb.tokens;
  args.positions = sb.positions;
  args.attn_mask = sb.attn_mask;
  auto logits = m->net->logits(m->net->hidden(args)).index({0, -1});
  auto p = torch::softmax(logits, -1);
  const double want = p[65].item<double>() / (p[65].item<double>() + p[66].item<double>());
  // The same pair alone and inside a padded batch of prompts of other lengths.
  std::vector<PairToJudge> batch = {{"x", "short", "y"}, pair, {"a much longer context " + std::string(80, 'z'), "q", "r"}};
  EXPECT_NEAR(judge.prob_first_better({pair})[0], want, 1e-6);
  EXPECT_NEAR(judge.prob_first_better(batch)[1], want, 1e-5);
}

TEST(Judge, ReadsBothOrdersAndExplains) {
  torch::set_num_threads(1);
  auto dir = rlhf::testing::scratch_dir();
  JudgeConfig jc;
  jc.model = tiny_judge(dir / "judge").string();
  jc.explanation_tokens = 6;
  jc.batch_size = 4;
  Judge judge(jc);
  std::vector<PairToJudge> pairs;
  for (int i = 0; i < 6; ++i)
    pairs.push_back({"text " + std::to_string(i), "answer one " + std::string(i, 'x'), "answer two " + std::string(5 - i, 'y')});
  std::vector<PairToJudge> swapped;
  for (const auto& p : pairs) swapped.push_back({p.context, p.response_b, p.response_a});
  auto first = judge.prob_first_better(pairs);
  auto second = judge.prob_first_better(swapped);
  size_t reported = 0;
  auto out = judge.judge(pairs, [&](size_t done) { reported = done; });
  EXPECT_EQ(reported, pairs.size());
  ASSERT_EQ(out.size(), pairs.size());
  for (size_t i = 0; i < pairs.size(); ++i) {
    EXPECT_NEAR(out[i].prob_a_first, first[i], 1e-5);
    EXPECT_NEAR(out[i].prob_a_second, 1.0 - second[i], 1e-5);  // A shown second
    Verdict v = combine_orders(out[i].prob_a_first, out[i].prob_a_second);
    EXPECT_EQ(out[i].verdict.choice, v.choice);
    EXPECT_NEAR(out[i].verdict.confidence, v.confidence, 1e-12);
    const std::string lead = v.choice == Choice::Tie ? "Neither response is clearly better:"
                                                     : std::string("Response ") + choice_name(v.choice) + " is better because";
    EXPECT_TRUE(out[i].explanation.starts_with(lead)) << out[i].explanation;
    EXPECT_GT(out[i].explanation.size(), lead.size());  // the judge wrote something
  }
}

TEST(Judge, AutoSxsCommandWritesJudgmentsAndHumanAgreement) {
  auto dir = rlhf::testing::scratch_dir();
  const std::string model = tiny_judge(dir / "judge").string();
  {
    std::ofstream f(dir / "pairs.jsonl");
    for (int i = 0; i < 7; ++i)
      f << json{{"id", "p" + std::to_string(i)}, {"input_text", "text " + std::to_string(i)},
                {"response_a", "aa " + std::to_string(i)}, {"response_b", "bbbb"}, {"human", i % 3 == 0 ? "A" : i % 3 == 1 ? "B" : "TIE"}}
               .dump()
        << "\n";
  }
  const std::string out = (dir / "out").string();
  ASSERT_EQ(run(cli() + " autosxs --input " + (dir / "pairs.jsonl").string() + " --judge " + model + " --output " + out +
                " --human-preference-column human --explanation-tokens 4 --threads 1 --quiet"),
            0);
  auto rows = read_jsonl(dir / "out" / "judgments.jsonl");
  ASSERT_EQ(rows.size(), 7u);
  size_t a = 0, b = 0, t = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i]["id"], "p" + std::to_string(i));
    const std::string c = rows[i]["choice"];
    (c == "A" ? a : c == "B" ? b : t)++;
    const double conf = rows[i]["confidence"];
    EXPECT_GE(conf, 0.0);
    EXPECT_LE(conf, 1.0);
    EXPECT_FALSE(rows[i]["explanation"].get<std::string>().empty());
  }
  json m = json::parse(read_text(dir / "out" / "metrics.json"));
  EXPECT_EQ(m["rows"], 7);
  EXPECT_EQ(m["model_a_wins"], a);
  EXPECT_EQ(m["model_b_wins"], b);
  EXPECT_EQ(m["ties"], t);
  ASSERT_TRUE(m.contains("human_agreement"));
  EXPECT_EQ(m["human_agreement"]["rows"], 5);  // two human ties left out
  EXPECT_EQ(m["human_agreement"]["human_ties_dropped"], 2);

  // A missing column fails before any judging, naming the line and field; nothing is written.
  std::ofstream(dir / "bad.jsonl") << R"({"input_text": "x", "response_a": "y"})" << "\n";
  int status = 0;
  std::string err = rlhf::testing::capture(cli() + " autosxs --input " + (dir / "bad.jsonl").string() + " --judge " +
                                               model + " --output " + (dir / "bad-out").string(),
                                           &status, true);
  EXPECT_NE(status, 0);
  EXPECT_NE(err.find("bad.jsonl:1: field 'response_b' is missing"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(dir / "bad-out"));
}

}  // namespace
}  // namespace rlhf::eval
