// What invalidates a pipeline stage: every file of the model that the loader reads (the
// model's content hash), the program's own identity (its build, not its version string), and
// the content of the upstream outputs a stage reads, checked at run time. An output edited by
// hand is named by `pipeline status`, run again by `pipeline run`, or kept with
// --accept-edited-outputs.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "rlhf/model/loader.h"
#include "rlhf/pipeline/run_dir.h"
#include "rlhf/util/build_id.h"
#include "test_util.h"
#include "model/pipeline_fixture.h"
#include "tiny_model.h"

namespace rlhf::pipeline {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using rlhf::testing::capture;
using rlhf::testing::cli;
using rlhf::testing::outcomes;
using rlhf::testing::run_cmd;
using rlhf::testing::read_jsonl;
using rlhf::testing::read_text;

// Every stage of the project below (it exports nothing).
const std::vector<std::string> kStages = {"validate",    "label", "train_reward", "train_policy", "infer_untuned",
                                          "infer_tuned", "sxs",   "autosxs"};

// A tiny model, prompts, and a spec with every stage but the export (RLAIF by rule, AutoSxS).
fs::path write_project(const fs::path& dir) {
  rlhf::testing::write_pipeline_model_and_prompts(dir);
  std::ofstream(dir / "spec.yaml") << R"(rlaif:
  prompt_dataset: prompts.jsonl
  rule: prefer-shorter
  temperatures: [0.8, 1.3]
prompt_dataset: prompts.jsonl
eval_dataset: prompts.jsonl
large_model_reference: model
prompt_sequence_length: 32
target_sequence_length: 8
reward_model_epochs: 1
reinforcement_learning_train_steps: 2
autosxs:
  explanation_tokens: 2
advanced:
  reward_model_batch_size: 4
  reward_model_micro_batch_size: 4
  reinforcement_learning_batch_size: 4
  reinforcement_learning_micro_batch_size: 2
  inference_batch_size: 4
  export_format: none
  seed: 3
  threads: 1
)";
  return dir / "spec.yaml";
}


// Runs the pipeline, expecting success; returns its log.
std::string run_ok(const fs::path& spec, const fs::path& run, const std::string& flags = "") {
  int status = 0;
  std::string log = capture(run_cmd(spec, run, flags), &status, true);
  EXPECT_EQ(status, 0) << log;
  return log;
}

// The line of `pipeline status` about one stage, with the lines under it.
std::string status_of(const std::string& status, const std::string& stage) {
  std::istringstream in(status);
  std::string line, out;
  bool in_stage = false;
  while (std::getline(in, line)) {
    if (!line.starts_with(" ")) in_stage = line.starts_with(stage + " ");
    if (in_stage) out += line + "\n";
  }
  return out;
}

void write_text(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary | std::ios::trunc) << text; }

TEST(PipelineCache, ModelHashChangesWithEveryFileTheLoaderReads) {
  auto dir = rlhf::testing::scratch_dir();
  const fs::path model = dir / "model";
  rlhf::testing::write_tiny_hf_model(model, 5);
  std::vector<std::string> seen = {model_content_hash(model.string())};
  auto expect_new = [&](const std::string& what) {
    const std::string h = model_content_hash(model.string());
    for (const auto& s : seen) EXPECT_NE(h, s) << what;
    EXPECT_EQ(model_content_hash(model.string()), h) << what << ": the same files, the same hash";
    seen.push_back(h);
  };
  // A harmless field in tokenizer_config.json; then the same size, other bytes.
  write_text(model / "tokenizer_config.json", R"({"eos_token": "<|endoftext|>", "pad_token": "<pad>", "x": 1})");
  expect_new("tokenizer_config.json edited");
  write_text(model / "tokenizer_config.json", R"({"eos_token": "<|endoftext|>", "pad_token": "<pad>", "x": 2})");
  expect_new("tokenizer_config.json edited, same size");
  write_text(model / "chat_template.jinja", "{% for m in messages %}<|im_start|>{{ m.content }}{% endfor %}");
  expect_new("chat_template.jinja added");
  write_text(model / "chat_template.jinja", "{% for m in messages %}<|im_start|>{{ m.content }}{% endfor %}\n");
  expect_new("chat_template.jinja edited");
  write_text(model / "generation_config.json", R"({"eos_token_id": 256})");
  expect_new("generation_config.json added");
  write_text(model / "generation_config.json", R"({"eos_token_id": 257})");
  expect_new("generation_config.json edited");
  // Files the loader does not read leave the hash alone.
  write_text(model / "README.md", "a tiny model\n");
  EXPECT_EQ(model_content_hash(model.string()), seen.back());
}

TEST(PipelineCache, ProgramIdentityInTheKeysIsTheBuildNotTheVersion) {
  const std::string id = build_id();
  EXPECT_NE(id, RLHF_VERSION);
  EXPECT_TRUE(id.starts_with(std::string(RLHF_VERSION) + "+")) << id;
  EXPECT_GT(id.size(), std::string(RLHF_VERSION).size() + 8) << id;
  // The compiled plan says which program its keys are for.
  auto dir = rlhf::testing::scratch_dir();
  const fs::path spec = write_project(dir);
  int status = 0;
  const std::string out = capture(cli() + " pipeline compile --json " + spec.string(), &status);
  ASSERT_EQ(status, 0) << out;
  EXPECT_EQ(json::parse(out)["program"], id);
}

