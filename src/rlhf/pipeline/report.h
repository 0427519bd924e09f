// The run's HTML report (DIR/report.html): one self-contained page (inline CSS and SVG, no
// script, nothing fetched) built from whatever the run directory holds (run_dir.h), so it
// can be written at any time: before the first stage, while a stage runs, after a failure.
//
//   header       the spec, the model, when the page was generated, the stages' states
//   stages       the DAG (one box per stage in plan order, an arrow per dependency, coloured
//                by state) and a table: state, attempts, wall time, headline metrics
//   curves       one line chart per scalar tag of DIR/tensorboard/<stage>/ (svg[data-tag]);
//                the seed's tags first (rank_loss, accuracy, validation/accuracy; reward,
//                kl_loss, rl_loss, objective/kl, objective/entropy, response_length)
//   parameters   plan.json's spec, nested blocks flattened with dots ("advanced.seed")
//   side by side sxs/summary.json and the first 100 rows of sxs/sxs.jsonl
//   AutoSxS      autosxs/metrics.json (win rates, ties, confidence, human agreement) and the
//                first judgments of autosxs/judgments.jsonl with their explanations
//
// A stage's state, as `pipeline status` has it (status.h): no manifest = pending; a manifest
// under another key than the plan's = stale (it runs again); "done" = done, or cached when it
// finished before this run began (DIR/spec.yaml is written at the start of every run);
// "running" = running while a run holds the directory's lock, else interrupted; "failed" (its
// error is shown under the graph). A file that cannot be read or parsed becomes a note in the
// page where its content would be.
#pragma once
#include <string>

namespace rlhf::pipeline {

// The page. Throws rlhf::Error only when DIR/plan.json does not exist.
std::string render_report(const std::string& run_dir);

// render_report written to DIR/report.html atomically (temp + rename).
void write_report(const std::string& run_dir);

}  // namespace rlhf::pipeline
