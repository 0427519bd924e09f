// The run report: the page put together from its sections (report_parts.h).
#include "rlhf/pipeline/report.h"

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <map>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "rlhf/pipeline/report_parts.h"
#include "rlhf/pipeline/run_dir.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"
#include "rlhf/util/html.h"

namespace rlhf::pipeline {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace report;

// What the report adds to the pages' stylesheet: sections, the header table, the stage
// table, the parameters, AutoSxS's win bar, agreement tables and judgments.
constexpr const char* kReportCss = R"(section { background: #fff; border: 1px solid #d5d9e0; border-radius: 6px; padding: 16px 20px; margin: 0 0 20px; overflow-x: auto; }
nav { margin: 0 0 18px; }
nav a { margin-right: 14px; }
.meta { margin: 0 0 14px; }
.meta th { background: #e9edf3; font-weight: 600; }
.judgments { width: 100%; table-layout: fixed; }
.judgments col.n { width: 3em; } .judgments col.c { width: 5em; } .judgments col.prompt { width: 38%; } .judgments col.num { width: 7.5em; }
.stages td { vertical-align: middle; }
.metric { display: inline-block; margin: 1px 8px 1px 0; white-space: nowrap; font-variant-numeric: tabular-nums; }
.metric .k { color: #6b7385; }
.legend { font-size: 12px; color: #4a5366; margin: 0 0 10px; }
.legend .badge { margin-right: 6px; }
.params { columns: 2 480px; column-gap: 28px; }
.params table { width: 100%; break-inside: avoid; margin: 0 0 16px; }
.params th { background: #e9edf3; font-weight: normal; font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: 13px; }
.params td { overflow-wrap: anywhere; max-width: 40em; }
.winbar { display: flex; width: 100%; max-width: 640px; height: 26px; border-radius: 4px; overflow: hidden; margin: 6px 0 14px; border: 1px solid #d5d9e0; }
.winbar div { color: #fff; font-size: 12px; font-weight: 600; line-height: 26px; text-align: center; white-space: nowrap; overflow: hidden; }
.winbar .a { background: #3d7be0; } .winbar .b { background: #e0863d; } .winbar .tie { background: #9aa3b2; }
.summary td.num.a { border-left: 4px solid #3d7be0; } .summary td.num.b { border-left: 4px solid #e0863d; }
.agreement { display: inline-table; margin-right: 20px; vertical-align: top; }
.agreement caption { max-width: 22em; }
.choice { display: inline-block; min-width: 2.2em; text-align: center; border-radius: 4px; font-weight: 600; color: #fff; padding: 0 4px; }
.warning { color: #7a5a00; background: #fff4d6; border-left: 4px solid #e0a800; padding: 6px 10px; }
.choice.a { background: #3d7be0; } .choice.b { background: #e0863d; } .choice.tie { background: #9aa3b2; }
)";

}  // namespace

// How to use the tuned policy once train_policy is done: serve it, or run bulk inference.
std::string serve_section(const std::string& run_dir, const std::vector<StageView>& stages) {
  auto it = std::find_if(stages.begin(), stages.end(), [](const StageView& s) { return s.name == "train_policy"; });
  if (it == stages.end() || (it->state != "done" && it->state != "cached")) return "";
  std::string h = "<section id=\"serve\">\n<h2>Use the tuned policy</h2>\n";
  h += "<p>An OpenAI-compatible endpoint with the tuned policy as the model <code>tuned</code> (and the base beside it):</p>\n";
  h += fmt::format("<pre>{}</pre>\n", esc(serve_command(run_dir)));
  h += fmt::format("<p>Bulk inference on a JSONL of prompts:</p>\n<pre>{}</pre>\n",
                   esc("rlhf infer --adapter " + stage_dir(run_dir, "train_policy") + " --input prompts.jsonl --output out.jsonl"));
  return h + "</section>\n";
}

std::string render_report(const std::string& run_dir) {
  const fs::path plan_path = fs::path(run_dir) / "plan.json";
  std::error_code ec;
  if (!fs::exists(plan_path, ec))
    fail("{}: not found; is {} a pipeline run directory (rlhf pipeline run SPEC --run-dir DIR)?", plan_path.string(), run_dir);
  const Loaded plan = load_json(plan_path, plan_path.string());
  const int64_t now = int64_t(std::time(nullptr));
  std::vector<StageView> stages = read_stages(run_dir, plan.value);

  std::string spec_path;
  if (plan.value.is_object()) {
    spec_path = string_at(plan.value, "spec_path");
    if (spec_path.empty() && plan.value.contains("spec")) spec_path = string_at(plan.value["spec"], "path");
  }
  if (spec_path.empty() && fs::exists(fs::path(run_dir) / "spec.yaml", ec)) spec_path = (fs::path(run_dir) / "spec.yaml").string();
  fs::path abs_dir = fs::absolute(run_dir, ec).lexically_normal();
  if (abs_dir.filename().empty()) abs_dir = abs_dir.parent_path();

  std::string h = html::page_start("RLHF run: " + abs_dir.filename().string(),
                                   std::string(html::kGraphCss) + html::kChartCss + kReportCss);
  h += fmt::format("<h1>RLHF run <small>{}</small></h1>\n", esc(abs_dir.string()));
  h += "<table class=\"meta\">\n<tbody>\n";
  h += fmt::format("<tr><th>spec</th><td>{}</td></tr>\n", spec_path.empty() ? "<span class=\"muted\">-</span>" : esc(spec_path));
  if (plan.value.is_object() && plan.value.contains("model")) {
    const json& mo = plan.value["model"];
    std::string model = string_at(mo, "path");
    if (!string_at(mo, "format").empty()) model += " (" + string_at(mo, "format") + ")";
    if (!model.empty()) h += fmt::format("<tr><th>model</th><td>{}</td></tr>\n", esc(model));
  }
  std::map<std::string, int> counts;
  for (const auto& s : stages) counts[state_class(s.state)]++;
  std::string progress;
  for (const char* s : {"done", "cached", "running", "interrupted", "failed", "pending"})
    if (counts[s]) progress += fmt::format("<span class=\"badge {}\">{} {}</span> ", s, counts[s], s);
  if (!stages.empty()) h += fmt::format("<tr><th>stages</th><td>{}</td></tr>\n", progress);
  h += fmt::format("<tr><th>generated</th><td>{}</td></tr>\n", utc_now());
  h += "</tbody>\n</table>\n";
  h += "<nav><a href=\"#stages\">stages</a><a href=\"#curves\">curves</a><a href=\"#params\">parameters</a>"
       "<a href=\"#serve\">serve</a><a href=\"#sxs-section\">side by side</a><a href=\"#autosxs\">AutoSxS</a></nav>\n";
  if (!plan.error.empty()) h += fmt::format("<p class=\"error\">{}</p>\n", esc(plan.error));

  h += stages_section(stages, now);
  h += serve_section(run_dir, stages);
  h += curves_section(run_dir, stages);
  h += params_section(plan.value);
  json labels;
  h += sxs_section(run_dir, stages, &labels);
  h += autosxs_section(run_dir, stages, labels);
  h += html::page_end();
  return h;
}

void write_report(const std::string& run_dir) { write_file_atomic(report_path(run_dir), render_report(run_dir)); }

}  // namespace rlhf::pipeline
