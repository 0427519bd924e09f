// rlhf label: RLAIF. Two candidates per prompt (or existing pairs), labeled by a rule or a
// judge model, written as a preference dataset in the seed's format. Pairs with an empty
// candidate are left out and counted (see label.h).
#include <cmath>
#include <cstdio>
#include <memory>
#include <sstream>

#include "commands.h"
#include "rlhf/dist/group.h"
#include "rlhf/eval/label.h"
#include "rlhf/model/model.h"
#include "rlhf/util/error.h"

namespace rlhf::cli {
namespace {

struct LabelFlags {
  eval::LabelConfig config;
  std::string task = "summarization";
  std::string temperatures = "0.7,1.0";
  int threads = 0;
  bool quiet = false;
};

int run_label(LabelFlags& f) {
  apply_threads(f.threads);
  auto& c = f.config;
  c.task = eval::parse_task(f.task);
  {
    std::stringstream ss(f.temperatures);
    std::string a, b, extra;
    std::getline(ss, a, ',');
    std::getline(ss, b, ',');
    std::getline(ss, extra);
    try {
      size_t pa = 0, pb = 0;
      c.temperature_0 = std::stod(a, &pa);
      c.temperature_1 = b.empty() ? c.temperature_0 : std::stod(b, &pb);
      if (pa != a.size() || (!b.empty() && pb != b.size()) || !extra.empty()) throw std::invalid_argument("");
    } catch (const std::exception&) {
      fail("--temperatures is \"{}\"; give T0,T1 (e.g. 0.7,1.0)", f.temperatures);
    }
    for (double t : {c.temperature_0, c.temperature_1})
      if (!std::isfinite(t) || t < 0 || t > 100)
        fail("--temperatures is \"{}\"; each must be a number from 0 to 100", f.temperatures);
  }
  c.progress = !f.quiet;
  eval::LabelSummary s = eval::run_label(c);
  if (const dist::Group* job = dist::job(); job && job->rank() != 0) return 0;  // rank 0 reports
  std::printf("%zu pairs labeled by %s -> %s (choice 0: %zu, choice 1: %zu, mean confidence %.3f%s); left out: %zu "
              "with an empty candidate, %zu ties, %zu identical, %zu below --min-confidence\n",
              s.written, s.labeler.c_str(), c.output.c_str(), s.chose_0, s.chose_1, s.mean_confidence,
              c.keep_ties ? (", " + std::to_string(s.ties_kept) + " ties kept, marked \"tie\": true").c_str() : "",
              s.empty, s.ties, s.identical, s.low_confidence);
  return 0;
}

}  // namespace

Command add_label(CLI::App& app) {
  auto f = std::make_shared<LabelFlags>();
  auto& c = f->config;
  auto* g = app.add_subcommand("label", "RLAIF: label candidate pairs with a rule or a judge model into a preference dataset");
  g->footer("A pair whose candidate is empty or only whitespace (the model stopped at once) is left out and counted;\n"
            "with --keep-ties, a tie is written with \"tie\": true and choice = the candidate the judge's mean\n"
            "probability leans to (0 when even, always 0 for a rule): a coin, not a preference.");
  g->add_option("--prompt-dataset", c.prompt_dataset, "prompts: sample two candidates for each");
  g->add_option("--pairs", c.pairs, "existing pairs to label (input_text, candidate_0, candidate_1)");
  g->add_option("--rule", c.rule, "max-words=N, regex=PATTERN or prefer-shorter (an empty candidate never wins)");
  g->add_option("--judge", c.judge, "judge model (the AutoSxS judge)");
  g->add_option("--task", f->task, "the judge's criteria: summarization or question_answering")->capture_default_str();
  g->add_option("--output,-o", c.output, "preference dataset to write (JSONL)")->required();
  g->add_option("--model,-m,--large-model-reference", c.model, "the candidates' model (default: the embedded model)");
  g->add_option("--adapter", c.adapter, "LoRA adapter folder on --model");
  g->add_option("--model-b", c.model_b, "a second model for candidate_1");
  g->add_option("--adapter-b", c.adapter_b, "LoRA adapter folder for candidate_1");
  g->add_option("--temperatures", f->temperatures, "sampling temperatures of candidate_0 and candidate_1")->capture_default_str();
  g->add_option("--top-p", c.top_p, "nucleus sampling mass")->capture_default_str()->check(real_in(0.0, 1.0));
  g->add_option("--top-k", c.top_k, "keep the k most likely tokens (0 = off)")->capture_default_str()->check(whole_in(0, INT32_MAX));
  g->add_option("--max-new-tokens,--target-sequence-length", c.max_new_tokens, "candidate length limit (tokens)")
      ->capture_default_str()->check(whole_in(1, 1 << 20));
  g->add_option("--prompt-sequence-length", c.prompt_sequence_length, "prompt tokens kept (the last ones)")
      ->capture_default_str()->check(whole_in(1, 1 << 24));
  g->add_option("--instruction", c.instruction, "prepended to every prompt (and to the judge's context)");
  g->add_option("--prompt-format", c.prompt_format, "raw, chat or auto (auto: the adapter's format, else chat when every prompt is a conversation)")->capture_default_str();
  g->add_option("--seed", c.seed, "sampling seed (candidate_1 uses seed + 1)")->capture_default_str()
      ->check(unsigned_whole());
  g->add_option("--batch-size", c.batch_size, "prompts generated together")->capture_default_str()->check(whole_in(1, 4096));
  g->add_option("--min-confidence", c.min_confidence, "leave out pairs labeled with less confidence")
      ->capture_default_str()->check(real_in(0.0, 1.0));
  g->add_flag("--keep-ties", c.keep_ties,
              "keep pairs the labeler cannot separate, marked \"tie\": true (choice: the judge's leaning, else 0)");
  g->add_option("--max-rows", c.max_rows, "use the first N rows only (0 = all)")->capture_default_str()->check(whole_in(0, INT64_MAX));
  g->add_flag("--skip-invalid", c.skip_invalid, "leave out invalid prompt lines (counted) instead of failing");
  g->add_option("--dtype", c.dtype, "auto, fp32, bf16, fp16")->capture_default_str();
  g->add_option("--device", c.device, "cpu, cuda, cuda:N")->capture_default_str();
  g->add_option("--threads", f->threads, "CPU threads (0 = all cores)")->check(whole_in(0, kMaxThreads));
  g->add_flag("--quiet,-q", f->quiet, "no progress bars");
  return {g, [f] { return run_label(*f); }};
}

}  // namespace rlhf::cli
