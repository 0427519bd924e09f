#include "rlhf/eval/autosxs.h"


#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"
#include "rlhf/util/json_file.h"
#include "rlhf/util/output_dir.h"
#include "rlhf/util/path_kind.h"

namespace rlhf::eval {
namespace fs = std::filesystem;
using nlohmann::json;

JudgeTask parse_task(const std::string& name) {
  if (name == "summarization") return JudgeTask::Summarization;
  if (name == "question_answering" || name == "qa") return JudgeTask::QuestionAnswering;
  fail("--task is \"{}\"; it must be summarization or question_answering", name);
}

const char* task_name(JudgeTask task) {
  return task == JudgeTask::Summarization ? "summarization" : "question_answering";
}

std::string task_criteria(JudgeTask task) {
  if (task == JudgeTask::Summarization)
    return "- Follows the instruction: it is a summary of the text, in the form and length asked for.\n"
           "- Grounded: it states only what the text says.\n"
           "- Comprehensive: it keeps the text's main points.\n"
           "- Brief: no repetition, no filler.\n";
  return "- Answers the question fully.\n"
         "- Grounded: it says nothing false or unsupported by the context.\n"
         "- Relevant: it stays on the question.\n";
}

std::string judge_context(const std::string& instruction, const std::string& prompt) {
  if (instruction.empty() || prompt.starts_with(instruction)) return prompt;
  return prompt.empty() ? instruction : instruction + "\n\n" + prompt;
}

text::PromptPieces judge_prompt_pieces(JudgeTask task, const std::string& context, const std::string& first,
                                       const std::string& second, const std::string& instruction) {
  using text::PieceKind;
  const bool sum = task == JudgeTask::Summarization;
  text::PromptPieces p;
  p.add(PieceKind::Fixed, sum ? "Compare two summaries of the same text.\n\n" : "Compare two answers to the same question.\n\n");
  p.add(PieceKind::Fixed, sum ? "Text and instruction:\n" : "Question and context:\n");
  if (!instruction.empty() && context.starts_with(instruction)) {
    p.add(PieceKind::Fixed, instruction);
    p.add(PieceKind::Content, context.substr(instruction.size()));
  } else {
    p.add(PieceKind::Content, context);
  }
  p.add(PieceKind::Fixed, "\n\nResponse A:\n");
  p.add(PieceKind::Content, first);
  p.add(PieceKind::Fixed, "\n\nResponse B:\n");
  p.add(PieceKind::Content, second);
  p.add(PieceKind::Fixed, "\n\nCriteria:\n" + task_criteria(task));
  p.add(PieceKind::Fixed, "\nWhich response is better, A or B? Answer with one letter.");
  return p;
}

std::string judge_prompt(JudgeTask task, const std::string& context, const std::string& first,
                         const std::string& second) {
  return judge_prompt_pieces(task, context, first, second).text();
}

std::map<std::string, Choice> parse_label_map(const std::string& spec) {
  std::map<std::string, Choice> out;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0)
      fail("--human-labels: \"{}\" is not VALUE=LABEL (e.g. 1=A,2=B,0=TIE)", item);
    auto label = parse_choice(json(item.substr(eq + 1)));
    if (!label || item.substr(eq + 1).empty())
      fail("--human-labels: \"{}\": the label must be A, B or TIE", item);
    out[item.substr(0, eq)] = *label;
  }
  if (out.empty()) fail("--human-labels is empty; give VALUE=LABEL pairs such as 1=A,2=B,0=TIE");
  return out;
}

