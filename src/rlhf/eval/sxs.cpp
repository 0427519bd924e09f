#include "rlhf/eval/sxs.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include <fmt/format.h>

#include "rlhf/text/utf8.h"
#include "rlhf/text/words.h"
#include "rlhf/util/csv.h"
#include "rlhf/util/html.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"

namespace rlhf::eval {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kOutputFiles[] = {"sxs.jsonl", "sxs.csv", "sxs.html", "summary.json"};

// A conversation as one text: the context, then "User: ..." / "Assistant: ..." paragraphs.
std::string conversation_text(const data::PromptText& p) {
  std::string s;
  if (!p.context.empty()) s = p.context + "\n\n";
  for (size_t i = 0; i < p.messages.size(); ++i) {
    if (i) s += "\n\n";
    s += (p.messages[i].author == "user" ? "User: " : "Assistant: ") + p.messages[i].content;
  }
  return s;
}

// The join key of a prompt: its form, then its content. A plain text and a conversation
// never share a key, whatever their texts read like.
std::string text_key(const std::string& text) { return "text\n" + text; }
std::string prompt_key(const data::PromptText& p) {
  if (!p.is_chat()) return text_key(p.text);
  json turns = json::array();
  for (const auto& t : p.messages) turns.push_back(json::array({t.author, t.content}));
  return "chat\n" + json{{"context", p.context}, {"messages", turns}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

// The label of a side: its recorded model, else the file's name.
std::string side_label(const std::string& path, const json& model) {
  if (model.is_object()) {
    auto str = [&](const char* k) {
      auto it = model.find(k);
      return it != model.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    std::string ref = str("reference"), adapter = str("adapter");
    if (!adapter.empty()) return ref.empty() ? adapter : ref + " + " + adapter;
    if (!ref.empty()) return ref;
  }
  fs::path p(path);
  if (p.filename().empty()) p = p.parent_path();
  return p.extension() == ".jsonl" ? p.stem().string() : p.filename().string();
}

// The start of a text, quoted, for a message.
std::string quoted_start(const std::string& s) {
  std::string head = s.substr(0, text::utf8::complete_prefix(s.substr(0, 60)));
  return json(head + (head.size() < s.size() ? "..." : "")).dump();
}

bool python_space_at(std::string_view s, size_t i, size_t* len) {
  text::utf8::Step st = text::utf8::next(s, i);
  *len = st.len;
  return st.valid && text::utf8::is_python_space(st.cp);
}

std::string score_text(const std::optional<double>& s) { return s ? fmt::format("{:.3f}", *s) : std::string("-"); }

std::string json_line(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

SxsSide read_sxs_side(const std::string& path, const SxsReadOptions& options, size_t* skipped) {
  data::ReadOptions ro;
  ro.skip_invalid = options.skip_invalid;
  data::ReadReport report;
  // The shared reader validates every line (JSON, UTF-8, the prompt and prediction fields)
  // and names file:line and the field; the other fields are read from the line it keeps.
  std::vector<data::ScoredRow> scored = data::read_scored_dataset(path, ro, &report);
  if (skipped) *skipped = report.skipped;
  SxsSide side;
  side.file = path;
  side.rows.reserve(scored.size());
  for (auto& s : scored) {
    const json j = json::parse(s.json);
    SxsInputRow r;
    r.prompt = std::move(s.prompt);
    r.has_dataset_prompt = j.contains("messages") || j.contains("input_text") || j.contains("prompt");
    if (auto it = j.find("inputs"); it != j.end()) {
      if (!it->is_object()) fail("{}: field 'inputs': must be an object", s.where);
      if (auto p = it->find("inputs_pretokenized"); p != it->end()) {
        if (!p->is_string()) fail("{}: field 'inputs.inputs_pretokenized': must be a string", s.where);
        r.pretokenized = p->get<std::string>();
        r.has_pretokenized = true;
      }
    }
    if (auto it = j.find("settings"); it != j.end() && it->is_object())
      if (auto in = it->find("instruction"); in != it->end()) {
        if (!in->is_string()) fail("{}: field 'settings.instruction': must be a string", s.where);
        r.instruction = in->get<std::string>();
      }
    if (auto it = j.find("id"); it != j.end()) r.id = *it;
    if (side.rows.empty()) {
      if (auto it = j.find("model"); it != j.end()) side.model = *it;
      if (auto it = j.find("settings"); it != j.end()) side.settings = *it;
    }
    r.response = std::move(s.completion);
    r.where = std::move(s.where);
    side.rows.push_back(std::move(r));
  }
  side.label = side_label(path, side.model);
  return side;
}

JoinOn parse_join_on(const std::string& name) {
  if (name == "auto") return JoinOn::Auto;
  if (name == "inputs_pretokenized" || name == "inputs.inputs_pretokenized") return JoinOn::Pretokenized;
  if (name == "input_text" || name == "prompt") return JoinOn::DatasetPrompt;
  fail("--join-on is \"{}\"; it must be auto, inputs_pretokenized or input_text", name);
}

SxsTable join_sxs(SxsSide a, SxsSide b, JoinOn on) {
  auto all_have = [](const SxsSide& s, bool SxsInputRow::*field) {
    return std::all_of(s.rows.begin(), s.rows.end(), [&](const SxsInputRow& r) { return r.*field; });
  };
  if (on == JoinOn::Auto) {
    if (all_have(a, &SxsInputRow::has_dataset_prompt) && all_have(b, &SxsInputRow::has_dataset_prompt))
      on = JoinOn::DatasetPrompt;
    else if (all_have(a, &SxsInputRow::has_pretokenized) && all_have(b, &SxsInputRow::has_pretokenized))
      on = JoinOn::Pretokenized;
    else
      on = JoinOn::DatasetPrompt;
  }
  if (on == JoinOn::Pretokenized)
    for (const SxsSide* s : {&a, &b})
      for (const auto& r : s->rows)
        if (!r.has_pretokenized)
          fail("{}: field 'inputs.inputs_pretokenized': missing (the join is on it; --join-on input_text joins on "
               "the dataset prompt)", r.where);
  auto key = [on](const SxsInputRow& r) {
    if (on == JoinOn::Pretokenized) return text_key(r.pretokenized);
    return r.has_dataset_prompt ? prompt_key(r.prompt) : text_key(r.pretokenized);
  };
  // The prompt as a message shows it.
  auto shown = [on](const SxsInputRow& r) {
    if (on == JoinOn::Pretokenized || !r.has_dataset_prompt) return r.pretokenized;
    return (r.prompt.is_chat() ? "a conversation: " : "") + prompt_as_text(r.prompt);
  };

  SxsTable t;
  t.join_on = on == JoinOn::Pretokenized ? "inputs_pretokenized" : "input_text";
  // B's rows of each prompt, in order; the k-th occurrence in A takes the k-th in B.
  std::map<std::string, std::vector<size_t>> in_b;
  for (size_t i = 0; i < b.rows.size(); ++i) {
    auto& list = in_b[key(b.rows[i])];
    if (!list.empty()) ++t.duplicates_b;
    list.push_back(i);
  }
  std::map<std::string, size_t> taken;  // per prompt: B rows used so far
  std::vector<bool> b_used(b.rows.size(), false);
  for (size_t i = 0; i < a.rows.size(); ++i) {
    const std::string k = key(a.rows[i]);
    size_t& n = taken[k];
    if (n > 0) ++t.duplicates_a;
    auto it = in_b.find(k);
    if (it == in_b.end() || n >= it->second.size()) {
      ++n;
      t.unmatched_a.push_back(i);
      continue;
    }
    const size_t j = it->second[n++];
    b_used[j] = true;
    const SxsInputRow& ra = a.rows[i];
    const SxsInputRow& rb = b.rows[j];
    SxsRow row;
    row.id = ra.id.is_null() ? json(t.rows.size() + 1) : ra.id;
    row.input_text = ra.has_dataset_prompt ? prompt_as_text(ra.prompt) : ra.pretokenized;
    row.instruction = !ra.instruction.empty() ? ra.instruction : rb.instruction;
    if (!ra.instruction.empty() && !rb.instruction.empty() && ra.instruction != rb.instruction) ++t.instruction_differs;
    row.response_a = ra.response;
    row.response_b = rb.response;
    row.words_a = text::count_words(ra.response);
    row.words_b = text::count_words(rb.response);
    row.a = i;
    row.b = j;
    t.rows.push_back(std::move(row));
  }
  for (size_t j = 0; j < b.rows.size(); ++j)
    if (!b_used[j]) t.unmatched_b.push_back(j);
  if (t.rows.empty())
    fail("{} and {}: no prompt of A is in B (joined on {}); A's first prompt is {}, B's is {}", a.file, b.file,
         t.join_on, quoted_start(shown(a.rows[0])), quoted_start(shown(b.rows[0])));
  t.a = std::move(a);
  t.b = std::move(b);
  return t;
}

std::string prompt_as_text(const data::PromptText& p) { return p.is_chat() ? conversation_text(p) : p.text; }

data::PromptText reward_prompt(const SxsInputRow& row, const std::string& instruction, bool* stripped) {
  if (stripped) *stripped = false;
  if (row.has_dataset_prompt || !row.has_pretokenized) return row.prompt;
  data::PromptText p;
  p.text = row.pretokenized;
  const std::string& s = row.pretokenized;
  if (instruction.empty() || s.compare(0, instruction.size(), instruction) != 0) return p;
  size_t i = instruction.size(), len = 1;
  if (i < s.size() && !python_space_at(s, i, &len)) return p;  // the instruction runs on into a word
  while (i < s.size() && python_space_at(s, i, &len)) i += len;
  if (i == s.size()) return p;  // nothing but the instruction: keep it whole
  p.text = s.substr(i);
  if (stripped) *stripped = true;
  return p;
}

json SxsSummary::to_json() const {
  auto side = [&](const SxsSideSummary& s) {
    json j = {{"file", s.file},
              {"label", s.label},
              {"rows_read", s.rows_read},
              {"unmatched", s.unmatched},
              {"duplicates", s.duplicates},
              {"mean_words", s.mean_words},
              {"over_max_words", s.over_max_words}};
    if (s.mean_score) j["mean_score"] = *s.mean_score;
    if (!s.model.is_null()) j["model"] = s.model;
    if (!s.settings.is_null()) j["settings"] = s.settings;
    return j;
  };
  json j = {{"rows", rows}, {"join_on", join_on}, {"max_words", max_words}, {"a", side(a)}, {"b", side(b)}};
  if (!instruction.empty()) j["instruction"] = instruction;
  if (instruction_differs) j["instruction_differs"] = instruction_differs;
  if (!reward_model.empty()) {
    j["reward_model"] = reward_model;
    j["b_score_higher"] = b_higher.value_or(0);
    j["a_score_higher"] = a_higher.value_or(0);
    j["score_ties"] = ties.value_or(0);
  }
  return j;
}

SxsSummary summarize_sxs(const SxsTable& t, int64_t max_words) {
  SxsSummary s;
  s.rows = t.rows.size();
  s.join_on = t.join_on;
  s.max_words = max_words;
  s.reward_model = t.reward_model;
  s.instruction_differs = t.instruction_differs;
  if (!t.rows.empty() && std::all_of(t.rows.begin(), t.rows.end(),
                                     [&](const SxsRow& r) { return r.instruction == t.rows[0].instruction; }))
    s.instruction = t.rows[0].instruction;
  auto fill = [&](SxsSideSummary& out, const SxsSide& side, size_t unmatched, size_t duplicates, bool is_a) {
    out.file = side.file;
    out.label = side.label;
    out.model = side.model;
    out.settings = side.settings;
    out.rows_read = side.rows.size();
    out.unmatched = unmatched;
    out.duplicates = duplicates;
    double words = 0, over = 0, score = 0;
    for (const auto& r : t.rows) {
      const int64_t w = is_a ? r.words_a : r.words_b;
      words += static_cast<double>(w);
      over += w > max_words;
      score += (is_a ? r.score_a : r.score_b).value_or(0.0);
    }
    const double n = std::max<double>(1.0, static_cast<double>(t.rows.size()));
    out.mean_words = words / n;
    out.over_max_words = over / n;
    if (t.scored()) out.mean_score = score / n;
  };
  fill(s.a, t.a, t.unmatched_a.size(), t.duplicates_a, true);
  fill(s.b, t.b, t.unmatched_b.size(), t.duplicates_b, false);
  if (t.scored()) {
    double bh = 0, ah = 0, eq = 0;
    for (const auto& r : t.rows) {
      const double sa = r.score_a.value_or(0), sb = r.score_b.value_or(0);
      bh += sb > sa;
      ah += sa > sb;
      eq += sa == sb;
    }
    const double n = std::max<double>(1.0, static_cast<double>(t.rows.size()));
    s.b_higher = bh / n;
    s.a_higher = ah / n;
    s.ties = eq / n;
  }
  return s;
}

std::string sxs_jsonl(const SxsTable& t) {
  std::string out;
  for (const auto& r : t.rows) {
    json j = {{"id", r.id},           {"input_text", r.input_text}, {"response_a", r.response_a},
              {"response_b", r.response_b}, {"words_a", r.words_a},       {"words_b", r.words_b}};
    if (!r.instruction.empty()) j["instruction"] = r.instruction;
    if (t.scored()) {
      j["score_a"] = r.score_a ? json(*r.score_a) : json();
      j["score_b"] = r.score_b ? json(*r.score_b) : json();
    }
    out += json_line(j);
    out += '\n';
  }
  return out;
}

std::string sxs_csv(const SxsTable& t) {
  const bool instructed = std::any_of(t.rows.begin(), t.rows.end(), [](const SxsRow& r) { return !r.instruction.empty(); });
  std::string out = "id,input_text,response_a,response_b,words_a,words_b";
  if (t.scored()) out += ",score_a,score_b";
  if (instructed) out += ",instruction";
  out += "\r\n";
  for (const auto& r : t.rows) {
    out += csv_field(r.id.is_string() ? r.id.get<std::string>() : json_line(r.id));
    for (const std::string* s : {&r.input_text, &r.response_a, &r.response_b}) out += ',' + csv_field(*s);
    out += fmt::format(",{},{}", r.words_a, r.words_b);
    if (t.scored())
      out += fmt::format(",{},{}", r.score_a ? fmt::format("{}", *r.score_a) : std::string(),
                         r.score_b ? fmt::format("{}", *r.score_b) : std::string());
    if (instructed) out += ',' + csv_field(r.instruction);
    out += "\r\n";
  }
  return out;
}

std::string sxs_table_html(const std::vector<SxsRow>& rows, const std::string& label_a, const std::string& label_b,
                           int64_t max_words, bool scored) {
  std::string h = "<table class=\"sxs\" id=\"sxs\">\n<colgroup><col class=\"n\"><col><col><col><col class=\"num\"><col class=\"num\">";
  if (scored) h += "<col class=\"num\"><col class=\"num\">";
  h += "</colgroup>\n<thead><tr><th>#</th><th>prompt</th>";
  h += fmt::format("<th>response A<br><small>{}</small></th><th>response B<br><small>{}</small></th>",
                   html::escape(label_a), html::escape(label_b));
  h += "<th>words A</th><th>words B</th>";
  if (scored) h += "<th>reward A</th><th>reward B</th>";
  h += "</tr></thead>\n<tbody>\n";
  auto text = [](const std::string& s) { return "<div class=\"text\">" + html::escape(s) + "</div>"; };
  auto over = [&](int64_t words) { return words > max_words ? " over" : ""; };
  for (const auto& r : rows) {
    const std::string id = r.id.is_string() ? r.id.get<std::string>() : json_line(r.id);
    h += fmt::format("<tr><td>{}</td><td>{}</td><td class=\"a\">{}</td><td class=\"b\">{}</td>", html::escape(id),
                     text(r.input_text), text(r.response_a), text(r.response_b));
    h += fmt::format("<td class=\"num{}\">{}</td><td class=\"num{}\">{}</td>", over(r.words_a), r.words_a,
                     over(r.words_b), r.words_b);
    if (scored) {
      const bool a_best = r.score_a && r.score_b && *r.score_a > *r.score_b;
      const bool b_best = r.score_a && r.score_b && *r.score_b > *r.score_a;
      h += fmt::format("<td class=\"num{}\">{}</td><td class=\"num{}\">{}</td>", a_best ? " best" : "",
                       score_text(r.score_a), b_best ? " best" : "", score_text(r.score_b));
    }
    h += "</tr>\n";
  }
  h += "</tbody>\n</table>\n";
  return h;
}

std::string sxs_html(const SxsTable& t, const SxsSummary& s) {
  const std::string la = html::escape(s.a.label), lb = html::escape(s.b.label);
  std::string h = html::page_start(fmt::format("Side by side: {} vs {}", s.a.label, s.b.label));
  h += "<h1>Side by side</h1>\n";
  // Summary: one column per side.
  h += "<table class=\"summary\">\n<thead><tr><th></th><th>A</th><th>B</th></tr></thead>\n<tbody>\n";
  auto line = [&](const std::string& name, const std::string& va, const std::string& vb) {
    h += fmt::format("<tr><th>{}</th><td class=\"a\">{}</td><td class=\"b\">{}</td></tr>\n", name, va, vb);
  };
  line("model", la, lb);
  line("file", html::escape(s.a.file), html::escape(s.b.file));
  line("rows read", std::to_string(s.a.rows_read), std::to_string(s.b.rows_read));
  line("mean words", fmt::format("{:.1f}", s.a.mean_words), fmt::format("{:.1f}", s.b.mean_words));
  line(fmt::format("over {} words", s.max_words), html::percent(s.a.over_max_words), html::percent(s.b.over_max_words));
  if (t.scored()) {
    line("mean reward", score_text(s.a.mean_score), score_text(s.b.mean_score));
    line("reward higher", html::percent(s.a_higher.value_or(0)), html::percent(s.b_higher.value_or(0)));
  }
  h += "</tbody>\n</table>\n<div class=\"notes\">\n";
  h += fmt::format("<p>{} prompts, joined on {}.", s.rows, html::escape(s.join_on));
  if (t.scored())
    h += fmt::format(" Scores from the reward model {}; B's score is higher on {} of the prompts, A's on {}, equal on {}.",
                     html::escape(s.reward_model), html::percent(s.b_higher.value_or(0)),
                     html::percent(s.a_higher.value_or(0)), html::percent(s.ties.value_or(0)));
  h += "</p>\n";
  if (!s.instruction.empty())
    h += fmt::format("<p>Instruction given with every prompt: <q>{}</q></p>\n", html::escape(s.instruction));
  if (s.instruction_differs)
    h += fmt::format("<p class=\"warn\">On {} rows A and B were given different instructions; the table shows A's.</p>\n",
                     s.instruction_differs);
  if (s.a.unmatched || s.b.unmatched)
    h += fmt::format("<p class=\"warn\">Left out: {} rows of A whose prompt is not in B, {} rows of B whose prompt is "
                     "not in A.</p>\n",
                     s.a.unmatched, s.b.unmatched);
  h += "</div>\n";
  h += sxs_table_html(t.rows, s.a.label, s.b.label, s.max_words, t.scored());
  h += html::page_end();
  return h;
}

std::string format_sxs_summary(const SxsSummary& s) {
  std::string out = fmt::format("side by side: {} prompts, joined on {}\n", s.rows, s.join_on);
  if (!s.instruction.empty()) out += fmt::format("  instruction: {}\n", json(s.instruction).dump());
  if (s.instruction_differs)
    out += fmt::format("  warning: on {} rows A and B were given different instructions (the table shows A's)\n",
                       s.instruction_differs);
  auto side = [&](const char* name, const SxsSideSummary& x) {
    out += fmt::format("  {}  {} ({}): mean {:.1f} words, {} over {} words", name, x.label, x.file, x.mean_words,
                       html::percent(x.over_max_words), s.max_words);
    if (x.mean_score) out += fmt::format(", mean reward {:.3f}", *x.mean_score);
    out += '\n';
  };
  side("A", s.a);
  side("B", s.b);
  if (s.b_higher)
    out += fmt::format("  B's reward higher on {} of the prompts (A's {}, equal {})\n", html::percent(*s.b_higher),
                       html::percent(s.a_higher.value_or(0)), html::percent(s.ties.value_or(0)));
  if (s.a.unmatched || s.b.unmatched)
    out += fmt::format("  left out: {} rows only in A, {} rows only in B\n", s.a.unmatched, s.b.unmatched);
  return out;
}

void write_sxs_output(const std::string& dir, const SxsTable& table, const SxsSummary& summary) {
  fs::path out = fs::path(dir).lexically_normal();
  if (out.filename().empty()) out = out.parent_path();
  if (out.empty()) fail("--output is empty");
  std::error_code ec;
  if (fs::exists(out, ec)) {
    if (!fs::is_directory(out, ec)) fail("{}: exists and is not a folder; choose another --output", dir);
    const std::set<std::string> ours(std::begin(kOutputFiles), std::end(kOutputFiles));
    for (const auto& e : fs::directory_iterator(out, ec))
      if (!ours.count(e.path().filename().string()))
        fail("{}: the folder holds other files ({}); sxs replaces only an earlier sxs output: choose another --output",
             dir, e.path().filename().string());
  }
  const fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
  fs::create_directories(parent, ec);
  if (ec) fail("{}: cannot create the folder: {}", parent.string(), ec.message());
  const std::string name = out.filename().string();
  const fs::path tmp = parent / fmt::format(".{}.tmp-{}", name, ::getpid());
  const fs::path old = parent / fmt::format(".{}.old-{}", name, ::getpid());
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) fail("{}: cannot create: {}", tmp.string(), ec.message());
  try {
    write_file_atomic((tmp / "sxs.jsonl").string(), sxs_jsonl(table));
    write_file_atomic((tmp / "sxs.csv").string(), sxs_csv(table));
    write_file_atomic((tmp / "sxs.html").string(), sxs_html(table, summary));
    write_file_atomic((tmp / "summary.json").string(), summary.to_json().dump(2) + "\n");
    const bool replace = fs::exists(out, ec);
    if (replace) {
      fs::rename(out, old, ec);
      if (ec) fail("{}: cannot move the earlier output aside: {}", dir, ec.message());
    }
    fs::rename(tmp, out, ec);
    if (ec) {
      if (replace) fs::rename(old, out);
      fail("{}: cannot rename into place: {}", dir, ec.message());
    }
    if (replace) fs::remove_all(old, ec);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace rlhf::eval
