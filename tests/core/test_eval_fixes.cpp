// What the evaluation reads and counts, without a model: the side-by-side join (the dataset
// prompt first, a key that keeps the prompt's form), the instruction carried from the
// inference rows through sxs.jsonl into the judge's context, human labels that are empty or
// null, the by-probability agreement at an even probability, labeling rules against an empty
// candidate, and TensorBoard files whose tail a power loss left as zeros.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/eval/autosxs.h"
#include "rlhf/eval/metrics.h"
#include "rlhf/eval/rules.h"
#include "rlhf/eval/sxs.h"
#include "rlhf/track/tensorboard.h"
#include "rlhf/util/error.h"
#include "test_util.h"

namespace rlhf::eval {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using rlhf::testing::error_of;
using rlhf::testing::read_jsonl;
using rlhf::testing::read_text;
using rlhf::testing::scratch_dir;

constexpr Choice A = Choice::A, B = Choice::B, T = Choice::Tie;
const std::string kInstruction = "Summarize in less than 50 words.";

void write_lines(const fs::path& p, const std::vector<json>& rows) {
  std::ofstream f(p);
  for (const auto& r : rows) f << r.dump() << "\n";
}

// A row as `rlhf infer` writes it: the dataset prompt, the text the model saw (instruction
// first), the prediction, and the settings with the instruction.
json infer_row(const std::string& input_text, const std::string& instruction, const std::string& prediction) {
  return {{"input_text", input_text},
          {"inputs", {{"inputs_pretokenized", instruction.empty() ? input_text : instruction + "\n\n" + input_text}}},
          {"prediction", prediction},
          {"model", {{"reference", "m"}, {"sha256", "00"}}},
          {"settings", {{"instruction", instruction}, {"prompt_format", "raw"}}},
          {"stopped", true}};
}

// ---- the side-by-side join ----------------------------------------------------------------

TEST(SxsJoin, PrefersTheDatasetPromptWhenBothFilesCarryIt) {
  auto dir = scratch_dir();
  // The same posts, given different instructions: the texts the models saw differ, the posts
  // do not.
  write_lines(dir / "a.jsonl", {infer_row("post one", "Summarize.", "a1"), infer_row("post two", "Summarize.", "a2")});
  write_lines(dir / "b.jsonl", {infer_row("post two", kInstruction, "b2"), infer_row("post one", kInstruction, "b1")});
  SxsTable t = join_sxs(read_sxs_side((dir / "a.jsonl").string()), read_sxs_side((dir / "b.jsonl").string()));
  EXPECT_EQ(t.join_on, "input_text");
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0].response_b, "b1");
  EXPECT_EQ(t.rows[1].response_b, "b2");
  EXPECT_TRUE(t.unmatched_a.empty());
  // The different instructions are counted and said.
  SxsSummary s = summarize_sxs(t);
  EXPECT_EQ(s.to_json().value("instruction_differs", 0), 2) << s.to_json().dump();
  EXPECT_NE(format_sxs_summary(s).find("different instructions"), std::string::npos) << format_sxs_summary(s);
  // Asked for, the join on inputs_pretokenized is still there (and finds nothing here).
  std::string e = error_of([&] {
    join_sxs(read_sxs_side((dir / "a.jsonl").string()), read_sxs_side((dir / "b.jsonl").string()), JoinOn::Pretokenized);
  });
  EXPECT_NE(e.find("no prompt of A is in B"), std::string::npos) << e;
}

TEST(SxsJoin, APlainPromptAndAConversationNeverShareAKey) {
  auto dir = scratch_dir();
  const json chat = {{"messages", json::array({{{"author", "user"}, {"content", "x"}}})}, {"prediction", "chat answer"}};
  write_lines(dir / "plain.jsonl", {{{"input_text", "User: x"}, {"prediction", "plain answer"}}});
  write_lines(dir / "chat.jsonl", {chat});
  std::string e = error_of([&] {
    join_sxs(read_sxs_side((dir / "plain.jsonl").string()), read_sxs_side((dir / "chat.jsonl").string()));
  });
  EXPECT_NE(e.find("no prompt of A is in B"), std::string::npos) << e;
  EXPECT_NE(e.find("a conversation"), std::string::npos) << e;

  // Both forms in both files: each pairs with its own form, whatever the order.
  write_lines(dir / "a.jsonl", {{{"input_text", "User: x"}, {"prediction", "a plain"}},
                                {{"messages", chat["messages"]}, {"prediction", "a chat"}}});
  write_lines(dir / "b.jsonl", {{{"messages", chat["messages"]}, {"prediction", "b chat"}},
                                {{"input_text", "User: x"}, {"prediction", "b plain"}}});
  SxsTable t = join_sxs(read_sxs_side((dir / "a.jsonl").string()), read_sxs_side((dir / "b.jsonl").string()));
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0].response_b, "b plain");
  EXPECT_EQ(t.rows[1].response_b, "b chat");
  EXPECT_EQ(t.duplicates_a, 0u);
  EXPECT_EQ(t.duplicates_b, 0u);
}

