// The run report's sections on the run itself: the stages (graph and table), the training
// curves, the parameters.
#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>

#include "rlhf/pipeline/report_parts.h"
#include "rlhf/pipeline/spec.h"
#include "rlhf/track/tensorboard.h"
#include "rlhf/util/html.h"

namespace rlhf::pipeline::report {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr size_t kChartPoints = 1200;  // beyond this a series is thinned (min and max per bucket)

// The graph's boxes: the stage's state, and its wall time once it has one.
std::string dag_svg(const std::vector<StageView>& stages, int64_t now) {
  std::vector<html::GraphNode> nodes;
  for (const StageView& s : stages) {
    std::string sub = s.state == "unreadable" ? "unreadable" : state_label(s);
    if (s.manifest && (s.state == "done" || s.state == "cached" || s.state == "running" || s.state == "failed"))
      if (double w = wall_seconds(s, now); w > 0) sub += " · " + html::duration(w);
    nodes.push_back({s.name, s.title, s.state, state_class(s.state), sub, s.deps});
  }
  return html::graph_svg(nodes);
}

std::string metrics_cell(const json& metrics) {
  if (!metrics.is_object() || metrics.empty()) return "";
  std::vector<std::pair<std::string, std::string>> flat;
  flatten(metrics, "", flat);
  std::string h;
  for (const auto& [k, v] : flat)
    h += fmt::format("<span class=\"metric\"><span class=\"k\">{}</span> {}</span> ", esc(k), esc(v));
  return h;
}

// The seed's tags first, in this order; then the rest alphabetically.
const std::vector<std::string>& leading_tags(const std::string& stage) {
  static const std::vector<std::string> reward = {"rank_loss", "accuracy", "validation/accuracy"};
  // ppo, grpo and rloo (reward, KL when measured), then dpo's (TRL's DPOTrainer names).
  static const std::vector<std::string> policy = {"reward",          "kl_loss",           "rl_loss",         "objective/kl",
                                                  "objective/kl_k3", "objective/entropy", "response_length", "loss",
                                                  "rewards/accuracies", "rewards/margins", "rewards/chosen",
                                                  "rewards/rejected"};
  static const std::vector<std::string> both = [] {
    std::vector<std::string> v = reward;
    v.insert(v.end(), policy.begin(), policy.end());
    return v;
  }();
  if (stage == "train_reward") return reward;
  if (stage == "train_policy") return policy;
  return both;
}

std::vector<html::Series> order_series(std::map<std::string, std::map<int64_t, double>> by_tag, const std::string& stage) {
  std::vector<html::Series> out;
  for (const auto& t : leading_tags(stage)) {
    auto it = by_tag.find(t);
    if (it == by_tag.end()) continue;
    out.push_back({t, {it->second.begin(), it->second.end()}});
    by_tag.erase(it);
  }
  for (auto& [t, pts] : by_tag) out.push_back({t, {pts.begin(), pts.end()}});
  return out;
}

}  // namespace

