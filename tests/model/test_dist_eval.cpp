// `rlhf label` and `rlhf autosxs` on 2 ranks (--nproc-per-node 2): the ranks share the
// sampling batches and the judge's chunks, rank 0 alone writes, and the files are those of 1
// process byte for byte, also when the last round has work for rank 0 only (an odd number of
// batches or chunks). A bad input row stops every rank before any work.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "judge_fixture.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using rlhf::testing::capture;
using rlhf::testing::cli;
using rlhf::testing::read_text;

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

// Runs `args` in 1 process and on 2 ranks, with `one`, then `two`, as the last argument.
void run_both(const std::string& args, const fs::path& one, const fs::path& two, std::string* two_log = nullptr) {
  int rc = 0;
  std::string log = capture(cli() + args + one.string(), &rc, true);
  ASSERT_EQ(rc, 0) << log;
  log = capture(cli() + " --nproc-per-node 2" + args + two.string(), &rc, true);
  ASSERT_EQ(rc, 0) << log;
  if (two_log) *two_log = log;
}

TEST(DistEval, LabelOnTwoRanksWritesTheBytesOfOneProcess) {
  const fs::path dir = rlhf::testing::scratch_dir();
  const std::string model = rlhf::testing::tiny_judge(dir / "model").string();
  {
    std::ofstream f(dir / "prompts.jsonl");
    for (int i = 0; i < 10; ++i) f << json{{"input_text", "say something " + std::to_string(i) + " ->"}}.dump() << "\n";
  }
  // Sampled candidates: 5 batches of 2 per side (rank 0 has 3, rank 1 has 2), judged in 2
  // chunks of 8 pairs.
  const std::string sampled = " label --prompt-dataset " + (dir / "prompts.jsonl").string() + " --model " + model +
                              " --judge " + model +
                              " --keep-ties --temperatures 0.8,1.2 --max-new-tokens 8 --batch-size 2 --seed 3"
                              " --threads 1 --quiet --output ";
  std::string log;
  run_both(sampled, dir / "one.jsonl", dir / "two.jsonl", &log);
  const std::string one = read_text(dir / "one.jsonl");
  EXPECT_GE(count(one, "\n"), 8u);
  EXPECT_EQ(read_text(dir / "two.jsonl"), one);
  EXPECT_EQ(count(log, "pairs labeled by judge:"), 1u) << log;  // rank 0 reports
  EXPECT_EQ(count(log, "[rank 1] [rlhf]"), 0u) << log;           // and logs

  // Existing pairs: 11 judged with batch size 1 (chunks of 4: 3 chunks, rank 0 has 2), and
  // labeled by a rule (no work to share).
  {
    std::ofstream f(dir / "pairs.jsonl");
    for (int i = 0; i < 11; ++i)
      f << json{{"input_text", "text " + std::to_string(i)},
                {"candidate_0", "answer " + std::string(static_cast<size_t>(i % 4 + 1), 'a')},
                {"candidate_1", "reply " + std::to_string(i * 7)}}
               .dump()
        << "\n";
  }
  const std::string pairs = " label --pairs " + (dir / "pairs.jsonl").string() + " --threads 1 --quiet";
  run_both(pairs + " --judge " + model + " --keep-ties --batch-size 1 --output ", dir / "judged1.jsonl",
           dir / "judged2.jsonl");
  EXPECT_EQ(count(read_text(dir / "judged1.jsonl"), "\n"), 11u);
  EXPECT_EQ(read_text(dir / "judged2.jsonl"), read_text(dir / "judged1.jsonl"));
  run_both(pairs + " --rule prefer-shorter --output ", dir / "rule1.jsonl", dir / "rule2.jsonl");
  EXPECT_EQ(read_text(dir / "rule2.jsonl"), read_text(dir / "rule1.jsonl"));
}

TEST(DistEval, AutoSxsOnTwoRanksWritesTheFilesOfOneProcess) {
  const fs::path dir = rlhf::testing::scratch_dir();
  const std::string model = rlhf::testing::tiny_judge(dir / "judge").string();
  {
    std::ofstream f(dir / "pairs.jsonl");
    for (int i = 0; i < 20; ++i)
      f << json{{"id", "p" + std::to_string(i)}, {"input_text", "text " + std::to_string(i)},
                {"response_a", "aa " + std::string(static_cast<size_t>(i % 5 + 1), 'x')},
                {"response_b", "bbbb " + std::to_string(i)}, {"human", i % 3 == 0 ? "A" : i % 3 == 1 ? "B" : "TIE"}}
               .dump()
        << "\n";
  }
  // Batch size 2: chunks of 8 pairs, 3 chunks (rank 0 judges 2 of them).
  const std::string args = " autosxs --input " + (dir / "pairs.jsonl").string() + " --judge " + model +
                           " --human-preference-column human --explanation-tokens 4 --batch-size 2 --threads 1 --quiet"
                           " --output ";
  std::string log;
  run_both(args, dir / "one", dir / "two", &log);
  for (const char* file : {"judgments.jsonl", "metrics.json"})
    EXPECT_EQ(read_text(dir / "two" / file), read_text(dir / "one" / file)) << file;
  EXPECT_EQ(count(read_text(dir / "two" / "judgments.jsonl"), "\n"), 20u);
  EXPECT_EQ(count(log, "autosxs: 20 pairs"), 1u) << log;
  EXPECT_EQ(count(log, "judgments: "), 1u) << log;

  // Again into that folder (an earlier autosxs output, replaced): the same files.
  int rc = 0;
  log = capture(cli() + " --nproc-per-node 2" + args + (dir / "two").string(), &rc, true);
  ASSERT_EQ(rc, 0) << log;
  EXPECT_EQ(read_text(dir / "two" / "judgments.jsonl"), read_text(dir / "one" / "judgments.jsonl"));
}

TEST(DistEval, ABadInputRowStopsEveryRankBeforeAnyWork) {
  const fs::path dir = rlhf::testing::scratch_dir();
  const std::string model = rlhf::testing::tiny_judge(dir / "judge").string();
  {
    std::ofstream f(dir / "bad.jsonl");
    f << json{{"input_text", "x"}, {"response_a", "y"}, {"response_b", "z"}}.dump() << "\n"
      << json{{"input_text", "x"}, {"response_a", "y"}}.dump() << "\n";
  }
  int rc = 0;
  std::string log = capture(cli() + " --nproc-per-node 2 autosxs --input " + (dir / "bad.jsonl").string() + " --judge " +
                                model + " --threads 1 --output " + (dir / "out").string(),
                            &rc, true);
  EXPECT_NE(rc, 0) << log;
  EXPECT_NE(log.find("bad.jsonl:2: field 'response_b' is missing"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(dir / "out"));

  std::ofstream(dir / "prompts.jsonl") << json{{"input_text", "fine"}}.dump() << "\n" << R"({"nothing": 1})" << "\n";
  log = capture(cli() + " --nproc-per-node 2 label --prompt-dataset " + (dir / "prompts.jsonl").string() + " --model " +
                    model + " --rule prefer-shorter --threads 1 --quiet --output " + (dir / "prefs.jsonl").string(),
                &rc, true);
  EXPECT_NE(rc, 0) << log;
  EXPECT_NE(log.find("prompts.jsonl:2"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(dir / "prefs.jsonl"));
}

}  // namespace
