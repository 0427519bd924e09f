// The pipeline's plan: the stages a spec runs, in order, each with the files it reads, its
// parameters (defaults filled in, steps computed from epochs), its outputs and its cache key.
//
//   validate       every dataset line, the model (loadable, tokenizer), lengths against the
//                  model's context; writes validate/report.json
//   label          (rlaif) two candidates per prompt, labeled: label/preferences.jsonl
//   train_reward   the reward model: train_reward/model/ (+ logs, checkpoints)
//   train_policy   PPO with the KL penalty: train_policy/model/ (+ logs, checkpoints, eval)
//   infer_untuned  (eval_dataset) the base model's completions: infer_untuned/predictions.jsonl
//   infer_tuned    (eval_dataset) the tuned policy's: infer_tuned/predictions.jsonl
//   sxs            (eval_dataset) the two side by side, with reward scores: sxs/
//   autosxs        (autosxs block) the judge's verdicts: autosxs/
//   export         (export_format hf|gguf) the policy merged: export/model[.gguf]
//
// A stage has two keys. Its plan key, known at compile time, is the SHA-256 of: its name, the
// program's identity (util/build_id.h), its parameters, the content hashes of the files it
// reads (datasets, the model's files) and the plan keys of the stages it depends on. Its run
// key, computed by `pipeline run` just before the stage would run, has the same parts but,
// for each stage it depends on, that stage's run key and the content hashes of its outputs as
// they are then. A stage is cached when its manifest holds its run key; so a changed
// parameter, file, program or upstream output re-runs that stage and what reads it, and an
// upstream stage that re-ran with the same outputs re-runs nothing downstream.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/pipeline/spec.h"

namespace rlhf::pipeline {

struct StageInput {
  std::string name;    // "prompt_dataset", "model", ...
  std::string path;    // as resolved
  std::string sha256;  // of the file(s)
};

struct Stage {
  std::string name;
  std::string title;                 // what it does, in a few words
  std::vector<std::string> deps;     // stages whose outputs it reads
  std::vector<StageInput> inputs;
  nlohmann::json params;
  std::vector<std::string> outputs;  // relative to the run directory
  std::string key;                   // the plan key
};

// The run key of a stage (above), given for each stage it depends on {"key": its run key,
// "outputs": {path: sha256}}.
std::string run_key(const Stage& stage, const nlohmann::json& deps);

// What compiling found out about the data and the model.
struct Checks {
  std::string model_path, model_format, model_sha256;
  int64_t context_length = 0;
  size_t preference_pairs = 0;   // 0 with rlaif (known after labeling)
  size_t prompts = 0, eval_prompts = 0, rlaif_prompts = 0;
  bool eval_has_preferences = false;
  uint64_t model_bytes = 0;
  std::vector<std::string> notes;  // things worth saying (not errors)
};

struct Plan {
  PipelineSpec spec;
  Checks checks;
  std::vector<Stage> stages;

  const Stage* find(const std::string& name) const;
  nlohmann::json to_json() const;
  std::string format() const;  // the plan as `pipeline compile` prints it
};

// Validates everything that can be validated before hours of work (datasets line by line,
// the model and its tokenizer, lengths against its context, and — with run_dir — free disk
// space for the run) and resolves the plan. Throws rlhf::Error naming the file, line, key.
Plan compile_plan(const PipelineSpec& spec, const std::string& run_dir = "");


}  // namespace rlhf::pipeline