// ---- the instruction, from inference to the judge ------------------------------------------

TEST(SxsInstruction, TheJudgeReadsTheInstructionTheModelsWereGiven) {
  auto dir = scratch_dir();
  write_lines(dir / "untuned.jsonl", {infer_row("post one", kInstruction, "a1"), infer_row("post two", kInstruction, "a2")});
  write_lines(dir / "tuned.jsonl", {infer_row("post one", kInstruction, "b1"), infer_row("post two", kInstruction, "b2")});
  SxsTable t =
      join_sxs(read_sxs_side((dir / "untuned.jsonl").string()), read_sxs_side((dir / "tuned.jsonl").string()));
  const SxsSummary s = summarize_sxs(t);
  write_sxs_output((dir / "sxs").string(), t, s);

  // sxs.jsonl: the dataset prompt as input_text, the instruction beside it.
  auto rows = read_jsonl(dir / "sxs" / "sxs.jsonl");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["input_text"], "post one");
  EXPECT_EQ(rows[0].value("instruction", ""), kInstruction);
  EXPECT_EQ(s.to_json().value("instruction", ""), kInstruction);
  EXPECT_NE(read_text(dir / "sxs" / "sxs.csv").find(kInstruction), std::string::npos);

  // AutoSxS's default columns read it: the judge's context is the instruction, a blank line,
  // the post.
  auto pairs = read_autosxs_input((dir / "sxs" / "sxs.jsonl").string(), {});
  ASSERT_EQ(pairs.size(), 2u);
  EXPECT_EQ(pairs[0].context, kInstruction + "\n\npost one");
  EXPECT_EQ(pairs[1].context, kInstruction + "\n\npost two");
}

TEST(AutoSxsInstruction, TheInstructionColumnGoesBeforeTheContextOnce) {
  auto dir = scratch_dir();
  write_lines(dir / "pairs.jsonl",
              {{{"instruction", "Fix the grammar."}, {"input_text", "he go home"}, {"response_a", "a"}, {"response_b", "b"}},
               // A context that already starts with it (the text the model saw) keeps it once.
               {{"instruction", "Fix."}, {"inputs", {{"inputs_pretokenized", "Fix.\n\nshe go"}}}, {"response_a", "a"},
                {"response_b", "b"}},
               {{"input_text", "no instruction"}, {"response_a", "a"}, {"response_b", "b"}}});
  auto rows = read_autosxs_input((dir / "pairs.jsonl").string(), {});
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].context, "Fix the grammar.\n\nhe go home");
  EXPECT_EQ(rows[1].context, "Fix.\n\nshe go");
  EXPECT_EQ(rows[2].context, "no instruction");
}

// ---- human labels and agreement ------------------------------------------------------------

TEST(AutoSxsHumanLabels, AnEmptyAndANullLabelMeanTheSame) {
  auto dir = scratch_dir();
  auto row = [](const json& human) {
    return json{{"input_text", "x"}, {"response_a", "a"}, {"response_b", "b"}, {"human", human}};
  };
  write_lines(dir / "pairs.jsonl", {row(""), row(nullptr), row("A")});
  AutoSxsColumns cols;
  cols.human = {"human"};
  auto rows = read_autosxs_input((dir / "pairs.jsonl").string(), cols);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].human, rows[1].human);
  EXPECT_EQ(rows[1].human, T);
  EXPECT_EQ(rows[2].human, A);
  // The same with a label map that does not name the empty value.
  cols.human_labels = parse_label_map("1=A,2=B");
  write_lines(dir / "mapped.jsonl", {row(""), row(nullptr), row(2)});
  rows = read_autosxs_input((dir / "mapped.jsonl").string(), cols);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].human, T);
  EXPECT_EQ(rows[1].human, T);
  EXPECT_EQ(rows[2].human, B);
}

