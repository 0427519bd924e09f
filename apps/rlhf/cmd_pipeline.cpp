// rlhf pipeline compile|run|status: the whole DAG from one YAML spec in a run directory.
#include <cstdio>
#include <memory>

#include <fmt/format.h>

#include "commands.h"
#include "rlhf/pipeline/plan.h"
#include "rlhf/pipeline/run.h"
#include "rlhf/pipeline/run_dir.h"
#include "rlhf/pipeline/status.h"
#include "rlhf/util/error.h"
#include "rlhf/util/interrupt.h"
#include "rlhf/util/launch.h"

namespace rlhf::cli {
namespace {

struct PipelineFlags {
  std::string spec, run_dir;
  int threads = 0;
  bool quiet = false, json = false, accept_edited_outputs = false;
  CLI::App *compile = nullptr, *run = nullptr, *status = nullptr;
};

// The before/after numbers of a finished run, from its side-by-side stage.
void print_outcome(const pipeline::RunResult& r) {
  for (const auto& s : r.stages) {
    if (s.name != "sxs" || !s.metrics.is_object()) continue;
    const auto& m = s.metrics;
    auto num = [&](const char* k) { return m.contains(k) && m[k].is_number() ? m[k].get<double>() : 0.0; };
    std::printf("before -> after tuning, on the %lld evaluation prompts:\n", static_cast<long long>(num("rows")));
    if (m.contains("untuned_mean_reward"))
      std::printf("  mean reward            %8.3f -> %8.3f\n", num("untuned_mean_reward"), num("tuned_mean_reward"));
    std::printf("  mean words             %8.1f -> %8.1f\n", num("untuned_mean_words"), num("tuned_mean_words"));
    const std::string over = fmt::format("over {} words", static_cast<int64_t>(num("max_words")));
    std::printf("  share %-16s %7.1f%% -> %7.1f%%\n", over.c_str(), 100 * num("untuned_over_max_words"),
                100 * num("tuned_over_max_words"));
  }
  std::printf("report: %s\n", r.report.c_str());
  for (const auto& s : r.stages)
    if (s.name == "train_policy") std::printf("serve the tuned policy: %s\n", pipeline::serve_command(r.run_dir).c_str());
}

int run_pipeline_command(PipelineFlags& f) {
  // Only `run` shares its work with the other ranks of a job; compile and status would print
  // once per rank.
  if (!f.run->parsed()) {
    const DistEnv job = read_dist_env();
    if (job.distributed())
      fail("rlhf pipeline {} runs in one process (the {} launcher started {}): run it as one process; only pipeline "
           "run works across ranks",
           f.compile->parsed() ? "compile" : "status", job.launcher, job.world_size);
  }
  if (f.compile->parsed()) {
    pipeline::Plan plan = pipeline::compile_plan(pipeline::read_spec(f.spec), f.run_dir);
    if (f.json) std::printf("%s\n", plan.to_json().dump(2).c_str());
    else std::printf("%s: valid\n%s", f.spec.c_str(), plan.format().c_str());
    return 0;
  }
  if (f.run->parsed()) {
    interrupt::note_kept(fmt::format("the finished stages are kept in {}", f.run_dir));
    pipeline::RunResult r = pipeline::run_pipeline({.spec = f.spec,
                                                    .run_dir = f.run_dir,
                                                    .threads = f.threads,
                                                    .progress = !f.quiet,
                                                    .accept_edited_outputs = f.accept_edited_outputs});
    if (r.rank != 0) return 0;  // rank 0 of the job says how the run went
    size_t cached = 0;
    for (const auto& s : r.stages) cached += s.outcome == "cached";
    std::printf("pipeline done: %zu stages, %zu cached\n", r.stages.size(), cached);
    print_outcome(r);
    return 0;
  }
  auto stages = pipeline::run_status(f.run_dir);
  if (f.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& s : stages)
      j.push_back({{"stage", s.name}, {"state", s.state}, {"started", s.started}, {"finished", s.finished},
                   {"wall_seconds", s.wall_seconds}, {"metrics", s.metrics}, {"error", s.error},
                   {"edited", s.edited}, {"missing", s.missing}, {"changed", s.changed}});
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::fputs(pipeline::format_status(stages).c_str(), stdout);
  }
  return 0;
}

}  // namespace

Command add_pipeline(CLI::App& app) {
  auto f = std::make_shared<PipelineFlags>();
  auto* p = app.add_subcommand("pipeline", "the whole RLHF DAG from one YAML spec: compile, run, status");
  p->require_subcommand(1);
  f->compile = p->add_subcommand("compile", "validate a spec, its data and model, and print the resolved plan");
  f->compile->add_option("spec", f->spec, "pipeline spec (YAML)")->required();
  f->compile->add_option("--run-dir", f->run_dir, "also check the free disk space where the run would go");
  f->compile->add_flag("--json", f->json, "print the plan as JSON");
  f->run = p->add_subcommand("run", "run the stages, skipping those already done with the same inputs and parameters");
  f->run->add_option("spec", f->spec, "pipeline spec (YAML)")->required();
  f->run->add_option("--run-dir", f->run_dir, "where every stage's outputs, manifests and the report go")->required();
  f->run->add_option("--threads", f->threads, "CPU threads (0 = the spec's advanced.threads, else all cores)")
      ->check(whole_in(0, kMaxThreads));
  f->run->add_flag("--quiet,-q", f->quiet, "no progress bars");
  f->run->add_flag("--accept-edited-outputs", f->accept_edited_outputs,
                   "a done stage's outputs edited by hand since it ran are used as they are (the stages that read "
                   "them run again), instead of running the stage again");
  f->status = p->add_subcommand("status", "each stage's state, times and headline metrics");
  f->status->add_option("run_dir", f->run_dir, "the run directory")->required();
  f->status->add_flag("--json", f->json, "print JSON");
  return {p, [f] { return run_pipeline_command(*f); },
          [f] { return f->run->parsed() ? Continuation::Same : Continuation::None; }};
}

}  // namespace rlhf::cli
