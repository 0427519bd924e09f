// The run report: a synthetic run directory (plan, manifests in every state, TensorBoard
// event files, the side-by-side and AutoSxS outputs) rendered to one page: the charts, the
// stage states, the parameters, the tables and their escaping, nothing fetched; a run with
// nothing but its plan; corrupt files as notes; the atomic write; and the page in headless
// Chromium (screenshot, DOM, no script errors).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include <nlohmann/json.hpp>

#include "png_image.h"
#include "rlhf/eval/autosxs.h"
#include "rlhf/eval/sxs.h"
#include "rlhf/pipeline/plan.h"
#include "rlhf/pipeline/report.h"
#include "rlhf/pipeline/run_dir.h"
#include "rlhf/pipeline/status.h"
#include "rlhf/track/tensorboard.h"
#include "rlhf/util/error.h"
#include "test_util.h"

namespace rlhf::pipeline {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::vector<std::string> kRewardTags = {"rank_loss", "accuracy", "validation/accuracy", "chosen_reward",
                                              "learning_rate"};
const std::vector<std::string> kPolicyTags = {"reward",          "kl_loss",        "rl_loss", "objective/kl",
                                              "objective/entropy", "response_length", "loss/value", "policy/clipfrac"};
constexpr int kSxsRows = 120;

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + needle.size())) ++n;
  return n;
}

// The rows (<tr) of the table whose opening tag holds `marker`, inside its <tbody>.
size_t table_rows(const std::string& page, const std::string& marker) {
  const size_t table = page.find(marker);
  if (table == std::string::npos) return 0;
  const size_t body = page.find("<tbody>", table), end = page.find("</tbody>", body);
  if (body == std::string::npos || end == std::string::npos) return 0;
  return count(page.substr(body, end - body), "<tr");
}

Stage stage(const std::string& name, std::vector<std::string> deps) {
  Stage s;
  s.name = name;
  s.title = "the " + name + " stage";
  s.deps = std::move(deps);
  s.params = {{"seed", 0}};
  s.outputs = {name + "/out"};
  s.key = "key-" + name;
  return s;
}

Plan make_plan() {
  Plan p;
  p.spec.path = "/specs/run.yaml";
  p.spec.preference_dataset = "/data/prefs.jsonl";
  p.spec.prompt_dataset = "/data/prompts.jsonl";
  p.spec.eval_dataset = "/data/eval.jsonl";
  p.spec.reward.instruction = "Summarize in less than 50 words.";
  p.spec.policy.instruction = p.spec.reward.instruction;
  p.spec.policy.kl_coeff = 0.05;
  p.spec.autosxs.enabled = true;
  p.spec.autosxs.judge = "judge-model";
  p.spec.reward.seed = p.spec.policy.seed = 1234;
  p.checks.model_path = "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  p.checks.model_format = "gguf";
  p.checks.model_sha256 = std::string(64, 'a');
  p.checks.context_length = 8192;
  p.stages = {stage("validate", {}),
              stage("train_reward", {}),
              stage("train_policy", {"train_reward"}),
              stage("infer_untuned", {}),
              stage("infer_tuned", {"train_policy"}),
              stage("sxs", {"infer_untuned", "infer_tuned", "train_reward"}),
              stage("autosxs", {"sxs"}),
              stage("export", {"train_policy"})};
  return p;
}

Manifest manifest(const std::string& name, const std::string& state, const std::string& key) {
  Manifest m;
  m.stage = name;
  m.state = state;
  m.key = key;
  m.started = "2026-01-02T03:04:05Z";
  if (state != "running") m.finished = "2026-01-02T03:09:35Z";
  m.wall_seconds = state == "running" ? 0 : 330;
  m.attempts = 1;
  return m;
}

// The run directory's lock, as a run holds it while it works: its "running" stages are running.
struct RunLock {
  int fd;
  explicit RunLock(const fs::path& dir) : fd(try_lock_run_dir(dir.string())) { EXPECT_GE(fd, 0); }
  ~RunLock() {
    if (fd >= 0) ::close(fd);
  }
};

void write_text(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << s;
}