TEST(AutoSxsAgreement, ByProbabilityAnEvenProbabilityIsATieNotB) {
  std::vector<Judgment> js(3);
  js[0].verdict.prob_a = 0.5;  // even: neither
  js[0].human = B;
  js[1].verdict.prob_a = 0.7;
  js[1].human = A;
  js[2].verdict.prob_a = 0.2;
  js[2].human = B;
  AutoSxsSummary s = summarize(js, "judge", JudgeTask::Summarization);
  ASSERT_TRUE(s.agreement_by_probability.has_value());
  const Agreement& g = *s.agreement_by_probability;
  EXPECT_EQ(g.n, 3u);
  EXPECT_EQ(g.judge_ties, 1u);
  EXPECT_EQ(g.confusion[size_t(B)][size_t(T)], 1u);
  EXPECT_NEAR(g.accuracy, 2.0 / 3.0, 1e-12);
}

// ---- labeling rules ------------------------------------------------------------------------

TEST(LabelRules, AnEmptyCandidateNeverWins) {
  const LabelRule shorter = LabelRule::parse("prefer-shorter");
  for (const std::string empty : {"", " ", "\n\t ", "\u00a0"}) {
    RuleLabel l = shorter.label(empty, "a long and complete answer");
    EXPECT_EQ(l.choice, B) << json(empty).dump();
    EXPECT_DOUBLE_EQ(l.confidence, 1.0);
    EXPECT_EQ(shorter.label("an answer", empty).choice, A) << json(empty).dump();
  }
  EXPECT_EQ(shorter.label("", " ").choice, T);
  // The other rules too: within the limit, or matching, nothing is still nothing.
  EXPECT_EQ(LabelRule::parse("max-words=3").label("", "one two three four").choice, B);
  EXPECT_EQ(LabelRule::parse("max-words=3").label("one two", "").choice, A);
  EXPECT_EQ(LabelRule::parse("regex=^\\s*$").label(" ", "words").choice, B);
  EXPECT_EQ(LabelRule::parse("max-words=3").label("", "").choice, T);
}

}  // namespace
}  // namespace rlhf::eval

// ---- TensorBoard files ---------------------------------------------------------------------

namespace rlhf::track {
namespace {

namespace fs = std::filesystem;

TEST(TrackZeroTail, AZeroFilledTailIsTornLikeAShortOne) {
  const fs::path dir = rlhf::testing::scratch_dir();
  std::string path;
  {
    EventWriter w(dir.string());
    path = w.path();
    for (int step = 1; step <= 3; ++step) w.add_scalar("loss", step, 1.0 / step, step);
  }
  const std::string full = rlhf::testing::read_text(path);
  const size_t last = encode_record(encode_scalar_event(3.0, 3, "loss", 1.0f / 3)).size();
  auto write = [&](const std::string& bytes) { std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes; };

  // The last record's bytes zeroed from any point on (its size on disk, its data not):
  // the first two records are read, as when it is cut short.
  for (size_t from = 0; from < last; ++from) {
    std::string bytes = full;
    std::fill(bytes.end() - static_cast<std::ptrdiff_t>(last - from), bytes.end(), '\0');
    if (bytes == full) continue;  // those bytes were zeros already
    write(bytes);
    std::vector<ScalarPoint> got;
    ASSERT_NO_THROW(got = read_scalars(path)) << "zeros from byte " << from << " of the last record";
    ASSERT_EQ(got.size(), 2u) << "zeros from byte " << from;
    EXPECT_EQ(got[1].step, 2);
  }
  // Zeros after the last whole record (a length of 0 with a checksum of 0 is no record).
  write(full + std::string(4096, '\0'));
  EXPECT_EQ(read_scalars(path).size(), 3u);
  write(full + std::string(12, '\0'));
  EXPECT_EQ(read_scalars(path).size(), 3u);

  // Zeros in the middle, with records after them, are corruption: an error naming the byte.
  std::string bytes = full;
  const size_t second = full.size() - 2 * last;
  std::fill(bytes.begin() + static_cast<std::ptrdiff_t>(second), bytes.begin() + static_cast<std::ptrdiff_t>(second + 12),
            '\0');
  write(bytes);
  std::string e = rlhf::testing::error_of([&] { read_scalars(path); });
  EXPECT_NE(e.find("byte " + std::to_string(second)), std::string::npos) << e;
}

}  // namespace
}  // namespace rlhf::track