std::string stages_section(const std::vector<StageView>& stages, int64_t now) {
  std::string h = "<section id=\"stages\">\n<h2>Stages</h2>\n";
  if (stages.empty()) return h + "<p class=\"muted\">The plan lists no stages.</p>\n</section>\n";
  h += dag_svg(stages, now);
  h += "<div class=\"legend\">";
  bool interrupted = false;
  for (const auto& s : stages) interrupted |= s.state == "interrupted";
  for (const char* s : {"done", "cached", "running", "interrupted", "failed", "pending"})
    if (std::string(s) != "interrupted" || interrupted) h += fmt::format("<span class=\"badge {0}\">{0}</span>", s);
  h += "</div>\n";
  if (interrupted)
    h += "<p class=\"notes\">Interrupted: the stage was running when its run stopped; the next run with the same spec "
         "resumes it.</p>\n";
  for (const auto& s : stages) {
    if (s.state == "failed" && s.manifest)
      h += fmt::format("<div class=\"error stage-error\" data-stage=\"{}\"><b>{} failed</b>{}: {}</div>\n", esc(s.name),
                       esc(s.name),
                       s.manifest->finished.empty() ? "" : " at " + esc(s.manifest->finished),
                       esc(s.manifest->error.empty() ? "no error recorded" : s.manifest->error));
    if (s.state == "unreadable") h += fmt::format("<div class=\"error stage-error\" data-stage=\"{}\">{}</div>\n", esc(s.name), esc(s.note));
  }
  h += "<table class=\"stages\" id=\"stage-table\">\n<thead><tr><th>#</th><th>stage</th><th>state</th><th>attempts</th>"
       "<th>finished</th><th>wall time</th><th>headline metrics</th></tr></thead>\n<tbody>\n";
  for (size_t i = 0; i < stages.size(); ++i) {
    const StageView& s = stages[i];
    const Manifest* m = s.manifest ? &*s.manifest : nullptr;
    std::string when;
    if (m) when = s.state == "running" ? "started " + m->started : m->finished;
    const double w = wall_seconds(s, now);
    h += fmt::format("<tr data-stage=\"{}\" data-state=\"{}\"><td>{}</td><td><b>{}</b><br><small class=\"muted\">{}</small></td>"
                     "<td><span class=\"badge {}\">{}</span></td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td>"
                     "<td>{}</td></tr>\n",
                     esc(s.name), esc(s.state), i + 1, esc(s.name), esc(s.title), state_class(s.state), esc(state_label(s)),
                     m && m->attempts ? std::to_string(m->attempts) : "", esc(when),
                     m && w > 0 ? html::duration(w) : "", m ? metrics_cell(m->metrics) : "");
  }
  h += "</tbody>\n</table>\n</section>\n";
  return h;
}

std::string curves_section(const std::string& run_dir, const std::vector<StageView>& stages) {
  std::string h = "<section id=\"curves\">\n<h2>Training curves</h2>\n";
  const fs::path tb = fs::path(run_dir) / "tensorboard";
  std::error_code ec;
  // The plan's stages with curves or expected to have them, then any other folder.
  std::vector<std::string> names;
  std::set<std::string> listed;
  for (const auto& s : stages)
    if (fs::is_directory(tensorboard_dir(run_dir, s.name), ec) || s.name.rfind("train_", 0) == 0)
      names.push_back(s.name), listed.insert(s.name);
  std::vector<std::string> others;
  if (fs::is_directory(tb, ec))
    for (const auto& e : fs::directory_iterator(tb, ec))
      if (e.is_directory(ec) && !listed.count(e.path().filename().string())) others.push_back(e.path().filename().string());
  std::sort(others.begin(), others.end());
  names.insert(names.end(), others.begin(), others.end());
  if (names.empty()) h += "<p class=\"muted\">No stage of this run logs curves.</p>\n";
  for (const auto& name : names) {
    const StageView* sv = nullptr;
    for (const auto& s : stages)
      if (s.name == name) sv = &s;
    h += fmt::format("<h3>{}{}</h3>\n", esc(name), sv && !sv->title.empty() ? " <small>" + esc(sv->title) + "</small>" : "");
    const fs::path dir = tensorboard_dir(run_dir, name);
    std::vector<std::string> files;
    if (fs::is_directory(dir, ec))
      for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
        if (it->is_regular_file(ec) && it->path().filename().string().find("tfevents") != std::string::npos)
          files.push_back(it->path().string());
    std::sort(files.begin(), files.end());
    std::map<std::string, std::map<int64_t, double>> by_tag;
    std::string errors;
    for (const auto& f : files) {
      try {
        for (const auto& p : track::read_scalars(f)) by_tag[p.tag][p.step] = p.value;
      } catch (const std::exception& e) {
        errors += fmt::format("<p class=\"error\">{}</p>\n", esc(e.what()));
      }
    }
    h += errors;
    if (by_tag.empty()) {
      const bool waiting = !sv || sv->state == "pending" || sv->state == "stale" || sv->state == "running" ||
                           sv->state == "interrupted";
      h += fmt::format("<p class=\"muted\">No curves {}.</p>\n", waiting ? "yet" : "were logged");
      continue;
    }
    h += "<div class=\"charts\">\n";
    for (const auto& s : order_series(std::move(by_tag), name)) h += html::line_chart_svg(s, kChartPoints);
    h += "</div>\n";
  }
  h += "</section>\n";
  return h;
}

