#include "rlhf/pipeline/run.h"

#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "rlhf/dist/group.h"
#include "rlhf/eval/infer.h"
#include "rlhf/eval/judge.h"
#include "rlhf/eval/label.h"
#include "rlhf/model/model.h"
#include "rlhf/eval/sxs.h"
#include "rlhf/eval/sxs_score.h"
#include "rlhf/export/export.h"
#include "rlhf/pipeline/report.h"
#include "rlhf/pipeline/run_dir.h"
#include "rlhf/pipeline/status.h"
#include "rlhf/track/tensorboard.h"
#include "rlhf/train/dpo_trainer.h"
#include "rlhf/train/policy_trainer.h"
#include "rlhf/train/reward_trainer.h"
#include "rlhf/util/build_id.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"
#include "rlhf/util/hash.h"
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
  bool writer = true;     // rank 0 of a job (or one process): the rank that writes
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
  if (c.writer) publish_curves(t.output + "/logs", c.dir, "train_reward");
  return {{"steps", s.steps}, {"train_pairs", s.train_pairs}, {"validation_pairs", s.validation_pairs},
          {"validation_accuracy", s.validation_accuracy}, {"validation_loss", s.validation_loss}};
}

// method dpo: train-dpo on the preference pairs (given or labeled), into the same policy folder.
json stage_train_dpo(const Ctx& c) {
  DpoTrainConfig t = c.spec.dpo;  // every setting, from the spec
  t.preference_dataset = c.spec.rlaif.enabled ? c.path("label/preferences.jsonl") : c.spec.preference_dataset;
  t.large_model_reference = c.model_ref;
  t.output = c.path("train_policy/model");
  t.resume = c.resume && fs::exists(t.output);
  t.progress = c.progress;
  DpoTrainSummary s = train_dpo(t);
  if (c.writer) publish_curves(t.output + "/logs", c.dir, "train_policy");
  return {{"method", "dpo"},
          {"steps", s.steps},
          {"train_pairs", s.train_pairs},
          {"validation_pairs", s.validation_pairs},
          {"validation_loss", s.validation_loss},
          {"validation_accuracy", s.validation_accuracy},
          {"validation_margin", s.validation_margin}};
}

