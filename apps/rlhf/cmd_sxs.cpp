// rlhf sxs: the side-by-side table of two bulk-inference outputs (JSONL, CSV, HTML and a
// summary), optionally with reward-model scores of both responses.
#include <cstdio>
#include <memory>

#include "commands.h"
#include "rlhf/eval/sxs.h"
#include "rlhf/eval/sxs_score.h"
#include "rlhf/model/model.h"

namespace rlhf::cli {
namespace {

struct SxsFlags {
  CommonFlags common;
  std::string a, b, output, reward_model, label_a, label_b, join_on = "auto";
  int64_t max_words = 50;
  int64_t batch_size = 16;
  bool skip_invalid = false;
  bool no_progress = false;
};

int run_sxs(const SxsFlags& f) {
  eval::SxsReadOptions ro;
  ro.skip_invalid = f.skip_invalid;
  const eval::JoinOn on = eval::parse_join_on(f.join_on);
  size_t skipped_a = 0, skipped_b = 0;
  eval::SxsSide a = eval::read_sxs_side(f.a, ro, &skipped_a);
  eval::SxsSide b = eval::read_sxs_side(f.b, ro, &skipped_b);
  if (!f.label_a.empty()) a.label = f.label_a;
  if (!f.label_b.empty()) b.label = f.label_b;
  for (auto [file, n] : {std::pair{&f.a, skipped_a}, std::pair{&f.b, skipped_b}})
    if (n) std::fprintf(stderr, "[rlhf] %s: %zu invalid lines skipped\n", file->c_str(), n);

  eval::SxsTable table = eval::join_sxs(std::move(a), std::move(b), on);
  auto warn = [](const char* what, const std::vector<size_t>& rows, const eval::SxsSide& side, const char* other) {
    if (rows.empty()) return;
    std::fprintf(stderr, "[rlhf] warning: %zu %s of %s have a prompt that is not in %s (first: %s); left out\n",
                 rows.size(), rows.size() == 1 ? "row" : "rows", what, other, side.rows[rows[0]].where.c_str());
  };
  warn("A", table.unmatched_a, table.a, "B");
  warn("B", table.unmatched_b, table.b, "A");

  if (!f.reward_model.empty()) {
    apply_threads(f.common.threads);
    eval::SxsScoreOptions so;
    so.reward_model = f.reward_model;
    so.model_override = f.common.model;
    so.load = {parse_dtype(f.common.dtype), parse_device(f.common.device)};
    so.batch_size = f.batch_size;
    so.progress = !f.no_progress;
    auto rep = eval::score_sxs(table, so);
    if (rep.instruction_stripped)
      std::fprintf(stderr, "[rlhf] %zu prompts taken from inputs_pretokenized without the reward model's instruction\n",
                   rep.instruction_stripped);
    if (rep.pretokenized_as_is)
      std::fprintf(stderr, "[rlhf] %zu prompts taken from inputs_pretokenized as they are%s\n", rep.pretokenized_as_is,
                   rep.instruction.empty() ? "" : " (they do not start with the reward model's instruction)");
  }
  const eval::SxsSummary summary = eval::summarize_sxs(table, f.max_words);
  eval::write_sxs_output(f.output, table, summary);
  std::string text = eval::format_sxs_summary(summary);
  text += "wrote " + f.output + "/{sxs.jsonl, sxs.csv, sxs.html, summary.json}\n";
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  return 0;
}

}  // namespace

Command add_sxs(CLI::App& app) {
  auto f = std::make_shared<SxsFlags>();
  auto* s = app.add_subcommand("sxs", "side-by-side table of two bulk-inference outputs (JSONL, CSV, HTML)");
  s->add_option("a", f->a, "JSONL of A (e.g. the untuned model's inference output)")->required();
  s->add_option("b", f->b, "JSONL of B (e.g. the tuned model's), joined to A on the prompt")->required();
  s->add_option("--output,-o", f->output, "folder for sxs.jsonl, sxs.csv, sxs.html, summary.json")->required();
  s->add_option("--reward-model", f->reward_model, "folder written by train-reward: score both responses");
  s->add_option("--max-words", f->max_words, "the summary counts responses longer than this")
      ->capture_default_str()
      ->check(whole_in(0, INT32_MAX));
  s->add_option("--label-a", f->label_a, "name of A on the page (default: its model, else the file name)");
  s->add_option("--label-b", f->label_b, "name of B on the page");
  s->add_option("--join-on", f->join_on,
                "auto (the dataset prompt when every row has it, else inputs_pretokenized), inputs_pretokenized, "
                "input_text")
      ->capture_default_str();
  s->add_flag("--skip-invalid", f->skip_invalid, "leave out invalid lines instead of stopping");
  s->add_option("--batch-size", f->batch_size, "sequences per reward-model forward")
      ->capture_default_str()
      ->check(whole_in(1, 65536));
  s->add_option("--large-model-reference,--model,-m", f->common.model, "the reward model's base, when it moved");
  s->add_option("--dtype", f->common.dtype, "auto, fp32, bf16")->capture_default_str();
  s->add_option("--device", f->common.device, "cpu, cuda, cuda:N")->capture_default_str();
  s->add_option("--threads", f->common.threads, "CPU threads (0 = all cores)")->check(whole_in(0, kMaxThreads));
  s->add_flag("--no-progress", f->no_progress, "no progress line while scoring");
  return {s, [f] { return run_sxs(*f); }};
}

}  // namespace rlhf::cli