namespace {

// A key both trainers have, with a value for each ({"train_reward": .., "train_policy": ..}).
bool per_trainer(const json& v) {
  return v.is_object() && v.size() == 2 && v.contains("train_reward") && v.contains("train_policy");
}

void add_value(std::vector<std::pair<std::string, std::string>>& rows, const std::string& key, const json& v) {
  if (per_trainer(v)) {
    rows.emplace_back(key + " (train_reward)", value_text(v["train_reward"]));
    rows.emplace_back(key + " (train_policy)", value_text(v["train_policy"]));
  } else {
    rows.emplace_back(key, value_text(v));
  }
}

}  // namespace

std::string params_section(const json& plan) {
  std::string h = "<section id=\"params\">\n<h2>Parameters</h2>\n<div class=\"params\">\n";
  using Rows = std::vector<std::pair<std::string, std::string>>;
  auto table = [&](const Rows& rows, const std::string& caption, const std::string& id) {
    h += fmt::format("<table id=\"{}\">\n<caption>{}</caption>\n<tbody>\n", esc(id), esc(caption));
    for (const auto& [k, v] : rows)
      h += fmt::format("<tr><th>{}</th><td>{}</td></tr>\n", esc(k), v.empty() ? "<span class=\"muted\">-</span>" : esc(v));
    h += "</tbody>\n</table>\n";
  };
  const json spec = plan.is_object() && plan.contains("spec") ? plan["spec"] : json();
  if (spec.is_object()) {
    // The keys in the spec's own order (spec_key_order: the seed's parameters first, then the
    // settings tables' rows), then any other value, then each block.
    Rows top;
    std::set<std::string> shown;
    for (const auto& k : spec_key_order())
      if (k.find('.') == std::string::npos)
        if (auto it = spec.find(k); it != spec.end() && (!it->is_object() || per_trainer(*it)))
          add_value(top, k, *it), shown.insert(k);
    for (auto it = spec.begin(); it != spec.end(); ++it)
      if (!it->is_object() && !shown.count(it.key())) top.emplace_back(it.key(), value_text(*it));
    table(top, "The spec, defaults filled in", "spec-params");
    // The blocks, advanced last; the model and data before it (the columns balance better).
    std::vector<std::string> blocks;
    for (const char* k : {"rlaif", "autosxs"})
      if (spec.contains(k) && spec[k].is_object()) blocks.push_back(k);
    for (auto it = spec.begin(); it != spec.end(); ++it)
      if (it->is_object() && it.key() != "advanced" && std::find(blocks.begin(), blocks.end(), it.key()) == blocks.end())
        blocks.push_back(it.key());
    for (const auto& b : blocks) {
      Rows rows;
      flatten(spec[b], b, rows);
      table(rows, b, "spec-" + b);
    }
  } else {
    h += "<p class=\"muted\">plan.json holds no spec.</p>\n";
  }
  json md = json::object();
  if (plan.is_object()) {
    if (plan.contains("model")) md["model"] = plan["model"];
    if (plan.contains("data")) md["data"] = plan["data"];
  }
  if (!md.empty()) {
    Rows rows;
    flatten(md, "", rows);
    table(rows, "Model and data, as compiled", "model-data");
  }
  if (spec.is_object() && spec.contains("advanced") && spec["advanced"].is_object()) {
    const json& adv = spec["advanced"];
    Rows rows;
    std::set<std::string> shown;
    for (const auto& k : spec_key_order())
      if (k.rfind("advanced.", 0) == 0)
        if (auto it = adv.find(k.substr(9)); it != adv.end()) add_value(rows, k, *it), shown.insert(k.substr(9));
    for (auto it = adv.begin(); it != adv.end(); ++it)
      if (!shown.count(it.key())) add_value(rows, "advanced." + it.key(), *it);
    table(rows, "advanced", "spec-advanced");
  }
  h += "</div>\n</section>\n";
  return h;
}

}  // namespace rlhf::pipeline::report