namespace {

constexpr size_t kMaxInputBytes = size_t(1) << 31;

// The field at a dotted path, or null.
const json* field_at(const json& row, const std::string& path) {
  const json* cur = &row;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string key = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!cur->is_object()) return nullptr;
    auto it = cur->find(key);
    if (it == cur->end()) return nullptr;
    cur = &*it;
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

std::string raw_value(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

AutoSxsRow parse_row(const json& row, const AutoSxsColumns& cols, const std::string& where, size_t number) {
  if (!row.is_object()) fail("{}: a row must be a JSON object", where);
  AutoSxsRow r;
  r.where = where;
  auto text_field = [&](const std::string& name, bool required) -> std::optional<std::string> {
    const json* v = field_at(row, name);
    if (!v || v->is_null()) {
      if (required) fail("{}: field '{}' is missing", where, name);
      return std::nullopt;
    }
    if (!v->is_string()) fail("{}: field '{}' must be a string", where, name);
    return v->get<std::string>();
  };
  if (const json* id = field_at(row, cols.id); id && !id->is_null()) r.id = raw_value(*id);
  else r.id = std::to_string(number);
  if (cols.context.empty()) {
    for (const char* name : {"input_text", "inputs.inputs_pretokenized", "prompt"})
      if (auto t = text_field(name, false)) {
        r.context = *t;
        break;
      }
    if (r.context.empty() && !field_at(row, "input_text") && !field_at(row, "inputs.inputs_pretokenized") &&
        !field_at(row, "prompt"))
      fail("{}: field 'input_text' is missing (the prompt both responses answer; --context-column names another)",
           where);
  } else {
    for (const auto& name : cols.context) {
      std::string t = *text_field(name, true);
      if (t.empty()) continue;
      if (!r.context.empty()) r.context += "\n\n";
      r.context += t;
    }
  }
  if (!cols.instruction.empty() &&
      std::find(cols.context.begin(), cols.context.end(), cols.instruction) == cols.context.end())
    if (auto instruction = text_field(cols.instruction, false)) {
      r.context = judge_context(*instruction, r.context);
      if (r.context.starts_with(*instruction)) r.instruction = *instruction;
    }
  r.response_a = *text_field(cols.response_a, true);
  r.response_b = *text_field(cols.response_b, true);
  if (!cols.human.empty()) {
    std::array<size_t, 3> votes{};
    for (const auto& name : cols.human) {
      const json* v = field_at(row, name);
      if (!v) fail("{}: field '{}' is missing (a human preference column)", where, name);
      std::optional<Choice> c;
      // An empty or null label is no preference: a TIE, with or without --human-labels.
      if (v->is_null() || (v->is_string() && v->get<std::string>().empty())) {
        c = Choice::Tie;
      } else if (!cols.human_labels.empty()) {
        auto it = cols.human_labels.find(raw_value(*v));
        if (it != cols.human_labels.end()) c = it->second;
      } else {
        c = parse_choice(*v);
      }
      if (!c)
        fail("{}: field '{}' is {}, not a label ({})", where, name, v->dump(),
             cols.human_labels.empty() ? "A, B, TIE, or 0/1 as the seed's choice; --human-labels maps other values"
                                       : "not in --human-labels");
      votes[size_t(*c)]++;
    }
    const size_t need = cols.human.size() / 2 + 1;  // a strict majority
    r.human = Choice::Tie;
    for (size_t k = 0; k < 3; ++k)
      if (votes[k] >= need) r.human = Choice(k);
  }
  return r;
}

}  // namespace

std::vector<AutoSxsRow> read_autosxs_input(const std::string& path, const AutoSxsColumns& cols, bool skip_invalid,
                                           size_t* skipped, std::vector<std::string>* problems) {
  size_t bad = 0;
  // A row, or (skip_invalid) a counted problem.
  auto take = [&](std::vector<AutoSxsRow>& rows, auto&& parse) {
    try {
      rows.push_back(parse());
    } catch (const Error& e) {
      if (!skip_invalid) throw;
      ++bad;
      if (problems && problems->size() < 20) problems->push_back(e.what());
    }
  };
  const PathInfo info = inspect_path(path);
  if (info.kind == PathKind::Missing) fail("{}: no such file", path);
  if (info.kind != PathKind::File) fail("{}: this path is {}, not a file of rows to judge", path, info.words);
  const std::string text = read_file(path, kMaxInputBytes);
  std::vector<AutoSxsRow> rows;
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '[') {
    json arr;
    try {
      arr = parse_json_unique_keys(text);
    } catch (const json::parse_error& e) {
      fail("{}: not valid JSON: {}", path, e.what());
    } catch (const RepeatedKeyError& e) {
      fail("{}:{}: key '{}' appears twice in one object (which value is meant is ambiguous); keep one", path, e.line(),
           e.key());
    }
    if (!arr.is_array()) fail("{}: not a JSON array of rows", path);
    for (size_t i = 0; i < arr.size(); ++i)
      take(rows, [&] { return parse_row(arr[i], cols, fmt::format("{}[{}]", path, i), i + 1); });
  } else {
    std::istringstream in(text);
    std::string line;
    size_t number = 0;
    while (std::getline(in, line)) {
      ++number;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const std::string where = fmt::format("{}:{}", path, number);
      take(rows, [&] {
        json row;
        try {
          row = parse_json_unique_keys(line);
        } catch (const json::parse_error& e) {
          fail("{}: not valid JSON: {}", where, e.what());
        } catch (const RepeatedKeyError& e) {
          fail("{}: key '{}' appears twice in one object (which value is meant is ambiguous); keep one", where, e.key());
        }
        return parse_row(row, cols, where, number);
      });
    }
  }
  if (skipped) *skipped = bad;
  if (rows.empty()) fail("{}: holds no {}rows", path, bad ? "valid " : "");
  return rows;
}

