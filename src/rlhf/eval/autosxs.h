// AutoSxS, the model-free parts: the judge's task criteria and prompt, reading the pairs to
// judge (JSONL or one JSON array), and the outputs. The judge itself is in judge.h.
//
// Input rows: an id, the context (the prompt both responses answer), response A and B, and
// optionally human preference labels. Columns are named by flags (defaults below); a dotted
// name reads a nested field ("inputs.inputs_pretokenized"); several context columns are
// joined with a blank line, skipping empty ones. The judge reads what the models read: a row's
// instruction column (default "instruction", as `rlhf sxs` writes it) goes before the context,
// a blank line between (judge_context). Several human columns are a vote (the majority label,
// TIE without one); an empty or null label is no preference: a TIE.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/eval/metrics.h"
#include "rlhf/text/prompt_pieces.h"

namespace rlhf::eval {

enum class JudgeTask { Summarization, QuestionAnswering };
// "summarization", "question_answering" (also "qa"); throws rlhf::Error otherwise.
JudgeTask parse_task(const std::string& name);
const char* task_name(JudgeTask task);

// The task's criteria as the judge reads them, one per line.
std::string task_criteria(JudgeTask task);
// The context the judge reads: the instruction the responses were written to, a blank line,
// the prompt. The prompt alone when the instruction is empty or the prompt already starts
// with it (a prompt as the model saw it).
std::string judge_context(const std::string& instruction, const std::string& prompt);

// The judge's instruction for one pair, `first` shown as Response A, `second` as Response B.
// It ends with the question the judge answers with the letter A or B. As pieces, the three
// texts are Content (what a prompt too long gives up) and the instructions around them Fixed.
// `instruction`: when the context starts with it, that start is Fixed (never cut).
text::PromptPieces judge_prompt_pieces(JudgeTask task, const std::string& context, const std::string& first,
                                       const std::string& second, const std::string& instruction = "");
std::string judge_prompt(JudgeTask task, const std::string& context, const std::string& first,
                         const std::string& second);

struct AutoSxsColumns {
  std::string id = "id";                        // absent: the row number (1-based)
  std::vector<std::string> context = {};        // empty: input_text, inputs.inputs_pretokenized, prompt
  std::string instruction = "instruction";      // put before the context when a row has it ("" = none)
  std::string response_a = "response_a", response_b = "response_b";
  std::vector<std::string> human;               // human preference column(s); empty: none
  // Raw human values to labels ("1" -> A ...); empty: parse_choice ("A"/"B"/"TIE", 0/1). An
  // empty or null value is TIE either way.
  std::map<std::string, Choice> human_labels;
};

// "1=A,2=B,0=TIE" -> map; throws rlhf::Error naming the bad entry.
std::map<std::string, Choice> parse_label_map(const std::string& spec);

struct AutoSxsRow {
  std::string id, context, response_a, response_b;
  std::string instruction;      // the instruction column's text that leads context ("" = none)
  std::optional<Choice> human;  // with human columns: the (majority) label
  std::string where;            // "file:line" or "file[index]"
};

// Reads and validates every row (a JSONL file, or a file holding one JSON array of objects).
// Throws rlhf::Error naming file:line (or file[index]) and the field; with skip_invalid, bad
// rows are left out and counted in *skipped (and their first problems listed in *problems).
std::vector<AutoSxsRow> read_autosxs_input(const std::string& path, const AutoSxsColumns& columns,
                                           bool skip_invalid = false, size_t* skipped = nullptr,
                                           std::vector<std::string>* problems = nullptr);

struct Judgment {
  std::string id, context, response_a, response_b;
  Verdict verdict;
  double prob_a_first = 0.5, prob_a_second = 0.5;  // P(A better) with A shown first / second
  std::string explanation;
  std::optional<Choice> human;
};

struct AutoSxsSummary {
  std::string judge, task;
  WinRates wins;
  std::optional<Agreement> agreement;  // with human labels
  // The same with the judge's choice taken from its mean probability alone (A when
  // prob_a > 0.5, B when below, TIE at exactly 0.5): how much a judge knows even where it is
  // position-biased.
  std::optional<Agreement> agreement_by_probability;
  double mean_confidence = 0;
  // Position consistency: the share of pairs on which the judge makes the same choice in both
  // orders (both readings prefer A, or both prefer B). A reading chooses A when its P(A better)
  // is above 0.5 and B when below; exactly 0.5 chooses neither, so a pair with a 0.5 in either
  // order is not consistent. Over every judged pair (position_consistency_pairs; 0 with none).
  // A judge that follows the position alone scores 0; one that picks at random in each order
  // about 0.5.
  double position_consistency = 0;
  size_t position_consistency_pairs = 0;
  // Set when the consistency is below kMinPositionConsistency: the judge agrees with itself
  // less often than a coin would, its verdicts are mostly ties and its win rates say little.
  // "" = none. One sentence, naming the flag and the spec key that choose a stronger judge.
  std::string judge_warning;
  size_t invalid_rows_skipped = 0;
  nlohmann::json to_json() const;
};
// Below this position consistency, summarize() sets judge_warning.
inline constexpr double kMinPositionConsistency = 0.5;
AutoSxsSummary summarize(const std::vector<Judgment>& judgments, const std::string& judge, JudgeTask task);

// Checks, changing nothing, that DIR may become the output folder of `rlhf autosxs`
// (output_dir.h): a new or empty folder, or an earlier autosxs output (replaced file by file
// when the new one is written). Throws rlhf::Error for anything else. Called before any work.
void check_autosxs_output(const std::string& dir);

// DIR/judgments.jsonl (id, input_text, response_a, response_b, choice, confidence,
// explanation, prob_a, prob_a_first, prob_a_second, human_preference?) and DIR/metrics.json,
// each written atomically into the folder check_autosxs_output accepts (claimed now; an
// earlier output's files are replaced).
void write_autosxs_output(const std::string& dir, const std::vector<Judgment>& judgments,
                          const AutoSxsSummary& summary);

// The same two files written (each atomically) into an existing folder, next to whatever else
// it holds (the pipeline's stage folder).
void write_autosxs_files(const std::string& dir, const std::vector<Judgment>& judgments, const AutoSxsSummary& summary);

// The summary in a few lines, for the terminal (the position consistency included; the
// warning is not: callers print judge_warning on stderr).
std::string format_summary(const AutoSxsSummary& summary);

}  // namespace rlhf::eval
