// rlhf autosxs: a judge model compares response A and B of every row (both orders), with win
// rates, and agreement with human labels when a human preference column is given.
#include <cstdio>
#include <memory>

#include "commands.h"
#include "rlhf/dist/group.h"
#include "rlhf/eval/judge.h"
#include "rlhf/model/model.h"

namespace rlhf::cli {
namespace {

struct AutoSxsFlags {
  eval::AutoSxsConfig config;
  std::string task = "summarization";
  std::string human_labels;
  int threads = 0;
  bool quiet = false;
};

int run_autosxs(AutoSxsFlags& f) {
  eval::check_autosxs_output(f.config.output);
  apply_threads(f.threads);
  f.config.judge.task = eval::parse_task(f.task);
  if (!f.human_labels.empty()) f.config.columns.human_labels = eval::parse_label_map(f.human_labels);
  f.config.progress = !f.quiet;
  eval::AutoSxsSummary s = eval::run_autosxs(f.config);
  if (const dist::Group* job = dist::job(); job && job->rank() != 0) return 0;  // rank 0 reports
  std::fputs(eval::format_summary(s).c_str(), stdout);
  std::printf("judgments: %s/judgments.jsonl, metrics: %s/metrics.json\n", f.config.output.c_str(),
              f.config.output.c_str());
  if (!s.judge_warning.empty()) std::fprintf(stderr, "[rlhf] warning: %s\n", s.judge_warning.c_str());
  return 0;
}

}  // namespace

Command add_autosxs(CLI::App& app) {
  auto f = std::make_shared<AutoSxsFlags>();
  auto& c = f->config;
  auto* g = app.add_subcommand("autosxs", "judge response A against response B with a model (AutoSxS)");
  g->add_option("--input,-i", c.input, "pairs to judge: JSONL, or a file holding one JSON array")->required();
  g->add_option("--output,-o", c.output, "output folder (judgments.jsonl, metrics.json)")->required();
  g->add_option("--judge", c.judge.model, "judge model: registered name, GGUF file or HF folder (default: the embedded model)");
  g->add_option("--task", f->task, "summarization or question_answering")->capture_default_str();
  g->add_option("--id-column", c.columns.id, "row id field (absent: the row number)")->capture_default_str();
  g->add_option("--context-column", c.columns.context,
                "the prompt's field(s), joined by a blank line (default: input_text, inputs.inputs_pretokenized or prompt)");
  g->add_option("--instruction-column", c.columns.instruction,
                "field of the instruction the models were given, put before the context (\"\" = none)")
      ->capture_default_str();
  g->add_option("--response-a-column", c.columns.response_a, "response A's field")->capture_default_str();
  g->add_option("--response-b-column", c.columns.response_b, "response B's field")->capture_default_str();
  g->add_option("--human-preference-column", c.columns.human,
                "human label field(s); several are a majority vote; empty or null = no preference (TIE). Adds accuracy, "
                "precision, recall, F1, Cohen's kappa");
  g->add_option("--human-labels", f->human_labels, "map raw human values to labels, e.g. 1=A,2=B,0=TIE");
  g->add_option("--judge-prompt-format", c.judge.prompt_format, "chat, raw or auto")->capture_default_str();
  g->add_option("--explanation-tokens", c.judge.explanation_tokens, "explanation length (0 = none)")
      ->capture_default_str()->check(whole_in(0, 4096));
  g->add_option("--max-prompt-tokens", c.judge.max_prompt_tokens, "judge prompt limit (the context is cut from its start)")
      ->capture_default_str()->check(whole_in(64, 1 << 20));
  g->add_option("--batch-size", c.judge.batch_size, "prompts per forward pass")->capture_default_str()->check(whole_in(1, 4096));
  g->add_option("--max-rows", c.max_rows, "judge the first N rows only (0 = all)")->capture_default_str()->check(whole_in(0, INT64_MAX));
  g->add_flag("--skip-invalid", c.skip_invalid, "leave out invalid rows (counted) instead of failing");
  g->add_option("--dtype", c.judge.dtype, "auto, fp32, bf16, fp16")->capture_default_str();
  g->add_option("--device", c.judge.device, "cpu, cuda, cuda:N")->capture_default_str();
  g->add_option("--threads", f->threads, "CPU threads (0 = all cores)")->check(whole_in(0, kMaxThreads));
  g->add_flag("--quiet,-q", f->quiet, "no progress bar");
  return {g, [f] { return run_autosxs(*f); }};
}

}  // namespace rlhf::cli