json stage_train_policy(const Ctx& c) {
  if (c.spec.dpo_method()) return stage_train_dpo(c);
  PolicyTrainConfig t = c.spec.policy;  // every setting, from the spec (method, rule rewards)
  t.prompt_dataset = c.spec.prompt_dataset;
  if (c.plan.find("train_reward")) t.reward_model = c.path("train_reward/model");
  t.large_model_reference = c.model_ref;
  t.output = c.path("train_policy/model");
  t.resume = c.resume && fs::exists(t.output);
  t.progress = c.progress;
  PolicyTrainSummary s = train_policy(t);
  if (c.writer) publish_curves(t.output + "/logs", c.dir, "train_policy");
  return {{"method", t.method}, {"steps", s.steps}, {"final_reward", s.final_reward}, {"final_kl_k3", s.final_kl_k3}, {"final_kl_k1", s.final_kl_k1},
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
  if (c.plan.find("train_reward")) {  // without a reward model: no scores, lengths only
    eval::SxsScoreOptions so;
    so.reward_model = c.path("train_reward/model");
    so.load = {parse_dtype(c.spec.dtype()), parse_device(c.spec.device())};
    so.batch_size = adv(c).inference_batch_size;
    so.progress = c.progress;
    eval::score_sxs(table, so);
  }
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
  if (c.writer) std::fputs(eval::format_summary(s).c_str(), stdout);
  if (c.writer && !s.judge_warning.empty()) std::fprintf(stderr, "[rlhf] warning: %s\n", s.judge_warning.c_str());
  return {{"untuned_win_rate", s.wins.a_rate}, {"tuned_win_rate", s.wins.b_rate}, {"tie_rate", s.wins.tie_rate},
          {"mean_confidence", s.mean_confidence}, {"position_consistency", s.position_consistency}};
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

// The stages whose command splits its work across the ranks of a job (dist::job() inside it,
// rank 0 writing the one output): under a launcher every rank runs them together. The other
// stages run on rank 0 alone while the rest wait, so they must not use the job's collectives.
bool on_every_rank(const std::string& stage) {
  static const std::set<std::string> kDataParallel = {"label",         "train_reward", "train_policy",
                                                      "infer_untuned", "infer_tuned",  "autosxs"};
  return kDataParallel.count(stage) > 0;
}

// The ranks of a job as `pipeline run` sees them; in one process a job of one, where the calls
// below do nothing. Rank 0 owns the run directory and decides each stage; it tells the others
// through the job's store, one step at a time: {"stage", "action": "cached" | "run" | "stop" |
// "end", "resume", "error"}. A rank waiting for rank 0 polls with no time limit (rank 0 may run
// a stage alone for hours) and stops as soon as rank 0 is gone; rank 0's waits for the others
// are bounded by the collective timeout (RLHF_DIST_TIMEOUT).
class Ranks {
 public:
  Ranks() : group_(dist::job()) {}

  bool writer() const { return !group_ || group_->rank() == 0; }
  int rank() const { return group_ ? group_->rank() : 0; }
  std::chrono::milliseconds timeout() const {
    return std::chrono::seconds(group_ ? group_->env().timeout_seconds : 0);
  }

  // Once every rank has compiled the plan (`own`: this rank's failure, if any): a rank that
  // failed throws its own error, the others an error naming it; so does every rank when one
  // planned other stages or keys than rank 0.
  void agree_on_start(const std::exception_ptr& own, const std::string& digest) {
    if (!group_) {
      if (own) std::rethrow_exception(own);
      return;
    }
    std::string error;
    if (own) {
      try {
        std::rethrow_exception(own);
      } catch (const std::exception& e) {
        error = e.what();
      }
    }
    const std::vector<std::string> all = group_->all_gather_bytes(json{{"error", error}, {"plan", digest}}.dump());
    if (own) std::rethrow_exception(own);
    std::vector<json> each;
    for (const auto& a : all) each.push_back(json::parse(a));
    for (size_t r = 0; r < each.size(); ++r)
      if (!each[r].at("error").get<std::string>().empty())
        fail("rank {} of {} could not start the pipeline: {}", r, each.size(), each[r].at("error").get<std::string>());
    for (size_t r = 1; r < each.size(); ++r)
      if (each[r].at("plan") != each[0].at("plan"))
        fail("rank {} planned other stages or keys than rank 0: every rank must read the same spec, datasets, model and "
             "program",
             r);
  }

  // Rank 0: the others' next step.
  void tell(const json& step) {
    if (group_) group_->set_key(fmt::format("pipeline/step/{}", steps_++), step.dump());
  }
  // The others: rank 0's next step.
  json hear() {
    return json::parse(*group_->wait_key(fmt::format("pipeline/step/{}", steps_++), std::chrono::milliseconds::max()));
  }

  // The others, after a stage every rank ran: how it went here ("" = done).
  void report(const std::string& error) {
    group_->set_key(fmt::format("pipeline/report/{}/{}", steps_ - 1, rank()), error);
  }
  // Rank 0: the first error another rank reported for the stage just run, naming the rank, or
  // "" when each one finished it. Waits up to `limit` for each (zero: looks once).
  std::string reports(std::chrono::milliseconds limit) {
    if (!group_) return "";
    for (int r = 1; r < group_->size(); ++r) {
      std::optional<std::string> v = group_->wait_key(fmt::format("pipeline/report/{}/{}", steps_ - 1, r), limit);
      if (!v) {
        if (limit.count() == 0) continue;
        return fmt::format("rank {} did not finish the stage within {} s (RLHF_DIST_TIMEOUT)", r, limit.count() / 1000);
      }
      if (!v->empty()) {
        gone_.insert(r);
        return fmt::format("rank {}: {}", r, *v);
      }
    }
    return "";
  }

  // The others: rank 0's last step (the end, or a stop) heard.
  void heard() { group_->set_key(fmt::format("pipeline/heard/{}", rank()), ""); }
  // Rank 0, the run done: waits up to the collective timeout for the others to have heard it
  // (they read it from the store, which rank 0 serves until it exits).
  void wait_heard() {
    if (!group_) return;
    for (int r = 1; r < group_->size(); ++r)
      if (!group_->wait_key(fmt::format("pipeline/heard/{}", r), timeout()))
        std::fprintf(stderr, "[rlhf] warning: rank %d did not hear the end of the pipeline within %lld s\n", r,
                     static_cast<long long>(timeout().count() / 1000));
  }

  // Rank 0, failing: the others stop with its message. Waits a few seconds for them to have
  // read it, but not for a rank that reported a failure of its own (it has exited).
  void stop(const std::string& error) {
    if (!group_) return;
    try {
      const size_t told = steps_;  // the stage step last told is told - 1
      tell({{"action", "stop"}, {"error", error}});
      const auto until = Clock::now() + std::min(timeout(), std::chrono::milliseconds(5000));
      for (int r = 1; r < group_->size(); ++r)
        while (!gone_.count(r) && Clock::now() < until) {
          if (group_->wait_key(fmt::format("pipeline/heard/{}", r), std::chrono::milliseconds(100))) break;
          if (told > 0) {
            auto v = group_->wait_key(fmt::format("pipeline/report/{}/{}", told - 1, r), std::chrono::milliseconds(0));
            if (v && !v->empty()) break;
          }
        }
    } catch (const std::exception&) {
    }
  }

 private:
  dist::Group* group_;
  size_t steps_ = 0;    // steps told (rank 0) or heard (the others)
  std::set<int> gone_;  // ranks that reported a failure (and exited)
};

// What every rank must agree on: the stages and their plan keys.
std::string plan_digest(const Plan& plan) {
  std::string all;
  for (const auto& s : plan.stages) all += s.name + " " + s.key + "\n";
  return sha256_hex(all);
}

std::string model_ref(const PipelineSpec& spec, const Plan& plan) {
  return spec.large_model_reference.empty() ? plan.checks.model_path : spec.large_model_reference;
}

// Rank 0 (or the one process): the run directory, each stage's decision, the manifests, the
// report; the other ranks are told each decision and run the data-parallel stages with it.
RunResult lead(const RunOptions& o, const PipelineSpec& spec, const Plan& plan, Ranks& ranks) {
  claim_run_dir(o.run_dir);  // a new or empty folder, or an earlier run's: never someone else's files
  const int lock = try_lock_run_dir(o.run_dir);
  if (lock < 0) fail("{}: another pipeline run is using this directory", o.run_dir);
  struct Unlock {
    int fd;
    ~Unlock() { ::close(fd); }
  } unlock{lock};

  write_file_atomic((fs::path(o.run_dir) / "spec.yaml").string(), read_file(o.spec, size_t(1) << 20));
  write_file_atomic((fs::path(o.run_dir) / "plan.json").string(), plan.to_json().dump(2) + "\n");

  const json versions = {{"rlhf", RLHF_VERSION}, {"build", build_id()}, {"torch", TORCH_VERSION}};
  // What each stage's dependants read of it: {"key": its run key, "outputs": {path: sha256}}.
  std::map<std::string, json> done;
  RunResult result;
  result.run_dir = o.run_dir;
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
        ranks.tell({{"stage", st.name}, {"action", "cached"}});
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
    ranks.tell({{"stage", st.name}, {"action", "run"}, {"resume", resume}});

    Ctx ctx{plan, plan.spec, o.run_dir, resume, o.progress, /*writer=*/true, model_ref(spec, plan)};
    const auto t0 = Clock::now();
    std::string error;
    try {
      m.metrics = run_stage(st.name, ctx);
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (on_every_rank(st.name)) {
      // The others' outcome: awaited when this rank finished; else only what one already said
      // (a rank that failed first is the likelier cause).
      const std::string others = ranks.reports(error.empty() ? ranks.timeout() : std::chrono::milliseconds(0));
      if (!others.empty()) error = error.empty() ? others : fmt::format("{} (rank 0: {})", others, error);
    }
    m.wall_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    if (error.empty()) {
      m.output_hashes = output_hashes(o.run_dir, m.outputs);
      for (const auto& out : m.outputs)
        if (!m.output_hashes.contains(out)) {
          error = fmt::format("{}: the stage finished without writing it", out);
          break;
        }
    }
    if (!error.empty()) {
      m.state = "failed";
      m.error = error;
      m.finished = utc_now();
      write_manifest(o.run_dir, m);
      refresh_report(o.run_dir);
      fail("stage {} failed: {}", st.name, error);
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
  ranks.tell({{"action", "end"}});
  ranks.wait_heard();
  return result;
}

// A rank other than 0: each stage as rank 0 decides it; the data-parallel ones run here too
// (writing nothing: rank 0 writes), the others are rank 0's alone.
RunResult follow(const RunOptions& o, const PipelineSpec& spec, const Plan& plan, Ranks& ranks) {
  RunResult result;
  result.rank = ranks.rank();
  result.run_dir = o.run_dir;
  result.report = report_path(o.run_dir);
  auto stopped = [&](const json& step) {
    ranks.heard();
    fail("rank 0 stopped the pipeline: {}", step.value("error", std::string()));
  };
  for (const Stage& st : plan.stages) {
    const json step = ranks.hear();
    const std::string action = step.at("action");
    if (action == "stop") stopped(step);
    if (step.value("stage", std::string()) != st.name)
      fail("rank 0 is at stage {}, rank {} at stage {}: the ranks planned different runs", step.value("stage", action),
           ranks.rank(), st.name);
    if (action == "cached") {
      result.stages.push_back({st.name, "cached", 0, json::object()});
      continue;
    }
    const bool resume = step.value("resume", false);
    StageOutcome outcome{st.name, resume ? "resumed" : "ran", 0, json::object()};
    if (on_every_rank(st.name)) {
      Ctx ctx{plan, plan.spec, o.run_dir, resume, /*progress=*/false, /*writer=*/false, model_ref(spec, plan)};
      const auto t0 = Clock::now();
      try {
        outcome.metrics = run_stage(st.name, ctx);
      } catch (const std::exception& e) {
        ranks.report(e.what());
        throw;
      }
      ranks.report("");
      outcome.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    }
    result.stages.push_back(outcome);
  }
  const json last = ranks.hear();
  if (last.at("action") != "end") stopped(last);
  ranks.heard();
  return result;
}

}  // namespace

RunResult run_pipeline(const RunOptions& o) {
  if (o.run_dir.empty()) fail("--run-dir is required");
  Ranks ranks;  // under a launcher, the job is joined first: from then on no rank fails alone
  // Every rank compiles the plan (the same files give the same plan); rank 0 alone checks the
  // free space where the run goes, and writes.
  std::optional<PipelineSpec> spec;
  std::optional<Plan> plan;
  std::exception_ptr problem;
  try {
    spec = read_spec(o.spec);
    if (ranks.writer()) std::fprintf(stderr, "[rlhf] pipeline %s: checking the data and the model\n", o.spec.c_str());
    plan = compile_plan(*spec, ranks.writer() ? o.run_dir : "");
  } catch (...) {
    problem = std::current_exception();
  }
  ranks.agree_on_start(problem, plan ? plan_digest(*plan) : "");

  apply_threads(o.threads > 0 ? o.threads : spec->threads());  // 0: the default (model.h)
  if (!ranks.writer()) return follow(o, *spec, *plan, ranks);
  try {
    return lead(o, *spec, *plan, ranks);
  } catch (const std::exception& e) {
    ranks.stop(e.what());
    throw;
  }
}

}  // namespace rlhf::pipeline
