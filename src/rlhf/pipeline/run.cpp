#include "rlhf/pipeline/run.h"

#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>

#include <fmt/format.h>

#include "rlhf/eval/infer.h"
#include "rlhf/eval/judge.h"
#include "rlhf/eval/label.h"
#include "rlhf/eval/sxs.h"
#include "rlhf/eval/sxs_score.h"
#include "rlhf/export/export.h"
#include "rlhf/pipeline/report.h"
#include "rlhf/pipeline/run_dir.h"
#include "rlhf/pipeline/status.h"
#include "rlhf/track/tensorboard.h"
#include "rlhf/train/policy_trainer.h"
#include "rlhf/train/reward_trainer.h"
#include "rlhf/util/build_id.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"
#include "rlhf/util/progress.h"

namespace rlhf::pipeline {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

// Everything a stage body needs.
struct Ctx {
  const Plan& plan;
  const PipelineSpec& spec;
  std::string dir;        // the run directory
  bool resume = false;    // the same key ran before and did not finish
  bool progress = true;
  std::string model_ref;  // the base model, as resolved at compile time

  std::string path(const std::string& rel) const { return (fs::path(dir) / rel).string(); }
};

// The trainers' event files, one copy per stage under DIR/tensorboard/<stage>/: every (tag,
// step) once, the latest value (a resumed run logs the steps after its checkpoint again).
void publish_curves(const std::string& logs, const std::string& dir, const std::string& stage) {
  std::error_code ec;
  if (!fs::exists(logs, ec)) return;
  std::vector<track::ScalarPoint> points = track::read_scalars(logs);
  std::map<std::pair<std::string, int64_t>, size_t> last;
  for (size_t i = 0; i < points.size(); ++i) last[{points[i].tag, points[i].step}] = i;
  std::vector<size_t> keep;
  for (const auto& [k, i] : last) keep.push_back(i);
  std::sort(keep.begin(), keep.end(), [&](size_t a, size_t b) {
    return points[a].step != points[b].step ? points[a].step < points[b].step : a < b;
  });
  const std::string out = tensorboard_dir(dir, stage);
  const std::string tmp = out + ".tmp";
  fs::remove_all(tmp, ec);
  {
    track::EventWriter w(tmp);
    for (size_t i : keep) w.add_scalar(points[i].tag, points[i].step, points[i].value, points[i].wall_time);
  }
  fs::remove_all(out, ec);
  fs::create_directories(fs::path(out).parent_path());
  fs::rename(tmp, out);
}

const AdvancedSpec& adv(const Ctx& c) { return c.spec.advanced; }

json stage_validate(const Ctx& c) {
  const Checks& ck = c.plan.checks;
  json r = {{"model", {{"path", ck.model_path}, {"format", ck.model_format}, {"sha256", ck.model_sha256},
                       {"context_length", ck.context_length}}},
            {"preference_pairs", ck.preference_pairs},
            {"prompts", ck.prompts},
            {"eval_prompts", ck.eval_prompts},
            {"rlaif_prompts", ck.rlaif_prompts}};
  write_file_atomic(c.path("validate/report.json"), r.dump(2) + "\n");
  return {{"prompts", ck.prompts}, {"eval_prompts", ck.eval_prompts},
          {"preference_pairs", c.spec.rlaif.enabled ? ck.rlaif_prompts : ck.preference_pairs}};
}

json stage_label(const Ctx& c) {
  const RlaifSpec& r = c.spec.rlaif;
  eval::LabelConfig l;
  l.prompt_dataset = r.prompt_dataset;
  l.model = c.model_ref;
  l.temperature_0 = r.temperatures[0];
  l.temperature_1 = r.temperatures[1];
  l.max_new_tokens = c.spec.target_sequence_length();
  l.prompt_sequence_length = c.spec.prompt_sequence_length();
  l.instruction = c.spec.instruction();
  l.prompt_format = c.spec.prompt_format();
  l.seed = c.spec.seed();
  l.batch_size = adv(c).inference_batch_size;
  l.rule = r.rule;
  l.judge = r.judge;
  l.task = eval::parse_task(r.task);
  l.min_confidence = r.min_confidence;
  l.keep_ties = r.keep_ties;
  l.output = c.path("label/preferences.jsonl");
  l.dtype = c.spec.dtype();
  l.device = c.spec.device();
  l.progress = c.progress;
  eval::LabelSummary s = eval::run_label(l);
  return {{"pairs_labeled", s.written}, {"empty_left_out", s.empty}, {"ties_left_out", s.ties},
          {"identical_left_out", s.identical},
          {"chose_0", s.chose_0}, {"chose_1", s.chose_1}, {"mean_confidence", s.mean_confidence}};
}

json stage_train_reward(const Ctx& c) {
  RewardTrainConfig t = c.spec.reward;  // every setting, from the spec
  t.preference_dataset = c.spec.rlaif.enabled ? c.path("label/preferences.jsonl") : c.spec.preference_dataset;
  t.large_model_reference = c.model_ref;
  t.output = c.path("train_reward/model");
  t.resume = c.resume && fs::exists(t.output);
  t.progress = c.progress;
  RewardTrainSummary s = train_reward_model(t);
  publish_curves(t.output + "/logs", c.dir, "train_reward");
  return {{"steps", s.steps}, {"train_pairs", s.train_pairs}, {"validation_pairs", s.validation_pairs},
          {"validation_accuracy", s.validation_accuracy}, {"validation_loss", s.validation_loss}};
}

json stage_train_policy(const Ctx& c) {
  PolicyTrainConfig t = c.spec.policy;  // every setting, from the spec
  t.prompt_dataset = c.spec.prompt_dataset;
  t.reward_model = c.path("train_reward/model");
  t.large_model_reference = c.model_ref;
  t.output = c.path("train_policy/model");
  t.resume = c.resume && fs::exists(t.output);
  t.progress = c.progress;
  PolicyTrainSummary s = train_policy(t);
  publish_curves(t.output + "/logs", c.dir, "train_policy");
  return {{"steps", s.steps}, {"final_reward", s.final_reward}, {"final_kl", s.final_kl},
          {"step_seconds_median", s.step_seconds_median}};
}

json stage_infer(const Ctx& c, bool tuned) {
  eval::InferConfig i;
  i.model = c.model_ref;
  if (tuned) i.adapter = c.path("train_policy/model");
  i.input = c.spec.eval_dataset;
  i.output = c.path(tuned ? "infer_tuned/predictions.jsonl" : "infer_untuned/predictions.jsonl");
  i.instruction = c.spec.instruction();
  i.instruction_set = true;
  i.prompt_format = c.spec.prompt_format();
  i.prompt_sequence_length = c.spec.prompt_sequence_length();
  i.sampling.temperature = 0.0;
  i.sampling.max_new_tokens = c.spec.target_sequence_length();
  i.sampling.seed = c.spec.seed();
  i.batch_size = adv(c).inference_batch_size;
  i.max_rows = c.spec.policy.max_eval_prompts;
  i.restart = !c.resume;
  i.dtype = c.spec.dtype();
  i.device = c.spec.device();
  i.progress = c.progress;
  eval::InferResult r = eval::run_inference(i);
  return {{"rows", r.rows}, {"resumed_rows", r.resumed_rows}, {"prompts_per_second", r.prompts_per_second},
          {"tokens_per_second", r.tokens_per_second}};
}

json stage_sxs(const Ctx& c) {
  eval::SxsTable table = eval::join_sxs(eval::read_sxs_side(c.path("infer_untuned/predictions.jsonl")),
                                        eval::read_sxs_side(c.path("infer_tuned/predictions.jsonl")));
  table.a.label = "untuned";
  table.b.label = "tuned";
  eval::SxsScoreOptions so;
  so.reward_model = c.path("train_reward/model");
  so.load = {parse_dtype(c.spec.dtype()), parse_device(c.spec.device())};
  so.batch_size = adv(c).inference_batch_size;
  so.progress = c.progress;
  eval::score_sxs(table, so);
  eval::SxsSummary s = eval::summarize_sxs(table, adv(c).max_words);
  write_file_atomic(c.path("sxs/sxs.jsonl"), eval::sxs_jsonl(table));
  write_file_atomic(c.path("sxs/sxs.csv"), eval::sxs_csv(table));
  write_file_atomic(c.path("sxs/sxs.html"), eval::sxs_html(table, s));
  write_file_atomic(c.path("sxs/summary.json"), s.to_json().dump(2) + "\n");
  std::fputs(eval::format_sxs_summary(s).c_str(), stdout);
  json m = {{"rows", s.rows},
            {"max_words", s.max_words},
            {"untuned_mean_words", s.a.mean_words},
            {"tuned_mean_words", s.b.mean_words},
            {"untuned_over_max_words", s.a.over_max_words},
            {"tuned_over_max_words", s.b.over_max_words}};
  if (s.a.mean_score) m["untuned_mean_reward"] = *s.a.mean_score;
  if (s.b.mean_score) m["tuned_mean_reward"] = *s.b.mean_score;
  if (s.b_higher) m["tuned_reward_higher"] = *s.b_higher;
  return m;
}

json stage_autosxs(const Ctx& c) {
  const AutoSxsSpec& a = c.spec.autosxs;
  eval::AutoSxsConfig x;
  x.input = c.path("sxs/sxs.jsonl");
  x.output = c.path("autosxs");
  x.in_place = true;
  x.judge.model = a.judge;
  x.judge.task = eval::parse_task(a.task);
  x.judge.explanation_tokens = a.explanation_tokens;
  x.judge.dtype = c.spec.dtype();
  x.judge.device = c.spec.device();
  x.progress = c.progress;
  eval::AutoSxsSummary s = eval::run_autosxs(x);
  std::fputs(eval::format_summary(s).c_str(), stdout);
  return {{"untuned_win_rate", s.wins.a_rate}, {"tuned_win_rate", s.wins.b_rate}, {"tie_rate", s.wins.tie_rate},
          {"mean_confidence", s.mean_confidence}};
}

json stage_export(const Ctx& c) {
  ExportOptions e;
  e.adapter = c.path("train_policy/model");
  e.format = adv(c).export_format;
  e.output = c.path(e.format == "gguf" ? "export/model.gguf" : "export/model");
  e.model = c.model_ref;
  ExportResult r = export_model(e);
  return {{"merged_weights", r.merged_weights}};
}

json run_stage(const std::string& name, const Ctx& c) {
  if (name == "validate") return stage_validate(c);
  if (name == "label") return stage_label(c);
  if (name == "train_reward") return stage_train_reward(c);
  if (name == "train_policy") return stage_train_policy(c);
  if (name == "infer_untuned") return stage_infer(c, false);
  if (name == "infer_tuned") return stage_infer(c, true);
  if (name == "sxs") return stage_sxs(c);
  if (name == "autosxs") return stage_autosxs(c);
  if (name == "export") return stage_export(c);
  fail("internal: no stage named {}", name);
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& x : v) out += (out.empty() ? "" : ", ") + x;
  return out;
}