// validate, train_reward, sxs, autosxs done; train_policy failed; infer_untuned running;
// infer_tuned without a manifest; export done under an older key (stale).
fs::path make_run(const fs::path& dir) {
  const Plan plan = make_plan();
  write_text(dir / "plan.json", plan.to_json().dump(2));
  {
    track::EventWriter w(tensorboard_dir(dir.string(), "train_reward"));
    for (int64_t step = 1; step <= 60; ++step) {
      const double t = double(step);
      w.add_scalar("rank_loss", step, 0.69 * std::exp(-t / 25) + 0.02 * std::sin(t), 1.7e9 + t);
      w.add_scalar("accuracy", step, 0.5 + 0.4 * (1 - std::exp(-t / 20)), 1.7e9 + t);
      w.add_scalar("chosen_reward", step, 0.03 * t, 1.7e9 + t);
      w.add_scalar("learning_rate", step, 1e-4 * (1 - t / 60), 1.7e9 + t);
      if (step % 10 == 0) w.add_scalar("validation/accuracy", step, 0.5 + t / 200, 1.7e9 + t);
    }
  }
  {
    track::EventWriter w(tensorboard_dir(dir.string(), "train_policy"));
    for (int64_t step = 1; step <= 40; ++step) {
      const double t = double(step);
      w.add_scalar("reward", step, -0.5 + t / 40 + 0.1 * std::sin(t * 1.3), 1.7e9 + t);
      w.add_scalar("kl_loss", step, 0.002 * t, 1.7e9 + t);
      w.add_scalar("rl_loss", step, 0.3 * std::cos(t / 5), 1.7e9 + t);
      w.add_scalar("objective/kl", step, 0.01 * t, 1.7e9 + t);
      w.add_scalar("objective/entropy", step, 2.5 - t / 40, 1.7e9 + t);
      w.add_scalar("response_length", step, 48 - t / 4, 1.7e9 + t);
      w.add_scalar("policy/clipfrac", step, 0.1, 1.7e9 + t);
      w.add_scalar("loss/value", step, 1 / t, 1.7e9 + t);
    }
  }

  // The side-by-side: more rows than the page shows; row 3 answers with a script.
  std::string lines;
  for (int i = 1; i <= kSxsRows; ++i) {
    json r = {{"id", i},
              {"input_text", "Post " + std::to_string(i) + ": my landlord & I disagree about the deposit."},
              {"response_a", "The landlord keeps the deposit."},
              {"response_b", i == 3 ? "<script>alert('x')</script> I want my deposit back." : "I want my deposit back."},
              {"words_a", 5},
              {"words_b", i == 7 ? 60 : 5},
              {"score_a", 0.1 * (i % 5)},
              {"score_b", 0.2}};
    lines += r.dump() + "\n";
  }
  write_text(dir / "sxs" / "sxs.jsonl", lines);
  eval::SxsSummary s;
  s.rows = kSxsRows;
  s.join_on = "input_text";
  s.a.label = "smollm2 (untuned)";
  s.b.label = "smollm2 + policy";
  s.a.mean_words = 5;
  s.b.mean_words = 5.46;
  s.b.over_max_words = 1.0 / kSxsRows;
  s.a.mean_score = 0.2;
  s.b.mean_score = 0.2;
  s.reward_model = "train_reward/model";
  s.b_higher = 0.4, s.a_higher = 0.4, s.ties = 0.2;
  write_text(dir / "sxs" / "summary.json", s.to_json().dump(2));

  std::vector<eval::Judgment> judgments;
  for (int i = 1; i <= 5; ++i) {
    eval::Judgment j;
    j.id = std::to_string(i);
    j.context = "Post " + std::to_string(i);
    j.response_a = "The landlord keeps the deposit.";
    j.response_b = "I want my deposit back.";
    j.prob_a_first = i % 2 ? 0.2 : 0.7;
    j.prob_a_second = i % 2 ? 0.3 : 0.8;
    j.verdict = eval::combine_orders(j.prob_a_first, j.prob_a_second);
    j.explanation = "Response " + std::string(i % 2 ? "B" : "A") + " keeps the poster's voice & is shorter.";
    j.human = i % 3 ? eval::Choice::B : eval::Choice::A;
    judgments.push_back(j);
  }
  eval::write_autosxs_output((dir / "autosxs").string(), judgments,
                             eval::summarize(judgments, "judge-model", eval::JudgeTask::Summarization));
  // The manifests last: autosxs refuses to write into a folder holding other files.
  Manifest v = manifest("validate", "done", "key-validate");
  v.metrics = {{"preference_pairs", 64}, {"prompts", 40}};
  write_manifest(dir.string(), v);
  Manifest rm = manifest("train_reward", "done", "key-train_reward");
  rm.metrics = {{"rank_loss", 0.4123}, {"validation", {{"accuracy", 0.75}}}};
  write_manifest(dir.string(), rm);
  Manifest pol = manifest("train_policy", "failed", "key-train_policy");
  pol.error = "CUDA out of memory <tried to allocate 2.00 GiB>";
  write_manifest(dir.string(), pol);
  Manifest running = manifest("infer_untuned", "running", "key-infer_untuned");
  running.started = utc_now();
  write_manifest(dir.string(), running);
  write_manifest(dir.string(), manifest("sxs", "done", "key-sxs"));
  write_manifest(dir.string(), manifest("autosxs", "done", "key-autosxs"));
  write_manifest(dir.string(), manifest("export", "done", "an-older-key"));
  return dir;
}

