// Datasets: preference, prompt and evaluation JSONL files, read and validated in full before
// any work starts. Accepted forms:
//   seed        {"input_text", "candidate_0", "candidate_1", "choice": 0|1}
//   common      {"prompt", "chosen", "rejected"}; without "prompt" the prompt is the two
//               texts' shared beginning (cut after the last "Assistant:" in it, else at a
//               word boundary), as in Anthropic HH-RLHF
//   chat        {"messages": [{"author"|"role": "system"|"user"|"assistant", "content"}],
//               "context"?} plus the seed's or the common completion fields; a system
//               message (first only) is the context
//   conversational (Hugging Face TRL's forms)
//               {"prompt": [messages], "chosen": [one assistant message], "rejected": [...]},
//               or without "prompt", "chosen" and "rejected" as whole conversations whose
//               shared turns are the prompt and which each add one assistant turn
//   prompt      {"input_text"} or {"prompt"} (text or a list of messages) or {"messages",
//               "context"?}, or the seed's bulk-inference output {"inputs":
//               {"inputs_pretokenized"}, "prediction"}
// Text that is only whitespace counts as empty. A well-formed row that teaches nothing (an
// HH-RLHF dialogue whose final reply is empty) is left out, counted and named in a warning,
// without failing the read.
// A path may be a file, a directory (its *.jsonl files, sorted) or a glob; anything else
// there (a device, a FIFO, a socket, a symbolic-link loop) is refused, naming what it is.
// A line whose JSON repeats a key in one object is invalid (which value is meant is ambiguous).
// Every problem names file:line and the field; by default the first problem stops the read
// (after the whole dataset was checked, all problems listed), with skip_invalid the bad lines
// are counted and left out.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace rlhf::data {

struct Turn {
  std::string author;   // "user" or "assistant"
  std::string content;
};

// A prompt as the dataset gives it: plain text, or a conversation.
struct PromptText {
  std::string text;            // plain form; empty in chat form
  std::vector<Turn> messages;  // chat form: first and last author "user"
  std::string context;         // chat form, optional (becomes the system message)
  bool is_chat() const { return !messages.empty(); }
};

struct PreferenceRow {
  PromptText prompt;
  std::string chosen, rejected;
  std::string where;  // "file:line"
};

struct PromptRow {
  PromptText prompt;
  std::string json;   // the line as read (its fields are carried into outputs)
  std::string where;  // "file:line"
};

// A prompt with a completion to score (`rlhf score`): the prompt fields of a prompt row plus
// "completion" (or "prediction", the bulk-inference output field).
struct ScoredRow {
  PromptText prompt;
  std::string completion;  // may be empty: a model can answer nothing
  std::string json;
  std::string where;
};

struct ReadOptions {
  bool skip_invalid = false;  // leave out bad lines (counted) instead of failing
  size_t max_rows = 0;        // keep the first max_rows valid rows (0 = all)
};

struct ReadReport {
  std::vector<std::string> files;   // the files read, in order
  size_t rows = 0;                  // valid rows kept
  size_t skipped = 0;               // bad lines left out (skip_invalid)
  std::vector<std::string> errors;  // the first problems found ("file:line: field 'x': ...")
  size_t dropped = 0;                 // well-formed rows that teach nothing, always left out
  std::vector<std::string> left_out;  // the first of them, with why
};

// The files a path names: itself, a directory's *.jsonl (sorted), or a glob's matches
// (sorted; folders among them left out). Throws rlhf::Error when nothing matches, and when a
// path or a match is neither a regular file nor a folder.
std::vector<std::string> expand_paths(const std::string& spec);

// Readers. Throw rlhf::Error listing the problems (up to 20, then a count) unless
// options.skip_invalid; `report` (optional) receives what was read.
std::vector<PreferenceRow> read_preference_dataset(const std::string& spec, const ReadOptions& options = {},
                                                   ReadReport* report = nullptr);
std::vector<PromptRow> read_prompt_dataset(const std::string& spec, const ReadOptions& options = {},
                                           ReadReport* report = nullptr);
std::vector<ScoredRow> read_scored_dataset(const std::string& spec, const ReadOptions& options = {},
                                           ReadReport* report = nullptr);

// True when the first valid line of the dataset carries preference fields (an evaluation
// dataset that can also measure reward-model accuracy).
bool has_preference_fields(const std::string& spec);

// Deterministic permutation of 0..n-1 from a seed, the same on every platform (own
// Fisher–Yates over SplitMix64; not std::shuffle, whose algorithm is unspecified).
std::vector<size_t> permutation(size_t n, uint64_t seed);

// A held-out split of n rows: `fraction` of them (at least 1 when the fraction is positive and
// n >= 2; none when it is 0; at most max_validation), chosen by the seed; both lists sorted.
struct Split {
  std::vector<size_t> train, validation;
};
Split holdout_split(size_t n, double fraction, size_t max_validation, uint64_t seed);

}  // namespace rlhf::data
