// `rlhf pipeline status`: each stage of a run directory with its state (done, running,
// interrupted, failed with its error, stale — done under another plan key, or an output gone,
// or an upstream output it read changed since —, edited — an output edited by hand since the
// stage ran —, pending), times and headline metrics, naming the outputs gone, edited or
// changed. A stage left "running" by a run that no longer holds the directory's lock is
// "interrupted": `pipeline run` with the same spec resumes it.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/pipeline/run_dir.h"

namespace rlhf::pipeline {

struct StageStatus {
  std::string name, title, state, started, finished, error;
  double wall_seconds = 0;
  nlohmann::json metrics;
  std::vector<std::string> missing;  // its outputs that are gone (state "stale")
  std::vector<std::string> edited;   // its outputs edited by hand since it ran (state "edited")
  std::vector<std::string> changed;  // upstream outputs it read that changed since (state "stale")
};

// A stage's state from its manifest (nullptr: none), the key the plan gives it now and whether
// a run holds the directory (run_dir_locked): "pending" (no manifest), "stale" (done or
// started under another plan key; a plan without a key trusts the manifest), "running", or
// "interrupted" (left running by a run that no longer holds the lock), else the manifest's
// state ("done", "failed"). `pipeline status` and the report both say states this way.
std::string stage_state(const Manifest* manifest, const std::string& plan_key, bool live);

// Reads DIR/plan.json and the manifests, and checks each done stage's outputs and the
// upstream outputs it read against what its manifest recorded. Throws rlhf::Error when DIR
// holds no run.
std::vector<StageStatus> run_status(const std::string& run_dir);
std::string format_status(const std::vector<StageStatus>& stages);

// The run directory's lock, held by `pipeline run` while it works (flock on DIR/.lock).
// try_lock returns -1 when another process holds it; otherwise the descriptor to keep open.
int try_lock_run_dir(const std::string& run_dir);
bool run_dir_locked(const std::string& run_dir);

}  // namespace rlhf::pipeline