AutoSxsSummary summarize(const std::vector<Judgment>& judgments, const std::string& judge, JudgeTask task) {
  AutoSxsSummary s;
  s.judge = judge;
  s.task = task_name(task);
  std::vector<Choice> choices, judged, by_prob, human;
  double conf = 0;
  size_t consistent = 0;
  for (const auto& j : judgments) {
    choices.push_back(j.verdict.choice);
    conf += j.verdict.confidence;
    if ((j.prob_a_first > 0.5 && j.prob_a_second > 0.5) || (j.prob_a_first < 0.5 && j.prob_a_second < 0.5)) ++consistent;
    if (j.human) {
      judged.push_back(j.verdict.choice);
      by_prob.push_back(j.verdict.prob_a > 0.5 ? Choice::A : j.verdict.prob_a < 0.5 ? Choice::B : Choice::Tie);
      human.push_back(*j.human);
    }
  }
  s.wins = win_rates(choices);
  s.mean_confidence = judgments.empty() ? 0 : conf / judgments.size();
  s.position_consistency_pairs = judgments.size();
  s.position_consistency = judgments.empty() ? 0 : double(consistent) / double(judgments.size());
  if (!judgments.empty() && s.position_consistency < kMinPositionConsistency)
    s.judge_warning = fmt::format(
        "the judge agreed with itself across the two orders on {:.1f}% of {} pairs (below {:.0f}%): its win rates say "
        "little; pass a stronger judge with --judge MODEL (rlhf autosxs) or autosxs.judge (the pipeline spec)",
        100 * s.position_consistency, judgments.size(), 100 * kMinPositionConsistency);
  if (!human.empty()) {
    s.agreement = agreement(judged, human);
    s.agreement_by_probability = agreement(by_prob, human);
  }
  return s;
}