TEST(PipelineCache, EditedTokenizerConfigRerunsEveryStageThatReadsTheModel) {
  auto dir = rlhf::testing::scratch_dir();
  const fs::path spec = write_project(dir), run = dir / "run";
  std::string log = run_ok(spec, run);
  for (const auto& s : kStages) {
    EXPECT_EQ(outcomes(log)[s], "running") << s << "\n" << log;
    auto m = read_manifest(run.string(), s);
    ASSERT_TRUE(m.has_value()) << s;
    EXPECT_EQ(m->versions["build"], std::string(build_id())) << s;
    EXPECT_NE(m->versions["build"], RLHF_VERSION) << s;
    EXPECT_FALSE(m->plan_key.empty()) << s;
    for (const auto& o : m->outputs) EXPECT_TRUE(m->output_hashes.contains(o)) << s << " " << o;
  }
  // sxs recorded the content of the predictions it read.
  auto sxs = read_manifest(run.string(), "sxs");
  ASSERT_TRUE(sxs.has_value());
  EXPECT_EQ(sxs->inputs["infer_tuned"]["outputs"]["infer_tuned/predictions.jsonl"].get<std::string>().size(), 64u);
  log = run_ok(spec, run);
  for (const auto& s : kStages) EXPECT_EQ(outcomes(log)[s], "cached") << s << "\n" << log;

  // A harmless field in the model's tokenizer_config.json: the model's hash changes, so every
  // stage that reads the model (here, every stage) runs again.
  json tc = json::parse(read_text(dir / "model" / "tokenizer_config.json"));
  tc["model_max_length"] = 4096;
  write_text(dir / "model" / "tokenizer_config.json", tc.dump());
  log = run_ok(spec, run);
  for (const auto& s : kStages) EXPECT_EQ(outcomes(log)[s], "running") << s << "\n" << log;
}

TEST(PipelineCache, AnOutputEditedByHandIsNamedThenRerunOrKeptWithTheFlag) {
  auto dir = rlhf::testing::scratch_dir();
  const fs::path spec = write_project(dir), run = dir / "run";
  run_ok(spec, run);
  const fs::path predictions = run / "infer_tuned" / "predictions.jsonl";
  const std::string original = read_text(predictions), original_sxs = read_text(run / "sxs" / "sxs.jsonl");

  // An output gone: its stage runs again; it makes the same table, so what reads it is cached.
  fs::remove(run / "sxs" / "sxs.jsonl");
  std::string log = run_ok(spec, run);
  auto out = outcomes(log);
  EXPECT_EQ(out["sxs"], "running") << log;
  EXPECT_EQ(out["autosxs"], "cached") << log;
  EXPECT_EQ(read_text(run / "sxs" / "sxs.jsonl"), original_sxs);

  // A completion edited by hand: status names the file, and the stage that read it is stale.
  std::vector<json> rows = read_jsonl(predictions);
  ASSERT_FALSE(rows.empty());
  rows[0]["prediction"] = " edited by hand";
  std::string edited;
  for (const auto& r : rows) edited += r.dump() + "\n";
  write_text(predictions, edited);
  int status = 0;
  std::string st = capture(cli() + " pipeline status " + run.string(), &status);
  EXPECT_EQ(status, 0) << st;
  EXPECT_NE(status_of(st, "infer_tuned").find("edited"), std::string::npos) << st;
  EXPECT_NE(status_of(st, "infer_tuned").find("infer_tuned/predictions.jsonl"), std::string::npos) << st;
  EXPECT_NE(status_of(st, "sxs").find("stale"), std::string::npos) << st;
  EXPECT_NE(status_of(st, "infer_untuned").find("done"), std::string::npos) << st;

  // pipeline run makes it again: the same completions, so sxs and autosxs stay cached.
  log = run_ok(spec, run);
  out = outcomes(log);
  EXPECT_EQ(out["infer_tuned"], "running") << log;
  EXPECT_NE(log.find("infer_tuned/predictions.jsonl edited by hand"), std::string::npos) << log;
  EXPECT_EQ(out["sxs"], "cached") << log;
  EXPECT_EQ(out["autosxs"], "cached") << log;
  EXPECT_EQ(read_text(predictions), original);

  // Edited again, and kept with the flag: the stage is cached, what reads it runs with the edit.
  write_text(predictions, edited);
  log = run_ok(spec, run, " --accept-edited-outputs");
  out = outcomes(log);
  EXPECT_EQ(out["infer_untuned"], "cached") << log;
  EXPECT_EQ(out["infer_tuned"], "cached") << log;
  EXPECT_EQ(out["sxs"], "running") << log;
  EXPECT_EQ(out["autosxs"], "running") << log;
  EXPECT_EQ(read_text(predictions), edited);
  EXPECT_NE(read_text(run / "sxs" / "sxs.jsonl").find("edited by hand"), std::string::npos);
  auto m = read_manifest(run.string(), "infer_tuned");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->accepted_edits, std::vector<std::string>{"infer_tuned/predictions.jsonl"});

  // The kept edit stands: nothing to report, nothing runs.
  st = capture(cli() + " pipeline status " + run.string(), &status);
  EXPECT_EQ(st.find("edited by hand"), std::string::npos) << st;
  EXPECT_EQ(st.find("stale"), std::string::npos) << st;
  log = run_ok(spec, run);
  for (const auto& s : kStages) EXPECT_EQ(outcomes(log)[s], "cached") << s << "\n" << log;
  EXPECT_EQ(read_text(predictions), edited);
}

}  // namespace
}  // namespace rlhf::pipeline