// The report must not hide the run's own outcome: its failures are warnings.
void refresh_report(const std::string& dir) {
  try {
    write_report(dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[rlhf] warning: the report could not be written: %s\n", e.what());
  }
}

}  // namespace

RunResult run_pipeline(const RunOptions& o) {
  if (o.run_dir.empty()) fail("--run-dir is required");
  PipelineSpec spec = read_spec(o.spec);
  std::fprintf(stderr, "[rlhf] pipeline %s: checking the data and the model\n", o.spec.c_str());
  Plan plan = compile_plan(spec, o.run_dir);

  claim_run_dir(o.run_dir);  // a new or empty folder, or an earlier run's: never someone else's files
  const int lock = try_lock_run_dir(o.run_dir);
  if (lock < 0) fail("{}: another pipeline run is using this directory", o.run_dir);
  struct Unlock {
    int fd;
    ~Unlock() { ::close(fd); }
  } unlock{lock};

  const int threads = o.threads > 0 ? o.threads : static_cast<int>(spec.threads());
  if (threads > 0) torch::set_num_threads(threads);
  write_file_atomic((fs::path(o.run_dir) / "spec.yaml").string(), read_file(o.spec, size_t(1) << 20));
  write_file_atomic((fs::path(o.run_dir) / "plan.json").string(), plan.to_json().dump(2) + "\n");

  const json versions = {{"rlhf", RLHF_VERSION}, {"build", build_id()}, {"torch", TORCH_VERSION}};
  // What each stage's dependants read of it: {"key": its run key, "outputs": {path: sha256}}.
  std::map<std::string, json> done;
  RunResult result;
  result.report = report_path(o.run_dir);
  const size_t n = plan.stages.size();
  for (size_t i = 0; i < n; ++i) {
    const Stage& st = plan.stages[i];
    std::optional<Manifest> prev = read_manifest(o.run_dir, st.name);
    const std::string tag = fmt::format("[{}/{}] {}", i + 1, n, st.name);
    // The run key: the plan's parts, with the upstream outputs as they are now.
    json deps = json::object();
    for (const auto& d : st.deps) deps[d] = done.at(d);
    const std::string key = run_key(st, deps);
    if (prev && prev->state == "done" && prev->key == key) {
      OutputCheck check = check_outputs(o.run_dir, *prev);
      bool said = false;
      if (check.missing.empty() && !check.edited.empty() && o.accept_edited_outputs) {
        // The user's edit stands: recorded, so what reads these outputs runs again with them.
        for (const auto& e : check.edited)
          if (std::find(prev->accepted_edits.begin(), prev->accepted_edits.end(), e) == prev->accepted_edits.end())
            prev->accepted_edits.push_back(e);
        prev->output_hashes = check.hashes;
        write_manifest(o.run_dir, *prev);
        std::fprintf(stderr, "%s: cached (key %s), with %s as edited by hand\n", tag.c_str(), key.substr(0, 12).c_str(),
                     joined(check.edited).c_str());
        check.edited.clear();
        said = true;
      }
      if (check.missing.empty() && check.edited.empty()) {
        if (check.hashes != prev->output_hashes) {  // the same content, rewritten (or copied): note the new stamps
          prev->output_hashes = check.hashes;
          write_manifest(o.run_dir, *prev);
        }
        if (!said) std::fprintf(stderr, "%s: cached (key %s)\n", tag.c_str(), key.substr(0, 12).c_str());
        done[st.name] = {{"key", key}, {"outputs", output_sha256(check.hashes)}};
        result.stages.push_back({st.name, "cached", prev->wall_seconds, prev->metrics});
        continue;
      }
      if (!check.missing.empty())
        std::fprintf(stderr, "%s: %s gone since the stage ran: it runs again\n", tag.c_str(), joined(check.missing).c_str());
      else
        std::fprintf(stderr, "%s: %s edited by hand since the stage ran: it runs again (--accept-edited-outputs uses %s)\n",
                     tag.c_str(), joined(check.edited).c_str(), check.edited.size() == 1 ? "it as it is" : "them as they are");
    }
    const bool resume = prev && prev->key == key && prev->state != "done";
    if (!resume) {
      // Another key (or outputs gone): start over in an empty folder.
      std::error_code ec;
      fs::remove_all(stage_dir(o.run_dir, st.name), ec);
      fs::remove_all(tensorboard_dir(o.run_dir, st.name), ec);
    }
    Manifest m;
    m.stage = st.name;
    m.state = "running";
    m.key = key;
    m.plan_key = st.key;
    m.params = st.params;
    m.outputs = st.outputs;
    m.versions = versions;
    m.attempts = (resume ? prev->attempts : 0) + 1;
    m.started = utc_now();
    m.metrics = json::object();
    m.inputs = json::object();
    for (const auto& in : st.inputs) m.inputs[in.name] = {{"path", in.path}, {"sha256", in.sha256}};
    for (const auto& d : st.deps) m.inputs[d] = deps[d];
    write_manifest(o.run_dir, m);
    std::fprintf(stderr, "%s: %s — %s\n", tag.c_str(), resume ? "resuming" : "running", st.title.c_str());

    Ctx ctx{plan, plan.spec, o.run_dir, resume, o.progress,
            spec.large_model_reference.empty() ? plan.checks.model_path : spec.large_model_reference};
    const auto t0 = Clock::now();
    try {
      m.metrics = run_stage(st.name, ctx);
    } catch (const std::exception& e) {
      m.state = "failed";
      m.error = e.what();
      m.finished = utc_now();
      m.wall_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
      write_manifest(o.run_dir, m);
      refresh_report(o.run_dir);
      fail("stage {} failed: {}", st.name, e.what());
    }
    m.wall_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    m.output_hashes = output_hashes(o.run_dir, m.outputs);
    for (const auto& out : m.outputs)
      if (!m.output_hashes.contains(out)) {
        m.state = "failed";
        m.error = fmt::format("{}: the stage finished without writing it", out);
        m.finished = utc_now();
        write_manifest(o.run_dir, m);
        refresh_report(o.run_dir);
        fail("stage {} failed: {}", st.name, m.error);
      }
    m.state = "done";
    m.finished = utc_now();
    write_manifest(o.run_dir, m);
    done[st.name] = {{"key", key}, {"outputs", output_sha256(m.output_hashes)}};
    std::string headline;
    for (auto it = m.metrics.begin(); it != m.metrics.end(); ++it)
      if (it.value().is_number())
        headline += fmt::format("{}{} {:.4g}", headline.empty() ? "" : ", ", it.key(), it.value().get<double>());
    std::fprintf(stderr, "%s: done in %s%s%s\n", tag.c_str(), Progress::format_duration(m.wall_seconds).c_str(),
                 headline.empty() ? "" : " — ", headline.c_str());
    result.stages.push_back({st.name, resume ? "resumed" : "ran", m.wall_seconds, m.metrics});
    refresh_report(o.run_dir);
  }
  refresh_report(o.run_dir);
  return result;
}

}  // namespace rlhf::pipeline
