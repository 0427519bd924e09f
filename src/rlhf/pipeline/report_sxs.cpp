// The run report's evaluation sections: the side by side (sxs/summary.json and the first
// rows of sxs/sxs.jsonl, drawn as the sxs page draws them) and AutoSxS (autosxs/metrics.json
// and the first judgments).
#include <fmt/format.h>

#include "rlhf/eval/sxs.h"
#include "rlhf/pipeline/report_parts.h"
#include "rlhf/text/words.h"
#include "rlhf/util/html.h"

namespace rlhf::pipeline::report {

namespace fs = std::filesystem;
using nlohmann::json;
using html::percent;

namespace {

constexpr size_t kSxsRows = 100;   // rows of the side-by-side table in the page
constexpr size_t kJudgments = 20;  // AutoSxS judgments in the page

// Why a section has nothing to show, from its stage's state.
std::string absent_note(const std::vector<StageView>& stages, const std::string& stage, const std::string& unplanned) {
  for (const auto& s : stages)
    if (s.name == stage) {
      if (s.state == "failed" || s.state == "unreadable")
        return fmt::format("The {} stage failed; its error is shown with the stages above.", esc(stage));
      if (s.state == "running") return fmt::format("The {} stage is running.", esc(stage));
      return fmt::format("Pending: this appears when the {} stage is done.", esc(stage));
    }
  return unplanned;
}

std::string text_div(const std::string& s) { return "<div class=\"text\">" + esc(s) + "</div>"; }

// A stage's results as the page reads them: a JSON summary and the first rows of a JSONL.
struct StageFiles {
  Loaded summary;
  JsonLines rows;
  bool absent() const { return !summary.exists && !rows.exists; }
};

StageFiles load_stage_files(const std::string& run_dir, const std::string& stage, const char* json_file,
                            const char* jsonl_file, size_t limit) {
  const fs::path dir = fs::path(run_dir) / stage;
  return {load_json(dir / json_file, rel(run_dir, dir / json_file)),
          load_jsonl(dir / jsonl_file, rel(run_dir, dir / jsonl_file), limit)};
}

// The end of a section whose stage left nothing: why, from the stage's state.
std::string absent_section(const std::vector<StageView>& stages, const std::string& stage, const std::string& unplanned) {
  return "<p class=\"muted\">" + absent_note(stages, stage, unplanned) + "</p>\n</section>\n";
}

// The first unreadable line of a JSONL, and how many there were.
std::string rows_error(const JsonLines& rows) {
  if (rows.first_error.empty()) return "";
  return fmt::format("<p class=\"error\">{}{}</p>\n", esc(rows.first_error),
                     rows.bad > 1 ? fmt::format(" ({} lines could not be read)", rows.bad) : "");
}

std::string choice_badge(const std::string& c) {
  const std::string cls = c == "A" ? "a" : c == "B" ? "b" : "tie";
  return fmt::format("<span class=\"choice {}\">{}</span>", cls, esc(c.empty() ? "-" : c));
}

// A row of sxs/sxs.jsonl as the table shows it; the words are counted when not recorded.
eval::SxsRow table_row(const json& r, size_t i) {
  eval::SxsRow row;
  row.id = r.contains("id") && !r["id"].is_null() ? r["id"] : json(i + 1);
  row.input_text = string_at(r, "input_text");
  row.response_a = string_at(r, "response_a");
  row.response_b = string_at(r, "response_b");
  const auto wa = number_at(r, "words_a"), wb = number_at(r, "words_b");
  row.words_a = wa ? int64_t(*wa) : text::count_words(row.response_a);
  row.words_b = wb ? int64_t(*wb) : text::count_words(row.response_b);
  row.score_a = number_at(r, "score_a");
  row.score_b = number_at(r, "score_b");
  return row;
}

}  // namespace

std::string sxs_section(const std::string& run_dir, const std::vector<StageView>& stages, json* labels) {
  std::string h = "<section id=\"sxs-section\">\n<h2>Side by side</h2>\n";
  const fs::path dir = fs::path(run_dir) / "sxs";
  const StageFiles files = load_stage_files(run_dir, "sxs", "summary.json", "sxs.jsonl", kSxsRows);
  if (files.absent())
    return h + absent_section(stages, "sxs", "Not planned: the spec has no eval_dataset, so there is no side-by-side.");
  const Loaded& summary = files.summary;
  const JsonLines& table = files.rows;
  if (!summary.error.empty()) h += fmt::format("<p class=\"error\">{}</p>\n", esc(summary.error));
  const json& s = summary.value;
  int64_t max_words = 50;
  if (auto m = number_at(s, "max_words")) max_words = int64_t(*m);
  if (s.is_object()) {
    const json a = s.value("a", json::object()), b = s.value("b", json::object());
    if (a.is_object() && b.is_object()) {
      *labels = {{"a", string_at(a, "label")}, {"b", string_at(b, "label")}};
      h += "<table class=\"summary\">\n<thead><tr><th></th><th>A</th><th>B</th></tr></thead>\n<tbody>\n";
      auto line = [&](const std::string& name, const std::string& va, const std::string& vb) {
        h += fmt::format("<tr><th>{}</th><td class=\"a\">{}</td><td class=\"b\">{}</td></tr>\n", name, va, vb);
      };
      auto n = [](const json& side, const char* k, auto f) {
        auto v = number_at(side, k);
        return v ? f(*v) : std::string("-");
      };
      line("model", esc(string_at(a, "label")), esc(string_at(b, "label")));
      line("mean words", n(a, "mean_words", [](double v) { return fmt::format("{:.1f}", v); }),
           n(b, "mean_words", [](double v) { return fmt::format("{:.1f}", v); }));
      line(fmt::format("over {} words", max_words), n(a, "over_max_words", percent), n(b, "over_max_words", percent));
      auto f3 = [](double v) { return fmt::format("{:.3f}", v); };
      if (a.contains("mean_score") || b.contains("mean_score"))
        line("mean reward", n(a, "mean_score", f3), n(b, "mean_score", f3));
      if (s.contains("reward_model"))
        line("reward higher", n(s, "a_score_higher", percent), n(s, "b_score_higher", percent));
      h += "</tbody>\n</table>\n";
    }
    h += "<div class=\"notes\"><p>";
    if (auto rows = number_at(s, "rows")) h += fmt::format("{} prompts. ", int64_t(*rows));
    if (s.contains("reward_model")) {
      h += fmt::format("Scores from the reward model {}; ", esc(value_text(s["reward_model"])));
      if (auto bh = number_at(s, "b_score_higher"))
        h += fmt::format("<b>B's reward is higher on {}</b> of the prompts", percent(*bh));
      if (auto ah = number_at(s, "a_score_higher")) h += fmt::format(", A's on {}", percent(*ah));
      if (auto t = number_at(s, "score_ties")) h += fmt::format(", equal on {}", percent(*t));
      h += ".";
    }
    h += "</p></div>\n";
  }
  h += rows_error(table);
  if (!table.exists) {
    h += "<p class=\"muted\">sxs/sxs.jsonl is absent.</p>\n</section>\n";
    return h;
  }
  bool scored = false;
  for (const auto& r : table.rows) scored |= r.contains("score_a") || r.contains("score_b");
  if (table.lines > table.rows.size() + table.bad) {
    h += fmt::format("<p class=\"notes\">The first {} of {} rows", table.rows.size(), table.lines);
    std::error_code ec;
    if (fs::exists(dir / "sxs.html", ec)) h += "; all of them in <a href=\"sxs/sxs.html\">sxs/sxs.html</a>";
    h += ".</p>\n";
  }
  std::vector<eval::SxsRow> rows;
  for (size_t i = 0; i < table.rows.size(); ++i) rows.push_back(table_row(table.rows[i], i));
  const std::string la = labels->is_object() ? string_at(*labels, "a") : "";
  const std::string lb = labels->is_object() ? string_at(*labels, "b") : "";
  h += eval::sxs_table_html(rows, la, lb, max_words, scored);
  h += "</section>\n";
  return h;
}

std::string autosxs_section(const std::string& run_dir, const std::vector<StageView>& stages, const json& labels) {
  std::string h = "<section id=\"autosxs\">\n<h2>AutoSxS</h2>\n";
  const StageFiles files = load_stage_files(run_dir, "autosxs", "metrics.json", "judgments.jsonl", kJudgments);
  if (files.absent())
    return h + absent_section(stages, "autosxs", "Not planned: the spec has no autosxs block (and an eval_dataset).");
  const Loaded& metrics = files.summary;
  const JsonLines& judgments = files.rows;
  if (!metrics.error.empty()) h += fmt::format("<p class=\"error\">{}</p>\n", esc(metrics.error));
  const json& m = metrics.value;
  const std::string la = labels.is_object() ? string_at(labels, "a") : "", lb = labels.is_object() ? string_at(labels, "b") : "";
  if (m.is_object()) {
    const std::string judge = string_at(m, "judge");
    h += fmt::format("<p>Judge <b>{}</b>{}", esc(judge.empty() ? "(the default)" : judge),
                     string_at(m, "task").empty() ? "" : ", task " + esc(string_at(m, "task")));
    if (auto n = number_at(m, "rows")) h += fmt::format(", {} pairs", int64_t(*n));
    if (auto c = number_at(m, "mean_confidence")) h += fmt::format(", mean confidence {:.3f}", *c);
    if (auto pc = number_at(m, "position_consistency"))
      h += fmt::format(", position consistency {} <small>(the same choice in both orders)</small>", percent(*pc));
    h += ".</p>\n";
    if (const std::string w = string_at(m, "judge_warning"); !w.empty())
      h += fmt::format("<p class=\"warning\">Warning: {}</p>\n", esc(w));
    const double ar = number_at(m, "model_a_win_rate").value_or(0), br = number_at(m, "model_b_win_rate").value_or(0),
                 tr = number_at(m, "tie_rate").value_or(0);
    // The three shares as one bar.
    h += "<div class=\"winbar\">";
    auto seg = [&](const char* cls, double share, const std::string& text) {
      if (share > 0) h += fmt::format("<div class=\"{}\" style=\"width:{:.2f}%\">{}</div>", cls, 100 * share, share >= 0.08 ? text : "");
    };
    seg("a", ar, "A " + percent(ar));
    seg("tie", tr, "tie " + percent(tr));
    seg("b", br, "B " + percent(br));
    h += "</div>\n";
    h += "<table class=\"summary\">\n<thead><tr><th></th><th>wins</th><th>win rate</th></tr></thead>\n<tbody>\n";
    auto row = [&](const std::string& name, const char* cls, const char* wins, const char* rate) {
      auto w = number_at(m, wins);
      auto r = number_at(m, rate);
      h += fmt::format("<tr><th>{}</th><td class=\"num {}\">{}</td><td class=\"num {}\">{}</td></tr>\n", name, cls,
                       w ? std::to_string(int64_t(*w)) : "-", cls, r ? percent(*r) : "-");
    };
    row("A" + (la.empty() ? "" : " <small>" + esc(la) + "</small>"), "a", "model_a_wins", "model_a_win_rate");
    row("B" + (lb.empty() ? "" : " <small>" + esc(lb) + "</small>"), "b", "model_b_wins", "model_b_win_rate");
    row("tie", "", "ties", "tie_rate");
    h += "</tbody>\n</table>\n";
    auto agreement = [&](const char* key, const std::string& caption) {
      auto it = m.find(key);
      if (it == m.end() || !it->is_object()) return;
      const json& g = *it;
      h += fmt::format("<table class=\"summary agreement\">\n<caption>{}</caption>\n<tbody>\n", caption);
      for (const char* k : {"rows", "accuracy", "precision", "recall", "f1", "cohens_kappa", "human_ties_dropped", "judge_ties"}) {
        auto v = number_at(g, k);
        if (!v) continue;
        const bool count = std::string(k) == "rows" || std::string(k) == "human_ties_dropped" || std::string(k) == "judge_ties";
        h += fmt::format("<tr><th>{}</th><td class=\"num\">{}</td></tr>\n", esc(k),
                         count ? std::to_string(int64_t(*v)) : fmt::format("{:.3f}", *v));
      }
      h += "</tbody>\n</table>\n";
    };
    agreement("human_agreement", "Agreement with the human labels");
    agreement("human_agreement_by_probability", "By the judge's mean probability alone");
    if (m.contains("human_agreement"))
      h += "<p class=\"notes\">Human ties are left out; precision, recall and F1 take &ldquo;A is better&rdquo; as the "
           "positive class.</p>\n";
  }
  h += rows_error(judgments);
  if (!judgments.rows.empty()) {
    bool human = false;
    for (const auto& r : judgments.rows) human |= r.contains("human_preference");
    h += fmt::format("<h3>Judgments <small>the first {} of {}</small></h3>\n", judgments.rows.size(), judgments.lines);
    h += "<table class=\"judgments\" id=\"judgments\">\n<colgroup><col class=\"n\"><col class=\"prompt\"><col class=\"c\">"
         "<col class=\"num\">";
    if (human) h += "<col class=\"c\">";
    h += "<col></colgroup>\n<thead><tr><th>#</th><th>prompt</th><th>choice</th><th>confidence</th>";
    if (human) h += "<th>human</th>";
    h += "<th>explanation</th></tr></thead>\n<tbody>\n";
    for (size_t i = 0; i < judgments.rows.size(); ++i) {
      const json& r = judgments.rows[i];
      const std::string id = r.contains("id") && !r["id"].is_null() ? value_text(r["id"]) : std::to_string(i + 1);
      auto conf = number_at(r, "confidence");
      h += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>", esc(id),
                       text_div(string_at(r, "input_text")), choice_badge(string_at(r, "choice")),
                       conf ? fmt::format("{:.3f}", *conf) : "-");
      if (human) h += "<td>" + choice_badge(string_at(r, "human_preference")) + "</td>";
      h += "<td>" + text_div(string_at(r, "explanation")) + "</td></tr>\n";
    }
    h += "</tbody>\n</table>\n";
  }
  h += "</section>\n";
  return h;
}

}  // namespace rlhf::pipeline::report
