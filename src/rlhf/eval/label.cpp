#include "rlhf/eval/label.h"

#include <torch/torch.h>

#include <fstream>
#include <functional>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "rlhf/data/dataset.h"
#include "rlhf/data/encode.h"
#include "rlhf/dist/group.h"
#include "rlhf/eval/infer.h"
#include "rlhf/eval/judge.h"
#include "rlhf/eval/rules.h"
#include "rlhf/eval/sxs.h"
#include "rlhf/text/words.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"
#include "rlhf/util/json_file.h"
#include "rlhf/util/output_dir.h"
#include "rlhf/util/progress.h"

namespace rlhf::eval {
namespace {
using nlohmann::json;

// A candidate that is no answer (text::is_blank: the model stopped at once): the preference
// reader refuses such a line, so the pair is left out.
using text::is_blank;

// True when the file's first line reads as a line this command writes (the seed's preference
// fields plus "labeler": "rule:..." or "judge:...").
bool is_label_output(const std::string& path) {
  constexpr size_t kMaxLine = size_t(64) << 20;
  std::ifstream in(path, std::ios::binary);
  std::string line;
  char c;
  while (in.get(c) && c != '\n' && line.size() < kMaxLine) line += c;
  try {
    const json j = parse_json_unique_keys(line);
    if (!j.is_object()) return false;
    auto labeler = j.find("labeler");
    return labeler != j.end() && labeler->is_string() &&
           (labeler->get<std::string>().starts_with("rule:") || labeler->get<std::string>().starts_with("judge:")) &&
           j.contains("candidate_0") && j.contains("candidate_1") && j.contains("choice");
  } catch (const std::exception&) {
    return false;
  }
}

void check(const LabelConfig& c) {
  if (c.prompt_dataset.empty() == c.pairs.empty()) fail("give one of --prompt-dataset (sample candidates) and --pairs (label existing pairs)");
  if (c.rule.empty() == c.judge.empty()) fail("give one labeler: --rule R or --judge MODEL");
  if (c.output.empty()) fail("--output is required");
  if (!(c.min_confidence >= 0 && c.min_confidence <= 1)) fail("--min-confidence must be a number from 0 to 1");
  if (!(c.top_p >= 0 && c.top_p <= 1)) fail("--top-p must be a number from 0 to 1");
  if (c.batch_size < 1) fail("--batch-size must be at least 1");
  if (c.max_new_tokens < 1) fail("--max-new-tokens must be at least 1");
  for (double t : {c.temperature_0, c.temperature_1})
    if (!(t >= 0 && t <= 100)) fail("--temperatures must be numbers from 0 to 100, got {}", t);
  if (!c.pairs.empty() && (!c.model_b.empty() || !c.adapter.empty() || !c.adapter_b.empty()))
    fail("--pairs labels existing candidates: --adapter, --model-b and --adapter-b do not apply");
  check_output_file(c.output, "label", "--output", is_label_output);
}

struct Candidates {
  std::vector<data::PromptRow> rows;
  std::vector<std::string> c0, c1;
};

// The texts of `prompts` completed in batches of B as one process does (batch b, prompts
// [b·B, (b+1)·B), sampled with seed + b, as complete_prompts does). Under a job, batch b is
// rank b mod N's, and every rank gets every text. on_done: the number of prompts completed.
std::vector<std::string> complete_texts(const GenerationModel& gm, const std::vector<std::vector<int32_t>>& prompts,
                                        const SamplingConfig& sampling, size_t B, dist::Group* group,
                                        const std::function<void(size_t done)>& on_done) {
  std::vector<std::string> texts(prompts.size());
  const size_t n_batches = (prompts.size() + B - 1) / B;
  const size_t ranks = group ? static_cast<size_t>(group->size()) : 1, me = group ? static_cast<size_t>(group->rank()) : 0;
  auto batch_texts = [&](size_t b) {
    const auto first = prompts.begin() + static_cast<std::ptrdiff_t>(b * B);
    const std::vector<std::vector<int32_t>> batch(first, first + static_cast<std::ptrdiff_t>(std::min(B, prompts.size() - b * B)));
    SamplingConfig s = sampling;
    s.seed = sampling.seed + b;
    std::vector<std::string> out;
    for (Completion& c : complete_prompts(gm, batch, s, static_cast<int64_t>(B))) out.push_back(std::move(c.text));
    return out;
  };
  auto place = [&](size_t b, std::vector<std::string> batch) {
    std::move(batch.begin(), batch.end(), texts.begin() + static_cast<std::ptrdiff_t>(b * B));
  };
  for (size_t round = 0; round < n_batches; round += ranks) {
    if (!group) {
      place(round, batch_texts(round));
    } else {
      const size_t mine = round + me;
      const std::vector<std::string> all = group->all_gather_bytes(mine < n_batches ? json(batch_texts(mine)).dump() : "");
      for (size_t k = 0; k < ranks && round + k < n_batches; ++k)
        place(round + k, json::parse(all[k]).get<std::vector<std::string>>());
    }
    if (on_done) on_done(std::min(prompts.size(), (round + ranks) * B));
  }
  return texts;
}

// Samples two candidates per prompt: (model, temperature_0, seed) and (model_b or model,
// temperature_1, seed + 1). Under a job the ranks share the batches (complete_texts); rank 0
// alone logs.
Candidates sample_candidates(const LabelConfig& c, dist::Group* group) {
  Candidates out;
  data::ReadOptions ro{.skip_invalid = c.skip_invalid, .max_rows = size_t(std::max<int64_t>(0, c.max_rows))};
  out.rows = data::read_prompt_dataset(c.prompt_dataset, ro);
  const bool lead = !group || group->rank() == 0;
  const LoadOptions lo{parse_dtype(c.dtype), parse_device(c.device)};
  auto side = [&](const std::string& model, const std::string& adapter, double temperature, uint64_t seed,
                  const char* name) {
    auto gm = load_generation_model(model, adapter, lo);
    data::EncodeConfig enc = gm->encode;
    enc.instruction = c.instruction;
    enc.prompt_sequence_length = c.prompt_sequence_length;
    enc.target_sequence_length = std::max<int64_t>(2, c.max_new_tokens);
    data::PromptForms forms;
    forms.add_rows(out.rows);
    enc.format = data::choose_prompt_format(c.prompt_format,
                                            gm->encode_from_adapter ? std::optional(gm->encode.format) : std::nullopt,
                                            "the adapter in " + adapter, forms, "--prompt-format");
    data::Encoder encoder(*gm->base->tokenizer, gm->base->chat_template, gm->eos_id, enc);
    // Every prompt is checked before any sampling (on every rank alike).
    const int64_t context = gm->base->config.max_position;
    std::vector<std::vector<int32_t>> prompts;
    for (const auto& r : out.rows) {
      prompts.push_back(encoder.prompt_ids(r.prompt, r.where));
      if (prompts.back().empty()) fail("{}: the prompt encodes to no tokens", r.where);
      if (static_cast<int64_t>(prompts.back().size()) + c.max_new_tokens > context)
        fail("{}: the prompt ({} tokens) + --max-new-tokens {} exceed the model's context ({}); lower "
             "--prompt-sequence-length or --max-new-tokens",
             r.where, prompts.back().size(), c.max_new_tokens, context);
    }
    SamplingConfig s{.temperature = temperature, .top_k = c.top_k, .top_p = c.top_p, .max_new_tokens = c.max_new_tokens,
                     .seed = seed};
    if (lead)
      std::fprintf(stderr, "[rlhf] %s: %s%s%s, temperature %g\n", name, gm->base->reference.c_str(),
                   adapter.empty() ? "" : " + ", adapter.c_str(), temperature);
    std::optional<Progress> progress;
    if (c.progress && lead) progress.emplace(name, static_cast<int64_t>(prompts.size()), "prompt");
    auto texts = complete_texts(*gm, prompts, s, static_cast<size_t>(c.batch_size), group, [&](size_t done) {
      if (progress) progress->update(static_cast<int64_t>(done));
    });
    if (progress) progress->finish();
    return texts;
  };
  out.c0 = side(c.model, c.adapter, c.temperature_0, c.seed, "candidate_0");
  const bool second_model = !c.model_b.empty() || !c.adapter_b.empty();
  out.c1 = side(second_model ? (c.model_b.empty() ? c.model : c.model_b) : c.model, second_model ? c.adapter_b : c.adapter,
                c.temperature_1, c.seed + 1, "candidate_1");
  return out;
}

// Existing pairs: the prompt fields plus candidate_0 and candidate_1 (strings).
Candidates read_pairs(const LabelConfig& c) {
  Candidates out;
  data::ReadOptions ro{.skip_invalid = false, .max_rows = size_t(std::max<int64_t>(0, c.max_rows))};
  out.rows = data::read_prompt_dataset(c.pairs, ro);
  for (const auto& r : out.rows) {
    json j = json::parse(r.json);
    for (const char* f : {"candidate_0", "candidate_1"}) {
      auto it = j.find(f);
      if (it == j.end()) fail("{}: field '{}' is missing (--pairs rows hold input_text, candidate_0, candidate_1)", r.where, f);
      if (!it->is_string()) fail("{}: field '{}' must be a string", r.where, f);
    }
    out.c0.push_back(j["candidate_0"].get<std::string>());
    out.c1.push_back(j["candidate_1"].get<std::string>());
  }
  return out;
}

}  // namespace

LabelSummary run_label(const LabelConfig& c) {
  check(c);
  // The labeler is checked before any sampling.
  std::optional<LabelRule> rule;
  if (!c.rule.empty()) rule = LabelRule::parse(c.rule);
  // Under a launcher every rank reads the input (and fails on the same bad row), the ranks
  // share the sampling and the judging, and rank 0 alone logs and writes.
  dist::Group* group = dist::job();
  const bool lead = !group || group->rank() == 0;
  Candidates cand = c.pairs.empty() ? sample_candidates(c, group) : read_pairs(c);
  const size_t n = cand.rows.size();

  LabelSummary sum;
  sum.pairs = n;
  // Pairs with an empty candidate are left out before labeling: no labeler is asked about them.
  std::vector<size_t> labeled;
  for (size_t i = 0; i < n; ++i) {
    if (is_blank(cand.c0[i]) || is_blank(cand.c1[i])) {
      if (sum.empty++ == 0) sum.first_empty = cand.rows[i].where;
      continue;
    }
    labeled.push_back(i);
  }
  if (sum.empty && lead)
    std::fprintf(stderr, "[rlhf] label: %zu of %zu pairs left out: a candidate is empty or only whitespace (first: %s)\n",
                 sum.empty, n, sum.first_empty.c_str());
  std::vector<RuleLabel> labels(n);
  std::vector<double> prob_a(n, 0.5);
  if (rule) {
    sum.labeler = "rule:" + c.rule;
    for (size_t i : labeled) labels[i] = rule->label(cand.c0[i], cand.c1[i]);
  } else {
    JudgeConfig jc{.model = c.judge, .task = c.task, .prompt_format = "auto", .max_prompt_tokens = 2048,
                   .explanation_tokens = 0, .batch_size = std::min<int64_t>(c.batch_size, 8), .dtype = c.dtype,
                   .device = c.device};
    Judge judge(jc);
    sum.labeler = "judge:" + judge.reference();
    std::vector<PairToJudge> pairs;
    for (size_t i : labeled)
      pairs.push_back({judge_context(c.instruction, prompt_as_text(cand.rows[i].prompt)), cand.c0[i], cand.c1[i],
                       c.instruction});
    std::optional<Progress> progress;
    if (c.progress && lead) progress.emplace("judging", static_cast<int64_t>(pairs.size()), "pair");
    auto judged = judge.judge(
        pairs,
        [&](size_t done) {
          if (progress) progress->update(static_cast<int64_t>(done));
        },
        group);
    if (progress) progress->finish();
    for (size_t k = 0; k < labeled.size(); ++k) {
      labels[labeled[k]] = {judged[k].verdict.choice, judged[k].verdict.confidence};
      prob_a[labeled[k]] = judged[k].verdict.prob_a;
    }
  }

  std::string lines;
  double conf = 0;
  for (size_t i : labeled) {
    if (cand.c0[i] == cand.c1[i]) {
      sum.identical++;
      continue;
    }
    RuleLabel l = labels[i];
    const bool tie = l.choice == Choice::Tie;
    if (tie) {
      if (!c.keep_ties) {
        sum.ties++;
        continue;
      }
      // A kept tie: choice is the candidate the judge's mean probability leans to (0 when it
      // is even, and always 0 for a rule); the line is marked "tie": true.
      l.choice = prob_a[i] >= 0.5 ? Choice::A : Choice::B;
    }
    if (l.confidence < c.min_confidence) {
      sum.low_confidence++;
      continue;
    }
    json row = json::parse(cand.rows[i].json);
    for (const char* f : {"candidate_0", "candidate_1", "choice", "confidence", "labeler", "tie", "prediction"}) row.erase(f);
    if (!cand.rows[i].prompt.is_chat()) {  // the prompt as input_text, whatever field held it
      row.erase("prompt");
      row.erase("inputs");
      row["input_text"] = cand.rows[i].prompt.text;
    }
    row["candidate_0"] = cand.c0[i];
    row["candidate_1"] = cand.c1[i];
    row["choice"] = l.choice == Choice::A ? 0 : 1;
    row["confidence"] = l.confidence;
    row["labeler"] = sum.labeler;
    if (tie) {
      row["tie"] = true;
      sum.ties_kept++;
    }
    (l.choice == Choice::A ? sum.chose_0 : sum.chose_1)++;
    conf += l.confidence;
    lines += row.dump(-1, ' ', false, json::error_handler_t::replace);
    lines += '\n';
    sum.written++;
  }
  sum.mean_confidence = sum.written ? conf / double(sum.written) : 0;
  if (sum.written == 0)
    fail("no pair was labeled: of {} pairs, {} with an empty candidate, {} ties, {} identical, {} below "
         "--min-confidence; nothing written to {}",
         n, sum.empty, sum.ties, sum.identical, sum.low_confidence, c.output);
  if (group) group->barrier();  // every rank has checked --output before rank 0 writes it
  if (lead) write_file_atomic(c.output, lines);
  return sum;
}

}  // namespace rlhf::eval
