// `rlhf pipeline run`: the stages of a plan, in order, in a run directory (run_dir.h). Each
// stage runs the same library code as its single command (train-reward, train-policy, infer,
// sxs, autosxs, label, export). A stage whose manifest is "done" with an unchanged key is
// skipped; one left "running" or "failed" with the same key (a killed or crashed run) resumes
// from its own checkpoints (the trainers) or partial output (inference); one whose key
// changed starts over in an emptied folder. The key is the stage's run key (plan.h), taken
// just before the stage would run, with the content of the upstream outputs it reads. A done
// stage whose outputs were edited by hand since runs again, unless accept_edited_outputs
// (then its manifest records the edit and what reads those outputs runs again). The report
// is rewritten after every stage.
//
// Under a distributed launcher (torchrun, srun, --nproc-per-node) every rank runs this. Rank 0
// owns the run directory: it alone takes the lock, decides which stages are cached, writes
// the manifests, the stage outputs and the report, and tells the others each decision. The
// stages whose command is data-parallel (label, train_reward, train_policy, infer_*, autosxs)
// run on every rank together; the others (validate, sxs, export) run on rank 0 while the rest
// wait without a time limit. A failure on any rank stops every rank with its message.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/pipeline/plan.h"

namespace rlhf::pipeline {

struct RunOptions {
  std::string spec;     // the YAML spec
  std::string run_dir;
  int threads = 0;      // 0 = the spec's advanced.threads, else all cores
  bool progress = true;
  bool accept_edited_outputs = false;  // a done stage's outputs edited by hand are used as they are
};

struct StageOutcome {
  std::string name;
  std::string outcome;  // "cached", "ran", "resumed"
  double seconds = 0;
  nlohmann::json metrics;
};

struct RunResult {
  std::vector<StageOutcome> stages;
  std::string run_dir;
  std::string report;   // path of report.html
  int rank = 0;         // in a distributed job, this process's: rank 0 alone wrote the run and knows its metrics
};

// Throws rlhf::Error on bad input (before any stage runs) or when a stage fails (its manifest
// then says "failed" with the error, and the report shows it).
RunResult run_pipeline(const RunOptions& options);

}  // namespace rlhf::pipeline
