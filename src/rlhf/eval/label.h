// RLAIF (`rlhf label`): a preference dataset labeled without human labelers.
// Candidates: for each prompt of a prompt dataset, two completions, sampled from one model at
// two temperatures (and seeds), or from two models (model_b); or existing unlabeled pairs
// (input_text, candidate_0, candidate_1). Labels: a rule (rules.h) or the AutoSxS judge
// (judge.h); the judge reads the instruction, a blank line and the prompt, as the candidates'
// model did. Output, in the seed's preference format, one line per labeled pair:
//   input_text, candidate_0, candidate_1, choice (0|1), confidence, labeler
// Left out, and counted: pairs with a candidate that is empty or only whitespace (the model
// stopped at once; the preference reader refuses such a line), before any labeling; pairs
// with identical candidates; ties (rule undecided, judge readings in disagreement) unless
// keep_ties; pairs with confidence below min_confidence. A kept tie is a readable preference
// line marked "tie": true, whose choice is the candidate the judge's mean probability leans
// to (0 when it is even, and always 0 for a rule): a coin, not a preference. The file is
// written atomically at the end; an existing file there is replaced only when it is an
// earlier label output (checked before any work). Under a distributed launcher (dist::job())
// every rank reads the input, the ranks share the sampling batches (batch b, seed + b, on rank
// b mod N) and the judge's chunks, and rank 0 alone logs and writes: the file of one process,
// byte for byte. Every rank returns the same summary.
#pragma once
#include <cstdint>
#include <string>

#include "rlhf/eval/autosxs.h"
#include "rlhf/model/generate.h"

namespace rlhf::eval {

struct LabelConfig {
  // Candidates: exactly one of prompt_dataset and pairs.
  std::string prompt_dataset;
  std::string pairs;
  std::string model;                 // candidates' model ("" = the adapter's base, else the default)
  std::string adapter;               // its LoRA adapter folder ("" = none)
  std::string model_b, adapter_b;    // a second model for candidate_1 ("" = the first)
  double temperature_0 = 0.7, temperature_1 = 1.0;
  double top_p = 1.0;
  int64_t top_k = 0;
  int64_t max_new_tokens = 64;       // target_sequence_length
  int64_t prompt_sequence_length = 512;
  std::string instruction;           // prepended to every prompt (and before it in the judge's context)
  std::string prompt_format = "auto";  // raw, chat, auto (the adapter's, else from the prompts)
  uint64_t seed = 0;
  int64_t batch_size = 16;
  // Labeler: exactly one of rule and judge.
  std::string rule;                  // rules.h
  std::string judge;                 // judge model reference
  JudgeTask task = JudgeTask::Summarization;
  int64_t explanation_tokens = 0;    // the judge's explanations are not part of the dataset
  double min_confidence = 0;
  bool keep_ties = false;
  // Run.
  std::string output;
  int64_t max_rows = 0;              // 0 = all
  bool skip_invalid = false;
  std::string dtype = "auto", device = "cpu";
  bool progress = true;
};

struct LabelSummary {
  size_t pairs = 0, written = 0;
  size_t empty = 0;                                    // left out: a candidate empty or only whitespace
  std::string first_empty;                             // the first of them ("file:line")
  size_t ties = 0, identical = 0, low_confidence = 0;  // left out
  size_t ties_kept = 0;                                // written with keep_ties, marked "tie": true
  size_t chose_0 = 0, chose_1 = 0;
  double mean_confidence = 0;                          // of the written pairs
  std::string labeler;
};

LabelSummary run_label(const LabelConfig& config);

}  // namespace rlhf::eval