json AutoSxsSummary::to_json() const {
  json j = {{"judge", judge},
            {"task", task},
            {"rows", wins.n},
            {"model_a_wins", wins.a},
            {"model_b_wins", wins.b},
            {"ties", wins.ties},
            {"model_a_win_rate", wins.a_rate},
            {"model_b_win_rate", wins.b_rate},
            {"tie_rate", wins.tie_rate},
            {"mean_confidence", mean_confidence},
            {"position_consistency", position_consistency},
            {"position_consistency_pairs", position_consistency_pairs},
            {"invalid_rows_skipped", invalid_rows_skipped}};
  if (!judge_warning.empty()) j["judge_warning"] = judge_warning;
  auto agreement_json = [](const Agreement& g) {
    json confusion = json::object();
    for (size_t h = 0; h < 2; ++h)
      for (size_t k = 0; k < 3; ++k)
        confusion[fmt::format("human_{}_judge_{}", choice_name(Choice(h)), choice_name(Choice(k)))] = g.confusion[h][k];
    return json{{"rows", g.n},          {"human_ties_dropped", g.human_ties},
                {"judge_ties", g.judge_ties}, {"accuracy", g.accuracy},
                {"precision", g.precision},   {"recall", g.recall},
                {"f1", g.f1},                 {"cohens_kappa", g.cohens_kappa},
                {"positive_class", "A"},      {"confusion", confusion}};
  };
  if (agreement) j["human_agreement"] = agreement_json(*agreement);
  if (agreement_by_probability) j["human_agreement_by_probability"] = agreement_json(*agreement_by_probability);
  return j;
}

std::string format_summary(const AutoSxsSummary& s) {
  std::string out = fmt::format("judge {} ({}), {} pairs: A wins {:.1f}%, B wins {:.1f}%, ties {:.1f}%, mean confidence {:.3f}\n",
                                s.judge, s.task, s.wins.n, 100 * s.wins.a_rate, 100 * s.wins.b_rate,
                                100 * s.wins.tie_rate, s.mean_confidence);
  out += fmt::format("position consistency {:.1f}% of {} pairs (the judge chose the same response in both orders)\n",
                     100 * s.position_consistency, s.position_consistency_pairs);
  if (s.agreement) {
    const Agreement& g = *s.agreement;
    out += fmt::format("against humans ({} pairs, {} human ties left out, {} judge ties): accuracy {:.3f}, "
                       "precision {:.3f}, recall {:.3f}, F1 {:.3f}, Cohen's kappa {:.3f}\n",
                       g.n, g.human_ties, g.judge_ties, g.accuracy, g.precision, g.recall, g.f1, g.cohens_kappa);
  }
  if (s.agreement_by_probability) {
    const Agreement& g = *s.agreement_by_probability;
    out += fmt::format("  by mean probability alone (a tie only at 0.5): accuracy {:.3f}, F1 {:.3f}, Cohen's kappa {:.3f}\n", g.accuracy,
                       g.f1, g.cohens_kappa);
  }
  return out;
}

void write_autosxs_files(const std::string& dir, const std::vector<Judgment>& judgments,
                         const AutoSxsSummary& summary) {
  const fs::path out(dir);
  std::string lines;
  for (const auto& j : judgments) {
    json row = {{"id", j.id},
                {"input_text", j.context},
                {"response_a", j.response_a},
                {"response_b", j.response_b},
                {"choice", choice_name(j.verdict.choice)},
                {"confidence", j.verdict.confidence},
                {"explanation", j.explanation},
                {"prob_a", j.verdict.prob_a},
                {"prob_a_first", j.prob_a_first},
                {"prob_a_second", j.prob_a_second}};
    if (j.human) row["human_preference"] = choice_name(*j.human);
    lines += row.dump(-1, ' ', false, json::error_handler_t::replace);
    lines += '\n';
  }
  write_file_atomic((out / "judgments.jsonl").string(), lines);
  write_file_atomic((out / "metrics.json").string(), summary.to_json().dump(2) + "\n");
}

namespace {
const OutputClaim kAutoSxsOutput{.command = "autosxs", .own = {"judgments.jsonl", "metrics.json"}, .resume = true};
}  // namespace

void check_autosxs_output(const std::string& dir) { check_output_dir(dir, kAutoSxsOutput); }

void write_autosxs_output(const std::string& dir, const std::vector<Judgment>& judgments,
                          const AutoSxsSummary& summary) {
  claim_output_dir(dir, kAutoSxsOutput);
  write_autosxs_files(dir, judgments, summary);
}

}  // namespace rlhf::eval
