// The run directory of `rlhf pipeline run`, and the manifest every stage leaves in it.
//   DIR/spec.yaml                 the spec as run (copied at each run)
//   DIR/plan.json                 the resolved plan (stages, parameters, keys)
//   DIR/<stage>/manifest.json     the stage's state and record (below), written atomically
//   DIR/<stage>/...               the stage's outputs (see plan.h for each stage's)
//   DIR/tensorboard/<stage>/      the trainers' TensorBoard event files
//   DIR/report.html               the report (report.h)
//   DIR/.rlhf, DIR/.lock          the folder's marker (output_dir.h) and the run's lock
// Only a new or empty folder, or an earlier run's, becomes a run directory (claim_run_dir).
// A stage is done when its manifest says "done" with the key the run computes now and its
// outputs still hold what the manifest recorded; a manifest with another key, or
// "running"/"failed", means the stage runs (again). A stage that was killed resumes from its
// own checkpoints when its key is unchanged.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace rlhf::pipeline {

struct Manifest {
  std::string stage;
  std::string state;            // "running", "done", "failed"
  std::string key;              // the stage's key when it ran (plan.h: the run key)
  std::string plan_key;         // the plan's key of the stage then (plan.h)
  nlohmann::json inputs;        // {name: {"path", "sha256"}} and {dep_stage: {"key", "outputs": {path: sha256}}}
  nlohmann::json params;        // the stage's parameters, defaults filled in
  std::vector<std::string> outputs;  // paths relative to DIR
  nlohmann::json output_hashes = nlohmann::json::object();  // {path: {"sha256", "stamp"}} once done (output_hashes below)
  std::vector<std::string> accepted_edits;  // outputs edited by hand and kept (--accept-edited-outputs)
  nlohmann::json metrics;       // headline metrics ({} until done)
  std::string started, finished;     // ISO 8601 UTC
  double wall_seconds = 0;
  int64_t attempts = 0;         // runs of this key (a resumed stage counts again)
  nlohmann::json versions;      // {"rlhf", "build" (util/build_id.h), "torch"}
  std::string error;            // when failed

  nlohmann::json to_json() const;
  static Manifest from_json(const nlohmann::json& j, const std::string& source);
};

// Makes run_dir a run directory: creates it, or accepts an empty folder or an earlier run's
// (whose stages the plan's keys then reuse). Throws rlhf::Error, touching nothing, when it is
// not a folder or holds anything else (naming the first such entry).
void claim_run_dir(const std::string& run_dir);

std::string stage_dir(const std::string& run_dir, const std::string& stage);
std::string manifest_path(const std::string& run_dir, const std::string& stage);
std::string tensorboard_dir(const std::string& run_dir, const std::string& stage);
std::string report_path(const std::string& run_dir);
// The command that serves the run's tuned policy over HTTP (rlhf serve, docs/serve.md): the
// train_policy stage folder as the adapter named "tuned" (its base is the one recorded in it).
std::string serve_command(const std::string& run_dir);

// nullopt when the stage has no manifest; throws rlhf::Error on a corrupt one.
std::optional<Manifest> read_manifest(const std::string& run_dir, const std::string& stage);
void write_manifest(const std::string& run_dir, const Manifest& m);

// The content of a stage's outputs (paths relative to DIR), as {path: {"sha256", "stamp"}}: a
// file's SHA-256, a folder's over its files (each one's path in the folder and SHA-256) less
// checkpoints/ and logs/, which no other stage reads. The stamp (sizes, times, inodes) lets
// a later call take the SHA-256 from `known` (an earlier result) without reading a file that
// was not written since. A missing output is left out.
nlohmann::json output_hashes(const std::string& run_dir, const std::vector<std::string>& outputs,
                             const nlohmann::json& known = nlohmann::json::object());

// A done stage's outputs against what its manifest recorded: those gone, those whose content
// changed since (edited by hand), and the hashes now.
struct OutputCheck {
  std::vector<std::string> missing, edited;
  nlohmann::json hashes;  // output_hashes now
};
OutputCheck check_outputs(const std::string& run_dir, const Manifest& m);

// {path: sha256} of output_hashes' result: what a dependant's key and manifest record.
nlohmann::json output_sha256(const nlohmann::json& hashes);

// Now, as "2026-01-02T03:04:05Z".
std::string utc_now();

}  // namespace rlhf::pipeline
