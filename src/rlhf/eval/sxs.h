// The side-by-side table (`rlhf sxs`): two bulk-inference outputs (say untuned and tuned)
// joined on the prompt, written as JSONL, CSV and a self-contained HTML page. Torch-free;
// reward-model scores are added by sxs_score.h.
//
// Accepted input rows (one JSON object a line; a path may be a file, a folder or a glob):
//   ours       the input row's fields + inputs.inputs_pretokenized + prediction + model +
//              settings (`rlhf infer`, see infer.h)
//   seed       {"inputs": {"inputs_pretokenized", "targets_pretokenized"}, "prediction"}
//   plain      input_text (or prompt, or messages) + prediction (or completion)
// Join key: the dataset prompt (input_text, prompt or messages) when every row of both files
// has it, else inputs.inputs_pretokenized when every row has that, else the dataset prompt
// (a row with only inputs_pretokenized uses that). The key keeps a prompt's form: a plain
// text and a conversation never share a key, even when one reads like the other ("User: x"
// against [user: x]). The table keeps A's order; the k-th occurrence of a prompt in A is
// paired with its k-th occurrence in B; rows without a partner are counted, named
// (file:line) and left out of the table.
// Instruction: our rows record the instruction their model was given (settings.instruction);
// the table carries it with every row (A's, else B's when A's is empty or not recorded), so
// a judge reads the prompt as the models saw it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/data/dataset.h"

namespace rlhf::eval {

// One line of an input file.
struct SxsInputRow {
  data::PromptText prompt;    // the dataset prompt (input_text, prompt, messages), else the
                              // inputs_pretokenized text
  bool has_dataset_prompt = false;  // prompt came from input_text, prompt or messages
  std::string pretokenized;   // inputs.inputs_pretokenized; "" when absent
  bool has_pretokenized = false;
  std::string response;       // prediction (or completion)
  std::string instruction;    // settings.instruction: what the model was given; "" when none
  nlohmann::json id;          // the row's "id", null when absent
  std::string where;          // "file:line"
};

// One input file, read and validated.
struct SxsSide {
  std::string file;        // the path as given
  std::string label;       // what the page calls it: the model (reference + adapter) of the
                           // first row when recorded, else the file's name without .jsonl
  nlohmann::json model;    // the first row's "model" and "settings" (null when absent)
  nlohmann::json settings;
  std::vector<SxsInputRow> rows;
};

struct SxsReadOptions {
  bool skip_invalid = false;  // leave out bad lines (counted) instead of failing
};

// Reads every row; throws rlhf::Error naming file:line and the field (all problems listed,
// up to 20) unless skip_invalid. `skipped` (optional) receives the count left out.
SxsSide read_sxs_side(const std::string& path, const SxsReadOptions& options = {}, size_t* skipped = nullptr);

enum class JoinOn { Auto, Pretokenized, DatasetPrompt };
// "auto", "inputs_pretokenized", "input_text"; throws rlhf::Error otherwise.
JoinOn parse_join_on(const std::string& name);

struct SxsRow {
  nlohmann::json id;           // A's "id" when it has one, else the row's number (1-based)
  std::string input_text;      // the prompt shown: A's dataset prompt, else its inputs_pretokenized
  std::string instruction;     // the instruction the models were given: A's, else B's ("" = none)
                               // (rows whose sides were given different ones are counted)
  std::string response_a, response_b;
  int64_t words_a = 0, words_b = 0;
  std::optional<double> score_a, score_b;
  size_t a = 0, b = 0;         // indexes into the sides' rows
};

struct SxsTable {
  SxsSide a, b;
  std::string join_on;                            // "inputs_pretokenized" or "input_text"
  std::vector<SxsRow> rows;
  std::vector<size_t> unmatched_a, unmatched_b;   // rows (indexes) with no partner
  size_t duplicates_a = 0, duplicates_b = 0;      // rows whose prompt came earlier in the same file
  size_t instruction_differs = 0;                 // rows whose A and B were given different instructions
  std::string reward_model;                       // the folder that gave the scores ("" = none)
  bool scored() const { return !reward_model.empty(); }
};

// Joins the two sides. Throws rlhf::Error when no prompt of A is in B.
SxsTable join_sxs(SxsSide a, SxsSide b, JoinOn on = JoinOn::Auto);

struct SxsSideSummary {
  std::string file, label;
  nlohmann::json model, settings;
  size_t rows_read = 0, unmatched = 0, duplicates = 0;
  double mean_words = 0;
  double over_max_words = 0;          // share of the table's rows with more than max_words words
  std::optional<double> mean_score;   // with a reward model
};

struct SxsSummary {
  size_t rows = 0;
  std::string join_on;
  int64_t max_words = 50;
  std::string instruction;         // the instruction of every row, when they share one ("" otherwise)
  size_t instruction_differs = 0;  // rows whose A and B were given different instructions
  SxsSideSummary a, b;
  std::string reward_model;
  // With scores: shares of the rows where B's score is higher, A's is higher, they are equal.
  std::optional<double> b_higher, a_higher, ties;
  nlohmann::json to_json() const;
};
SxsSummary summarize_sxs(const SxsTable& table, int64_t max_words = 50);

// The outputs' contents.
std::string sxs_jsonl(const SxsTable& table);   // id, input_text, instruction (when the row has
                                                // one), response_a, response_b, words_a, words_b,
                                                // score_a?, score_b?
std::string sxs_csv(const SxsTable& table);     // the same columns, RFC 4180 (CRLF, quoted fields);
                                                // instruction last, when any row has one
std::string sxs_html(const SxsTable& table, const SxsSummary& summary);
// The summary in a few lines, for the terminal.
std::string format_sxs_summary(const SxsSummary& summary);

// DIR/sxs.jsonl, sxs.csv, sxs.html, summary.json, built in a temporary sibling folder and
// renamed into place. An existing DIR is replaced only when it is empty or holds nothing but
// these files (an earlier sxs output); otherwise rlhf::Error.
void write_sxs_output(const std::string& dir, const SxsTable& table, const SxsSummary& summary);

// The side-by-side table as HTML (<table class="sxs" id="sxs">, the classes of html.h's
// stylesheet), one line per row in order: words over max_words marked; with scores, the
// higher of the two marked. The sxs page and the run report both show it.
std::string sxs_table_html(const std::vector<SxsRow>& rows, const std::string& label_a, const std::string& label_b,
                           int64_t max_words, bool scored);

// A prompt as one text: a plain prompt as it is; a conversation as its context, then
// "User: ..." / "Assistant: ..." paragraphs (what the table shows and the judge reads).
std::string prompt_as_text(const data::PromptText& prompt);

// The prompt a reward model scores a row's response with. The reward model prepends its own
// instruction, so it gets the dataset prompt when the row has one. A row with only
// inputs_pretokenized (the seed's form) holds the prompt with the instruction already in it:
// when the text starts with `instruction` followed by whitespace (or nothing), that prefix and
// the whitespace are removed (*stripped set); otherwise the text is used as it is.
data::PromptText reward_prompt(const SxsInputRow& row, const std::string& instruction, bool* stripped = nullptr);

}  // namespace rlhf::eval
