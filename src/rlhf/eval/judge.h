// The AutoSxS judge: a language model that reads two responses to the same prompt and says
// which is better (`rlhf autosxs`, and `rlhf label --judge`). For each pair it:
//   1. reads the pair in both orders (A first, then B first) and takes, at the answer's first
//      token, P(letter) for the letters A and B (each letter with and without a leading
//      space), normalised over the two: the probability that A is better, once per order;
//   2. combines the two readings (combine_orders): the mean probability, a confidence in 0..1
//      and the choice, TIE when the orders disagree (position bias, not content);
//   3. writes an explanation: the judge continues "Response X is better because" greedily
//      (X = the choice; for a tie, "Neither response is clearly better:").
// Any loadable model can judge; the prompt goes through its chat template when it has one.
// The prompt, the lead-in and the explanation always fit the model's context: a prompt too
// long loses the middle of its texts (the longest first), never the template's markup, BOS,
// the instructions or the question at its end. A special-token spelling inside the texts
// stays text.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "rlhf/eval/autosxs.h"
#include "rlhf/model/model.h"

namespace rlhf::dist {
class Group;
}

namespace rlhf::eval {

struct JudgeConfig {
  std::string model;                 // "" = the embedded default
  JudgeTask task = JudgeTask::Summarization;
  std::string prompt_format = "auto";  // chat, raw, auto (chat when the model has a template)
  int64_t max_prompt_tokens = 2048;  // longer prompts lose the middle of their context
  int64_t explanation_tokens = 48;   // 0 = no explanation
  int64_t batch_size = 8;            // prompts per forward pass
  std::string dtype = "auto", device = "cpu";
};

struct PairToJudge {
  std::string context, response_a, response_b;
  // The start of context that is the instruction the models were given: kept whole when a
  // prompt too long is cut ("" = none; ignored when context does not start with it).
  std::string instruction = {};
};

struct JudgedPair {
  Verdict verdict;
  double prob_a_first = 0.5, prob_a_second = 0.5;
  std::string explanation;
};

class Judge {
 public:
  explicit Judge(const JudgeConfig& config);  // loads the model; throws rlhf::Error
  ~Judge();

  // Verdicts in input order; on_done (optional) is called with the number of pairs judged.
  // The pairs are judged in chunks of batch_size·4 (sorted by length inside a chunk, so a
  // chunk is the unit whose numbers depend on its neighbours). With a group (a distributed
  // job), chunk k is rank k mod N's and every rank gets every verdict: bit for bit those of
  // one process. Every rank must pass the same pairs.
  std::vector<JudgedPair> judge(const std::vector<PairToJudge>& pairs,
                                const std::function<void(size_t done)>& on_done = {},
                                dist::Group* group = nullptr) const;

  // P(the response shown first is better) for each (context, first, second), as the judge
  // reads them; used by judge() for both orders.
  std::vector<double> prob_first_better(const std::vector<PairToJudge>& shown) const;

  // The prompt ids the judge reads for a pair shown in this order: at most prompt_budget().
  std::vector<int32_t> prompt_ids(const PairToJudge& shown) const;
  // Tokens a prompt may take: the model's context less the explanation and its lead-in.
  int64_t prompt_budget() const { return config_.max_prompt_tokens; }
  // Tokens of the longest lead-in ("Response A is better because"); 0 without explanations.
  int64_t lead_in_tokens() const { return lead_tokens_; }

  std::string reference() const;
  const JudgeConfig& config() const { return config_; }

 private:
  JudgeConfig config_;
  std::unique_ptr<Model> model_;
  bool chat_ = false;
  std::vector<int32_t> letter_a_, letter_b_;  // single-token spellings of each letter
  int64_t lead_tokens_ = 0;

  // The prompt as the judge reads it (through the chat template when it uses one), in pieces.
  text::PromptPieces render(const PairToJudge& shown) const;
  // The ids of the lead-in of an explanation for `choice`, as appended to the prompt.
  std::vector<int32_t> lead_in_ids(const std::string& lead) const;
  // Pairs [first, end) judged together: both readings, the verdicts, the explanations.
  std::vector<JudgedPair> judge_chunk(const std::vector<PairToJudge>& pairs, size_t first, size_t end) const;
};

struct AutoSxsConfig {
  std::string input, output;
  AutoSxsColumns columns;
  JudgeConfig judge;
  int64_t max_rows = 0;  // 0 = all
  bool skip_invalid = false;  // leave out bad rows (counted) instead of failing
  bool in_place = false;      // write the files into the existing output folder (the pipeline's)
  bool progress = true;
};

// Reads the pairs, judges them, writes DIR/judgments.jsonl and DIR/metrics.json. Under a
// distributed launcher (dist::job()) every rank reads the pairs and judges its share of the
// chunks (Judge::judge); rank 0 alone logs and writes, the files of one process, byte for
// byte. Every rank returns the same summary.
AutoSxsSummary run_autosxs(const AutoSxsConfig& config);

}  // namespace rlhf::eval