TEST(Report, ChartsStatesParametersAndTables) {
  const fs::path dir = make_run(testing::scratch_dir() / "run");
  std::string page;
  {
    RunLock lock(dir);
    page = render_report(dir.string());
  }

  // One chart per tag, each once, the seed's tags first.
  for (const auto* tags : {&kRewardTags, &kPolicyTags})
    for (const auto& t : *tags) EXPECT_EQ(count(page, "<svg class=\"chart\" data-tag=\"" + t + "\""), 1u) << t;
  EXPECT_EQ(count(page, "<svg class=\"chart\""), kRewardTags.size() + kPolicyTags.size());
  auto pos = [&](const std::string& t) { return page.find("data-tag=\"" + t + "\""); };
  EXPECT_LT(pos("rank_loss"), pos("accuracy"));
  EXPECT_LT(pos("accuracy"), pos("validation/accuracy"));
  EXPECT_LT(pos("validation/accuracy"), pos("chosen_reward"));
  EXPECT_LT(pos("chosen_reward"), pos("learning_rate"));
  EXPECT_LT(pos("learning_rate"), pos("reward")) << "the reward model's stage comes first, as planned";
  for (size_t i = 1; i < kPolicyTags.size(); ++i) EXPECT_LT(pos(kPolicyTags[i - 1]), pos(kPolicyTags[i])) << kPolicyTags[i];

  // A chart: its title, the last value, axes, min and max.
  const size_t chart = pos("validation/accuracy");
  const std::string svg = page.substr(chart, page.find("</svg>", chart) - chart);
  EXPECT_NE(svg.find(">validation/accuracy</text>"), std::string::npos) << svg;
  EXPECT_NE(svg.find(">last 0.8</text>"), std::string::npos) << svg;
  EXPECT_NE(svg.find(">0.55</text>"), std::string::npos) << "the minimum, step 10";
  EXPECT_NE(svg.find(">0.8</text>"), std::string::npos) << "the maximum";
  EXPECT_NE(svg.find("class=\"axis\""), std::string::npos);
  EXPECT_NE(svg.find(">10</text>"), std::string::npos) << "the first step";
  EXPECT_NE(svg.find(">60</text>"), std::string::npos) << "the last step";

  // The stages: the graph's boxes and the table's rows, by state.
  const std::map<std::string, std::string> states = {{"validate", "done"},      {"train_reward", "done"},
                                                     {"train_policy", "failed"}, {"infer_untuned", "running"},
                                                     {"infer_tuned", "pending"}, {"sxs", "done"},
                                                     {"autosxs", "done"},        {"export", "stale"}};
  for (const auto& [name, state] : states) {
    EXPECT_EQ(count(page, "data-stage=\"" + name + "\" data-state=\"" + state + "\""), 2u) << name;
  }
  EXPECT_EQ(count(page, "<g class=\"node "), states.size());
  EXPECT_NE(page.find("<g class=\"node pending\" data-stage=\"export\""), std::string::npos) << "stale is drawn as pending";
  EXPECT_NE(page.find("stale (runs again)"), std::string::npos);
  EXPECT_EQ(count(page, "class=\"edge\""), 7u) << "one arrow per dependency";
  EXPECT_NE(page.find("data-from=\"train_reward\" data-to=\"sxs\""), std::string::npos);
  // The failure's text under the graph, escaped; the headline metrics; the wall time.
  const size_t err = page.find("class=\"error stage-error\" data-stage=\"train_policy\"");
  ASSERT_NE(err, std::string::npos);
  EXPECT_LT(page.find("id=\"dag\""), err);
  EXPECT_LT(err, page.find("id=\"stage-table\""));
  EXPECT_NE(page.find("CUDA out of memory &lt;tried to allocate 2.00 GiB&gt;"), std::string::npos);
  EXPECT_NE(page.find("<span class=\"k\">rank_loss</span> 0.4123"), std::string::npos);
  EXPECT_NE(page.find("<span class=\"k\">validation.accuracy</span> 0.75"), std::string::npos);
  EXPECT_NE(page.find("5 min 30 s"), std::string::npos);

  // The parameters, flattened; the spec path; the model.
  EXPECT_NE(page.find("<tr><th>kl_coeff</th><td>0.05</td></tr>"), std::string::npos);
  EXPECT_NE(page.find("<tr><th>advanced.seed</th><td>1234</td></tr>"), std::string::npos);
  EXPECT_NE(page.find("<tr><th>autosxs.judge</th><td>judge-model</td></tr>"), std::string::npos);
  EXPECT_NE(page.find("<tr><th>instruction</th><td>Summarize in less than 50 words.</td></tr>"), std::string::npos);
  EXPECT_NE(page.find("<tr><th>model.context_length</th><td>8192</td></tr>"), std::string::npos);
  EXPECT_NE(page.find("/models/SmolLM2-135M-Instruct.Q4_1.gguf (gguf)"), std::string::npos);

  // The side-by-side: the summary, 100 rows, escaped.
  EXPECT_EQ(table_rows(page, "id=\"sxs\""), 100u);
  EXPECT_NE(page.find("The first 100 of 120 rows"), std::string::npos);
  EXPECT_NE(page.find("<th>mean reward</th><td class=\"a\">0.200</td><td class=\"b\">0.200</td>"), std::string::npos);
  EXPECT_NE(page.find("B's reward is higher on 40.0 %"), std::string::npos);
  EXPECT_NE(page.find("smollm2 + policy"), std::string::npos);
  EXPECT_NE(page.find("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; I want my deposit back."), std::string::npos);
  EXPECT_NE(page.find("my landlord &amp; I disagree"), std::string::npos);
  EXPECT_NE(page.find("<td class=\"num over\">60</td>"), std::string::npos) << "over max_words marked";

  // AutoSxS: the shares, the agreement with the humans, the judgments with explanations.
  EXPECT_NE(page.find("Judge <b>judge-model</b>, task summarization, 5 pairs"), std::string::npos);
  EXPECT_NE(page.find("position consistency 100.0 %"), std::string::npos);
  EXPECT_EQ(page.find("class=\"warning\""), std::string::npos) << "a judge consistent on every pair";
  EXPECT_NE(page.find("Agreement with the human labels"), std::string::npos);
  EXPECT_NE(page.find("cohens_kappa"), std::string::npos);
  EXPECT_EQ(table_rows(page, "id=\"judgments\""), 5u);
  EXPECT_NE(page.find("keeps the poster&#39;s voice &amp; is shorter."), std::string::npos);

  // Self-contained: no script, no stylesheet or image fetched, nothing from the network.
  EXPECT_EQ(page.find("<script"), std::string::npos);
  EXPECT_EQ(page.find("<link"), std::string::npos);
  EXPECT_EQ(page.find("@import"), std::string::npos);
  EXPECT_FALSE(std::regex_search(page, std::regex(R"(url\(\s*['"]?[^#'"\s])"))) << "url() only for the page's own #ids";
  EXPECT_FALSE(std::regex_search(page, std::regex(R"((src|href)\s*=\s*["']?\s*(https?:)?//)", std::regex::icase)));
  EXPECT_EQ(page.find("http://"), std::string::npos);
  EXPECT_EQ(page.find("https://"), std::string::npos);
}

TEST(Report, ARunWithOnlyItsPlan) {
  const fs::path dir = testing::scratch_dir();
  write_text(dir / "plan.json", make_plan().to_json().dump(2));
  std::string page;
  ASSERT_NO_THROW(page = render_report(dir.string()));
  EXPECT_EQ(count(page, "data-state=\"pending\""), 2 * make_plan().stages.size());
  EXPECT_EQ(count(page, "<svg class=\"chart\""), 0u);
  EXPECT_EQ(count(page, "No curves yet."), 2u) << "train_reward and train_policy";
  EXPECT_NE(page.find("Pending: this appears when the sxs stage is done."), std::string::npos);
  EXPECT_NE(page.find("Pending: this appears when the autosxs stage is done."), std::string::npos);
  EXPECT_EQ(page.find("class=\"error"), std::string::npos);
  EXPECT_NE(page.find("<tr><th>kl_coeff</th><td>0.05</td></tr>"), std::string::npos);

  // Without an eval_dataset there is no side-by-side to wait for.
  Plan p = make_plan();
  p.spec.eval_dataset.clear();
  p.stages.resize(3);
  write_text(dir / "plan.json", p.to_json().dump(2));
  page = render_report(dir.string());
  EXPECT_NE(page.find("Not planned: the spec has no eval_dataset"), std::string::npos);
}

TEST(Report, MissingPlanIsAnErrorNamingIt) {
  const fs::path dir = testing::scratch_dir();
  try {
    render_report(dir.string());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find((dir / "plan.json").string()), std::string::npos) << e.what();
  }
  EXPECT_THROW(write_report(dir.string()), Error);
  EXPECT_FALSE(fs::exists(dir / "report.html"));
}

TEST(Report, CorruptFilesAreNotesInThePage) {
  const fs::path dir = make_run(testing::scratch_dir() / "run");
  write_text(dir / "train_reward" / "manifest.json", "{\"stage\": \"train_reward\", \"state\": ");
  write_text(dir / "sxs" / "summary.json", "not json");
  write_text(dir / "autosxs" / "metrics.json", "[1, 2");
  {
    std::ofstream f(dir / "autosxs" / "judgments.jsonl", std::ios::app);
    f << "{broken\n";
  }
  // A second event file with a bad CRC next to the good one: the good one's charts stay.
  write_text(tensorboard_dir(dir.string(), "train_policy") + "/events.out.tfevents.2.host.1.rlhf",
             std::string("\x10\0\0\0\0\0\0\0garbage-garbage-garbage-garbage", 40));
  std::string page;
  ASSERT_NO_THROW(page = render_report(dir.string()));
  EXPECT_NE(page.find("data-stage=\"train_reward\" data-state=\"unreadable\""), std::string::npos);
  EXPECT_NE(page.find("manifest unreadable"), std::string::npos);
  EXPECT_NE(page.find("train_reward/manifest.json: not valid JSON"), std::string::npos);
  EXPECT_NE(page.find("sxs/summary.json: not valid JSON"), std::string::npos);
  EXPECT_NE(page.find("autosxs/metrics.json: not valid JSON"), std::string::npos);
  EXPECT_NE(page.find("autosxs/judgments.jsonl line 6"), std::string::npos);
  EXPECT_NE(page.find("events.out.tfevents.2.host.1.rlhf"), std::string::npos) << "the bad event file is named";
  for (const auto& t : kPolicyTags) EXPECT_EQ(count(page, "data-tag=\"" + t + "\""), 1u) << t;
  EXPECT_EQ(table_rows(page, "id=\"sxs\""), 100u) << "the rows still shown without the summary";

  // A corrupt plan: a page that says so, with what else there is.
  write_text(dir / "plan.json", "{\"stages\": [");
  ASSERT_NO_THROW(page = render_report(dir.string()));
  EXPECT_NE(page.find("plan.json: not valid JSON"), std::string::npos);
  EXPECT_NE(page.find("data-tag=\"rank_loss\""), std::string::npos);
  EXPECT_EQ(table_rows(page, "id=\"sxs\""), 100u);
}

TEST(Report, AnInconsistentJudgeIsAWarning) {
  const fs::path dir = make_run(testing::scratch_dir() / "run");
  // The judge prefers the response shown first on 3 of 4 pairs: 1 of 4 consistent.
  std::vector<eval::Judgment> judgments;
  for (const auto& [first, second] : std::vector<std::pair<double, double>>{{0.9, 0.2}, {0.8, 0.1}, {0.7, 0.4}, {0.3, 0.2}}) {
    eval::Judgment j;
    j.id = std::to_string(judgments.size() + 1);
    j.prob_a_first = first, j.prob_a_second = second;
    j.verdict = eval::combine_orders(first, second);
    judgments.push_back(j);
  }
  const eval::AutoSxsSummary s = eval::summarize(judgments, "judge-model", eval::JudgeTask::Summarization);
  ASSERT_FALSE(s.judge_warning.empty());
  eval::write_autosxs_files((dir / "autosxs").string(), judgments, s);
  const std::string page = render_report(dir.string());
  EXPECT_NE(page.find("position consistency 25.0 %"), std::string::npos);
  const size_t w = page.find("<p class=\"warning\">Warning: the judge agreed with itself across the two orders on 25.0% of 4 pairs");
  ASSERT_NE(w, std::string::npos);
  EXPECT_LT(page.find("<section id=\"autosxs\">"), w);
  EXPECT_NE(page.find("autosxs.judge", w), std::string::npos);
}

TEST(Report, CachedStaleAndInterruptedStates) {
  const fs::path dir = testing::scratch_dir();
  Plan p = make_plan();
  p.stages.resize(4);  // validate, train_reward, train_policy, infer_untuned
  write_text(dir / "plan.json", p.to_json().dump(2));
  write_text(dir / "spec.yaml", "kl_coeff: 0.05\n");  // this run began now
  Manifest old = manifest("validate", "done", "key-validate");
  old.finished = "2020-01-01T00:00:00Z";  // before this run: reused
  write_manifest(dir.string(), old);
  Manifest fresh = manifest("train_reward", "done", "key-train_reward");
  fresh.finished = "2099-01-01T00:00:00Z";  // finished in this run
  write_manifest(dir.string(), fresh);
  Manifest changed = manifest("train_policy", "done", "key-from-other-parameters");
  write_manifest(dir.string(), changed);
  Manifest running = manifest("infer_untuned", "running", "key-infer_untuned");
  running.started = utc_now();
  write_manifest(dir.string(), running);
  const std::string page = render_report(dir.string());
  EXPECT_NE(page.find("<g class=\"node cached\" data-stage=\"validate\""), std::string::npos);
  EXPECT_NE(page.find("<g class=\"node done\" data-stage=\"train_reward\""), std::string::npos);
  EXPECT_NE(page.find("<g class=\"node pending\" data-stage=\"train_policy\" data-state=\"stale\""), std::string::npos);
  EXPECT_NE(page.find("<g class=\"node interrupted\" data-stage=\"infer_untuned\""), std::string::npos)
      << "running, but no run holds the directory";
  EXPECT_NE(page.find("the next run with the same spec resumes it"), std::string::npos);
  EXPECT_NE(page.find("<span class=\"badge cached\">1 cached</span>"), std::string::npos);
  EXPECT_NE(page.find("spec</th><td>" + (dir / "spec.yaml").string()), std::string::npos)
      << "the spec as run, when plan.json does not name the original";
}

// Once train_policy is done the report says how to serve the tuned policy; before, it does not.
TEST(Report, ADoneTunedPolicyComesWithTheCommandThatServesIt) {
  const fs::path dir = testing::scratch_dir() / "run dir";
  Plan p = make_plan();
  p.stages.resize(3);  // validate, train_reward, train_policy
  write_text(dir / "plan.json", p.to_json().dump(2));
  write_manifest(dir.string(), manifest("train_policy", "running", "key-train_policy"));
  EXPECT_EQ(render_report(dir.string()).find("id=\"serve\""), std::string::npos);
  write_manifest(dir.string(), manifest("train_policy", "done", "key-train_policy"));
  const std::string page = render_report(dir.string());
  const std::string want = "rlhf serve --adapter &#39;tuned=" + (dir / "train_policy").string() + "&#39;";
  EXPECT_NE(page.find("id=\"serve\""), std::string::npos);
  EXPECT_NE(page.find(want), std::string::npos) << "the run directory holds a space: the argument is quoted";
  EXPECT_EQ(serve_command("runs/demo"), "rlhf serve --adapter tuned=runs/demo/train_policy");
}

TEST(Report, ChartsOfLongFlatAndNonFiniteSeries) {
  const fs::path dir = testing::scratch_dir();
  Plan p = make_plan();
  p.stages.resize(2);
  write_text(dir / "plan.json", p.to_json().dump(2));
  {
    track::EventWriter w(tensorboard_dir(dir.string(), "train_reward"));
    for (int64_t step = 0; step < 5000; ++step) w.add_scalar("rank_loss", step, std::sin(double(step) / 50), 1.7e9);
    for (int64_t step = 0; step < 5; ++step) w.add_scalar("flat", step, 2.5, 1.7e9);
    w.add_scalar("single", 7, -3, 1.7e9);
    for (int64_t step = 0; step < 6; ++step)
      w.add_scalar("diverged", step, step == 3 ? std::nan("") : double(step), 1.7e9);
    w.add_scalar("all_nan", 1, std::nan(""), 1.7e9);
    w.add_scalar("resumed", 1, 1.0, 1.7e9);
    w.add_scalar("resumed", 2, 9.0, 1.7e9);
    w.add_scalar("resumed", 2, 2.0, 1.7e9);  // a resumed run logs step 2 again: the later value counts
  }
  const std::string page = render_report(dir.string());
  auto chart = [&](const std::string& tag) {
    const size_t at = page.find("data-tag=\"" + tag + "\"");
    EXPECT_NE(at, std::string::npos) << tag;
    return at == std::string::npos ? std::string() : page.substr(at, page.find("</svg>", at) - at);
  };
  const std::string big = chart("rank_loss");
  const size_t line = big.find("class=\"line\" d=\"");
  ASSERT_NE(line, std::string::npos);
  const std::string d = big.substr(line, big.find("\"/>", line) - line);
  EXPECT_LE(count(d, " L") + 1, 1200u) << "thinned";
  EXPECT_GE(count(d, " L") + 1, 400u);
  EXPECT_NE(big.find("5000 points, steps 0 to 4999"), std::string::npos);
  EXPECT_NE(big.find(">4999</text>"), std::string::npos);
  EXPECT_NE(chart("flat").find(">last 2.5</text>"), std::string::npos);
  EXPECT_NE(chart("single").find("<circle"), std::string::npos);
  const std::string div = chart("diverged");
  EXPECT_EQ(count(div, " M"), 1u) << "the line breaks at the NaN";
  EXPECT_NE(div.find("1 not finite"), std::string::npos);
  EXPECT_NE(chart("all_nan").find("no finite values"), std::string::npos);
  EXPECT_NE(chart("all_nan").find(">last NaN</text>"), std::string::npos);
  const std::string resumed = chart("resumed");
  EXPECT_NE(resumed.find(">last 2</text>"), std::string::npos);
  EXPECT_EQ(resumed.find(">9</text>"), std::string::npos) << resumed;
}

TEST(Status, OneRuleForAStagesState) {
  Manifest m;
  m.key = "k1";
  m.state = "done";
  EXPECT_EQ(stage_state(nullptr, "k1", false), "pending");
  EXPECT_EQ(stage_state(&m, "k1", false), "done");
  EXPECT_EQ(stage_state(&m, "k2", false), "stale");
  EXPECT_EQ(stage_state(&m, "", false), "done") << "a plan without a key trusts the manifest";
  m.state = "running";
  EXPECT_EQ(stage_state(&m, "k1", true), "running");
  EXPECT_EQ(stage_state(&m, "k1", false), "interrupted");
  EXPECT_EQ(stage_state(&m, "k2", true), "stale");
  m.state = "failed";
  EXPECT_EQ(stage_state(&m, "k1", false), "failed");
}

TEST(Report, WriteReportIsAtomic) {
  const fs::path dir = make_run(testing::scratch_dir() / "run");
  write_text(dir / "report.html", "an older report");
  write_report(dir.string());
  const std::string page = testing::read_text(dir / "report.html");
  EXPECT_EQ(page.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(page.find("</html>"), std::string::npos);
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

// ---- the page in a browser --------------------------------------------------------------

TEST(Report, RendersInHeadlessChromium) {
  if (testing::run("command -v chromium >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "chromium is not installed (scripts/setup --dev installs it)";
  const fs::path scratch = testing::scratch_dir();
  const fs::path dir = make_run(scratch / "run");
  {
    RunLock lock(dir);
    write_report(dir.string());
  }
  const std::string page = "file://" + fs::absolute(dir / "report.html").string();
  const std::string chromium = "timeout 60 chromium --headless --no-sandbox --disable-gpu --user-data-dir=" +
                               (scratch / "profile").string() + " ";
  const fs::path png = scratch / "page.png";
  ASSERT_EQ(testing::run(chromium + "--screenshot=" + png.string() + " --window-size=1280,2400 '" + page + "' 2>" +
                         (scratch / "screenshot.log").string() + " >&2"),
            0)
      << testing::read_text(scratch / "screenshot.log");
  const std::string bytes = testing::read_text(png);
  EXPECT_GT(bytes.size(), 30000u);
  std::string why;
  auto img = testing::decode_png(bytes, &why);
  ASSERT_TRUE(img) << why;
  EXPECT_EQ(img->width, 1280u);
  EXPECT_EQ(img->height, 2400u);
  std::set<uint32_t> colours;
  bool done = false, failed = false, running = false, line = false, header = false;
  auto near = [](const uint8_t* px, int r, int g, int b) {
    return std::abs(px[0] - r) <= 3 && std::abs(px[1] - g) <= 3 && std::abs(px[2] - b) <= 3;
  };
  for (size_t i = 0; i < img->rgb.size(); i += 3) {
    const uint8_t* px = &img->rgb[i];
    colours.insert((uint32_t(px[0]) << 16) | (uint32_t(px[1]) << 8) | px[2]);
    done |= near(px, 0x3a, 0x9a, 0x5b);     // a done stage's border
    failed |= near(px, 0xc0, 0x39, 0x2b);   // the failed one's
    running |= near(px, 0x3d, 0x7b, 0xe0);  // the running one's, and the curves
    line |= near(px, 0x2f, 0x3b, 0x52);     // a table head
    header |= near(px, 0xe3, 0xf4, 0xe3);   // a done stage's fill
  }
  EXPECT_GT(colours.size(), 100u) << "text, boxes and curves in several colours, antialiased";
  EXPECT_TRUE(done && failed && running && line && header) << "the page's own colours are on screen (the CSS applied)";

  // The DOM as the browser built it, and what its console said.
  int rc = 0;
  const fs::path log = scratch / "dom.log";
  const std::string dom =
      testing::capture(chromium + "--enable-logging=stderr --v=0 --dump-dom '" + page + "' 2>" + log.string(), &rc);
  ASSERT_EQ(rc, 0) << testing::read_text(log);
  EXPECT_EQ(count(dom, "<svg class=\"chart\" data-tag=\""), kRewardTags.size() + kPolicyTags.size());
  EXPECT_EQ(count(dom, "<g class=\"node "), make_plan().stages.size());
  EXPECT_EQ(table_rows(dom, "id=\"sxs\""), 100u);
  EXPECT_EQ(table_rows(dom, "id=\"judgments\""), 5u);
  EXPECT_NE(dom.find("&lt;script&gt;alert('x')&lt;/script&gt;"), std::string::npos) << "shown as text, not run";
  const std::string console = testing::read_text(log);
  EXPECT_EQ(console.find(":CONSOLE"), std::string::npos) << console;
  EXPECT_EQ(console.find("Uncaught"), std::string::npos) << console;

  // That the console reaches the log at all: a page with an error, the same flags.
  write_text(scratch / "bad.html", "<p>x</p><script>undefinedFunction();</script>");
  const std::string bad = "file://" + fs::absolute(scratch / "bad.html").string();
  testing::capture(chromium + "--enable-logging=stderr --v=0 --dump-dom '" + bad + "' 2>" + log.string(), &rc);
  if (testing::read_text(log).find("Uncaught") == std::string::npos)
    GTEST_SKIP() << "this chromium does not log console errors to stderr; the check above proves nothing here";
}

}  // namespace
}  // namespace rlhf::pipeline
