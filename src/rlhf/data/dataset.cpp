#include "rlhf/data/dataset.h"

#include <glob.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string_view>

#include <nlohmann/json.hpp>

#include "rlhf/data/lines.h"
#include "rlhf/data/parquet.h"
#include "rlhf/data/remote.h"
#include "rlhf/text/utf8.h"
#include "rlhf/text/words.h"
#include "rlhf/util/error.h"
#include "rlhf/util/json_file.h"
#include "rlhf/util/mapped_file.h"
#include "rlhf/util/path_kind.h"

namespace rlhf::data {
namespace {

using nlohmann::json;

constexpr size_t kListedProblems = 20;

// The problem with one line, without its "file:line: " prefix. Thrown by the row parsers
// and caught by the reading loop, which names the line.
struct BadLine {
  std::string message;     // without the field's name
  bool droppable = false;  // a row that is well formed but teaches nothing: left out, counted, named
  std::string field;       // the field at fault ("chosen", "messages[1].role"), when one is

  // The problem as reported: "field 'x': ..." for a JSONL line, "column 'x': ..." for a
  // Parquet row (whose top-level fields are the file's columns).
  std::string text(bool columns = false) const {
    if (field.empty()) return message;
    return fmt::format("{} '{}': {}", columns ? "column" : "field", field, message);
  }
};

template <class... Args>
[[noreturn]] void bad(fmt::format_string<Args...> f, Args&&... args) {
  throw BadLine{fmt::format(f, std::forward<Args>(args)...)};
}

template <class... Args>
[[noreturn]] void bad_field(std::string_view field, fmt::format_string<Args...> f, Args&&... args) {
  throw BadLine{fmt::format(f, std::forward<Args>(args)...), false, std::string(field)};
}

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float: return "a number";
    default: return "a value of unknown type";
  }
}

using text::is_blank;

bool has_any(const json& j, std::initializer_list<const char*> names) {
  return std::any_of(names.begin(), names.end(), [&](const char* n) { return j.contains(n); });
}

bool has_prompt_fields(const json& j) { return has_any(j, {"input_text", "prompt", "messages", "inputs"}); }
bool has_seed_fields(const json& j) { return has_any(j, {"candidate_0", "candidate_1", "choice"}); }
bool has_common_fields(const json& j) { return has_any(j, {"chosen", "rejected"}); }

// A text field of `obj` (shown as `field` in messages): present, a string, not blank.
std::string text_field(const json& obj, const char* key, std::string_view field) {
  auto it = obj.find(key);
  if (it == obj.end()) bad_field(field, "missing");
  if (!it->is_string()) bad_field(field, "must be a string, got {}", type_name(*it));
  std::string s = it->get<std::string>();
  if (s.empty()) bad_field(field, "is empty");
  if (is_blank(s)) bad_field(field, "is only whitespace");
  return s;
}
std::string text_field(const json& obj, const char* key) { return text_field(obj, key, key); }

// The turns of a message list (`field` names it in errors): objects with "author" (or "role",
// as Hugging Face writes it) and "content". Roles alternate from the user's (or, for a list of
// completions, the assistant's) turn; a system message may come first in a list that starts
// with the user. A prompt's list must end with the user's turn (the one the model answers).
std::vector<Turn> turns_of(const json& list, std::string_view field, bool starts_with_user,
                           bool ends_with_user = false) {
  if (!list.is_array()) bad_field(field, "must be an array, got {}", type_name(list));
  if (list.empty()) bad_field(field, "is empty");
  std::vector<Turn> turns;
  size_t first = 0;  // index of the first user/assistant turn
  for (size_t i = 0; i < list.size(); ++i) {
    const json& m = list[i];
    const std::string name = fmt::format("{}[{}]", field, i);
    if (!m.is_object()) bad_field(name, "must be an object, got {}", type_name(m));
    const char* key = m.contains("author") || !m.contains("role") ? "author" : "role";
    const std::string author_field = name + "." + key;
    auto it = m.find(key);
    if (it == m.end()) bad_field(author_field, "missing");
    if (!it->is_string()) bad_field(author_field, "must be a string, got {}", type_name(*it));
    std::string author = it->get<std::string>();
    if (author == "system") {
      if (i != 0 || !starts_with_user)
        bad_field(author_field, "a system message may only come first, before the user's turn");
      first = 1;
    } else if (author != "user" && author != "assistant") {
      bad_field(author_field, "must be 'system', 'user' or 'assistant', got '{}'", author);
    } else {
      const bool user_turn = ((i - first) % 2 == 0) == starts_with_user;
      const char* want = user_turn ? "user" : "assistant";
      if (author != want)
        bad_field(author_field, "is '{}' where '{}' was expected (turns alternate, starting with the {}'s)", author, want,
                  starts_with_user ? "user" : "assistant");
    }
    turns.push_back({author, text_field(m, "content", name + ".content")});
  }
  if (first == turns.size()) bad_field(field, "holds only a system message; the user's turn is missing");
  if (ends_with_user && turns.back().author != "user") {
    const json& last = list.back();
    bad_field(fmt::format("{}[{}].{}", field, list.size() - 1, last.contains("author") || !last.contains("role") ? "author" : "role"),
              "the last turn must be the user's (it is the one the model answers)");
  }
  return turns;
}

// A prompt from turns: the system message (if any) becomes the context.
PromptText prompt_of_turns(std::vector<Turn> turns) {
  PromptText p;
  if (turns.front().author == "system") {
    p.context = std::move(turns.front().content);
    turns.erase(turns.begin());
  }
  p.messages = std::move(turns);
  return p;
}

// The conversation of a chat line, with its optional "context" (or a system message).
PromptText chat_prompt(const json& j) {
  PromptText p = prompt_of_turns(turns_of(j["messages"], "messages", true, true));
  if (auto it = j.find("context"); it != j.end()) {
    if (!it->is_string()) bad_field("context", "must be a string, got {}", type_name(*it));
    if (!p.context.empty()) bad_field("context", "is given twice: as 'context' and as a system message in messages");
    p.context = it->get<std::string>();
  }
  return p;
}

// The prompt of a line from messages, input_text, prompt or the seed's bulk-inference
// inputs.inputs_pretokenized (in that order of preference). `usual` names the field a line
// of this kind usually has, for the message when none is there.
PromptText prompt_of(const json& j, const char* usual) {
  if (j.contains("messages")) return chat_prompt(j);
  PromptText p;
  if (j.contains("input_text")) {
    p.text = text_field(j, "input_text");
  } else if (j.contains("prompt")) {
    if (j["prompt"].is_array()) return prompt_of_turns(turns_of(j["prompt"], "prompt", true, true));
    p.text = text_field(j, "prompt");
  } else if (j.contains("inputs")) {
    const json& inputs = j["inputs"];
    if (!inputs.is_object()) bad_field("inputs", "must be an object, got {}", type_name(inputs));
    p.text = text_field(inputs, "inputs_pretokenized", "inputs.inputs_pretokenized");
  } else {
    bad_field(usual, "missing (the prompt is input_text, prompt or messages)");
  }
  return p;
}

// A completion field: a string, or (Hugging Face's conversational form) a list holding one
// assistant message.
std::string completion_of(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_array()) return text_field(j, key);
  std::vector<Turn> turns = turns_of(*it, key, /*starts_with_user=*/false);
  if (turns.size() != 1)
    bad_field(key, "holds {} messages; a completion is one assistant message", turns.size());
  return std::move(turns[0].content);
}

// Hugging Face's implicit-prompt conversational form: chosen and rejected are whole
// conversations; the turns they share are the prompt, and each must add one assistant turn.
void split_shared_turns(const json& j, PreferenceRow& r) {
  std::vector<Turn> chosen = turns_of(j.at("chosen"), "chosen", true);
  auto rejected_list = j.find("rejected");
  if (rejected_list == j.end()) bad_field("rejected", "missing (a list of messages like chosen)");
  if (!rejected_list->is_array())
    bad_field("rejected", "must be a list of messages like chosen, got {}", type_name(*rejected_list));
  std::vector<Turn> rejected = turns_of(*rejected_list, "rejected", true);
  size_t n = 0;
  while (n < chosen.size() && n < rejected.size() && chosen[n].author == rejected[n].author &&
         chosen[n].content == rejected[n].content)
    ++n;
  if (n == 0 || chosen[n - 1].author != "user")
    bad_field("chosen", "the turns it shares with rejected (the prompt) must end with the user's; {} are shared", n);
  for (const auto* side : {&chosen, &rejected}) {
    const char* name = side == &chosen ? "chosen" : "rejected";
    if (side->size() != n + 1 || side->back().author != "assistant")
      bad_field(name, "must be the shared conversation plus one assistant turn ({} turns are shared, it has {})", n,
                side->size());
  }
  r.chosen = std::move(chosen.back().content);
  r.rejected = std::move(rejected.back().content);
  chosen.pop_back();
  r.prompt = prompt_of_turns(std::move(chosen));
}

int choice_of(const json& j) {
  auto it = j.find("choice");
  if (it == j.end()) bad_field("choice", "missing");
  if (!it->is_number_integer() || (*it != 0 && *it != 1)) bad_field("choice", "must be 0 or 1, got {}", it->dump());
  return it->get<int>();
}

// HH-RLHF keeps the whole dialogue in both texts: their shared beginning is the prompt, cut
// right after the last "Assistant:" in it (the reply keeps its leading space), else before
// its last whitespace; the rest of each text is its completion.
void split_shared_prompt(PreferenceRow& r) {
  const std::string& a = r.chosen;
  const std::string& b = r.rejected;
  size_t n = std::mismatch(a.begin(), a.begin() + std::min(a.size(), b.size()), b.begin()).first - a.begin();
  std::string_view shared(a.data(), n);
  constexpr std::string_view marker = "Assistant:";
  size_t cut = shared.rfind(marker);
  if (cut != std::string_view::npos) cut += marker.size();
  else cut = shared.find_last_of(" \t\n\r\f\v");
  if (cut == std::string_view::npos || is_blank(shared.substr(0, cut)))
    bad_field("prompt", "missing, and chosen and rejected share no beginning to take as the prompt");
  r.prompt.text = a.substr(0, cut);
  r.chosen.erase(0, cut);
  r.rejected.erase(0, cut);
  for (const auto* side : {&r.chosen, &r.rejected})
    if (is_blank(*side))  // a dialogue that ends at its last "Assistant:": the pair teaches nothing
      throw BadLine{fmt::format("the final reply is empty (nothing follows the prompt it shares with {}); "
                                "the row is left out",
                                side == &r.chosen ? "rejected" : "chosen"),
                    /*droppable=*/true, side == &r.chosen ? "chosen" : "rejected"};
}

PreferenceRow parse_preference(const json& j) {
  PreferenceRow r;
  if (has_seed_fields(j)) {
    std::string c0 = text_field(j, "candidate_0");
    std::string c1 = text_field(j, "candidate_1");
    int choice = choice_of(j);
    if (c0 == c1) bad_field("candidate_1", "is the same text as candidate_0");
    r.prompt = prompt_of(j, "input_text");
    r.chosen = choice == 0 ? c0 : c1;
    r.rejected = choice == 0 ? c1 : c0;
  } else if (has_common_fields(j)) {
    if (!has_prompt_fields(j) && j.contains("chosen") && j["chosen"].is_array()) {
      split_shared_turns(j, r);
    } else {
      r.chosen = completion_of(j, "chosen");
      r.rejected = completion_of(j, "rejected");
      if (has_prompt_fields(j)) r.prompt = prompt_of(j, "prompt");
    }
    if (r.chosen == r.rejected) bad_field("rejected", "is the same text as chosen");
    if (!has_prompt_fields(j) && !r.prompt.is_chat()) split_shared_prompt(r);
  } else {
    bad("no completions: a preference line has candidate_0, candidate_1 and choice, or chosen and rejected");
  }
  return r;
}

// A prompt line; a preference line without prompt fields gives its shared beginning.
PromptText parse_prompt(const json& j) {
  if (!has_prompt_fields(j) && has_common_fields(j)) return parse_preference(j).prompt;
  return prompt_of(j, "input_text");
}

ScoredRow parse_scored(const json& j) {
  ScoredRow r;
  r.prompt = prompt_of(j, "input_text");
  const char* key = j.contains("completion") || !j.contains("prediction") ? "completion" : "prediction";
  auto it = j.find(key);
  if (it == j.end()) bad_field("completion", "missing (a line to score has completion or prediction)");
  if (!it->is_string()) bad_field(key, "must be a string, got {}", type_name(*it));
  r.completion = it->get<std::string>();
  return r;
}

// Byte offset of the first ill-formed UTF-8 sequence in s, if any.
std::optional<size_t> invalid_utf8_at(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    text::utf8::Step st = text::utf8::next(s, i);
    if (!st.valid) return i;
    i += st.len;
  }
  return std::nullopt;
}

// The top-level key of a JSON object line whose string value (or a string inside it) holds
// byte `at`; nothing when the line does not read as an object up to there.
std::optional<std::string> field_at(std::string_view line, size_t at) {
  int depth = 0;
  bool top_is_object = false, expect_key = false;
  std::string key;
  for (size_t i = 0; i < line.size() && i <= at; ++i) {
    char c = line[i];
    if (c == '"') {
      size_t end = i + 1;
      while (end < line.size() && line[end] != '"') end += line[end] == '\\' ? 2 : 1;
      const bool is_key = depth == 1 && top_is_object && expect_key;
      if (at <= end) {
        if (is_key || !top_is_object || key.empty()) return std::nullopt;
        return key;
      }
      if (is_key) key = std::string(line.substr(i + 1, end - i - 1)), expect_key = false;
      i = end;
    } else if (c == '{' || c == '[') {
      if (++depth == 1) top_is_object = c == '{', expect_key = top_is_object;
    } else if (c == '}' || c == ']') {
      --depth;
    } else if (c == ',' && depth == 1) {
      expect_key = top_is_object;
    }
  }
  return std::nullopt;
}

// The object a line holds, or the problem with the line (invalid UTF-8, bad JSON, not an object).
json parse_line(std::string_view line) {
  if (auto at = invalid_utf8_at(line)) {
    if (auto field = field_at(line, *at)) bad_field(*field, "invalid UTF-8 at byte {} of the line", *at);
    bad("invalid UTF-8 at byte {} of the line", *at);
  }
  json j;
  try {
    j = parse_json_unique_keys(line);
  } catch (const RepeatedKeyError& e) {
    bad("key '{}' appears twice in the line's JSON (which value is meant is ambiguous); keep one", e.key());
  } catch (const json::parse_error& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 5: ..." -> "column 5: ...",
    // kept short: its "last read" excerpt can be most of the line.
    std::string what = e.what();
    size_t col = what.find("column ");
    if (col != std::string::npos) what.erase(0, col);
    if (what.size() > 200) what = what.substr(0, text::utf8::complete_prefix(what.substr(0, 200))) + "...";
    bad("bad JSON: {}", what);
  }
  if (!j.is_object()) bad("the line is {}, not a JSON object", type_name(j));
  return j;
}

bool is_blank_line(std::string_view line) {
  return line.find_first_not_of(" \t\r\n\f\v") == std::string_view::npos;
}

// The refusal of a path that is neither a regular file nor a folder (nor missing).
[[noreturn]] void not_a_dataset_file(const std::string& path, const PathInfo& info) {
  fail("{}: this path is {}; a dataset is a JSONL file, a folder of them or a glob", path, info.words);
}

// Reads every line of the files `spec` names. parse(object) builds a row or throws BadLine;
// the problems are collected and reported as ReadOptions asks.
template <class Row, class Parse>
std::vector<Row> read_rows(const std::string& spec, const ReadOptions& options, ReadReport* report,
                           Parse parse) {
  ReadReport r;
  r.files = expand_paths(spec);
  std::vector<Row> rows;
  size_t lines = 0, problems = 0;
  size_t dropped = 0;
  // One record: a JSONL line, or a Parquet row (`columns`) as a JSON object.
  auto take = [&](const std::string& where, const json& object, std::string_view text, bool columns) {
    ++lines;
    try {
      Row row = parse(object, text);
      row.where = where;
      if (options.max_rows == 0 || rows.size() < options.max_rows) rows.push_back(std::move(row));
    } catch (const BadLine& e) {
      if (e.droppable) {
        if (dropped++ < kListedProblems) r.left_out.push_back(where + ": " + e.text(columns));
        return;
      }
      ++problems;
      if (r.errors.size() < kListedProblems) r.errors.push_back(where + ": " + e.text(columns));
    }
  };
  for (const std::string& path : r.files) {
    if (checked_dataset_file_size(path) >= 4 && is_parquet_file(path)) {
      for_each_parquet_row(path, [&](size_t number, const json& object) {
        take(fmt::format("{}: row {}", path, number), object, object.dump(), /*columns=*/true);
        return true;
      });
      continue;
    }
    for_each_line(path, [&](size_t number, std::string_view line) {
      if (is_blank_line(line)) return true;
      const std::string where = fmt::format("{}:{}", path, number);
      json object;
      try {
        object = parse_line(line);
      } catch (const BadLine& e) {
        ++lines, ++problems;
        if (r.errors.size() < kListedProblems) r.errors.push_back(where + ": " + e.text());
        return true;
      }
      take(where, object, line, /*columns=*/false);
      return true;
    });
  }
  r.rows = rows.size();
  r.skipped = options.skip_invalid ? problems : 0;
  r.dropped = dropped;
  if (dropped > 0)
    std::fprintf(stderr, "[rlhf] %s: %zu rows left out; the first: %s\n", spec.c_str(), dropped, r.left_out[0].c_str());
  if (report) *report = r;
  if (problems > 0 && !options.skip_invalid) {
    std::string message = fmt::format("{}", fmt::join(r.errors, "\n"));
    if (problems > r.errors.size()) message += fmt::format("\n... and {} more", problems - r.errors.size());
    fail("{}\n{}: {} of {} lines are invalid (skip-invalid leaves them out)", message, spec, problems, lines);
  }
  if (rows.empty()) {
    if (dropped > 0) fail("{}: no rows: all {} were left out; the first: {}", spec, dropped, r.left_out[0]);
    if (problems > 0) fail("{}: no valid rows: all {} lines are invalid; the first: {}", spec, lines, r.errors[0]);
    fail("{}: the dataset has no rows", spec);
  }
  return rows;
}

// SplitMix64 (Steele, Lea, Flood 2014): small, fast and the same everywhere.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n), n > 0, without modulo bias (Lemire's multiply-and-reject).
  uint64_t below(uint64_t n) {
    unsigned __int128 m = static_cast<unsigned __int128>(next()) * n;
    if (static_cast<uint64_t>(m) < n) {
      const uint64_t threshold = (0 - n) % n;
      while (static_cast<uint64_t>(m) < threshold) m = static_cast<unsigned __int128>(next()) * n;
    }
    return static_cast<uint64_t>(m >> 64);
  }

 private:
  uint64_t state_;
};

// The files a dataset folder contributes: JSONL (plain or gzip-compressed) and Parquet shards.
bool is_dataset_file_name(const std::string& name) {
  auto ends = [&](std::string_view suffix) {
    return name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return ends(".jsonl") || ends(".jsonl.gz") || ends(".parquet");
}

}  // namespace

std::vector<std::string> expand_paths(const std::string& spec) {
  namespace fs = std::filesystem;
  if (is_remote_path(spec)) return expand_remote(spec);
  const PathInfo info = inspect_path(spec);
  if (info.kind == PathKind::File) return {spec};
  if (info.kind == PathKind::Folder) {
    std::vector<std::string> files;
    std::error_code ec;
    for (fs::directory_iterator it(spec, ec), end; !ec && it != end; it.increment(ec)) {
      if (!is_dataset_file_name(it->path().filename().string())) continue;
      const std::string path = it->path().string();
      const PathInfo entry = inspect_path(path);
      if (entry.kind == PathKind::File) files.push_back(path);
      else if (entry.kind != PathKind::Folder) not_a_dataset_file(path, entry);
    }
    if (ec) fail("{}: cannot list the folder: {}", spec, ec.message());
    if (files.empty()) fail("{}: the folder holds no *.jsonl, *.jsonl.gz or *.parquet files", spec);
    std::sort(files.begin(), files.end());
    return files;
  }
  if (info.kind == PathKind::Other) not_a_dataset_file(spec, info);
  if (spec.find_first_of("*?[") == std::string::npos) fail("{}: no such file or folder", spec);
  glob_t g{};
  int rc = ::glob(spec.c_str(), 0, nullptr, &g);
  std::vector<std::string> files;
  std::optional<std::pair<std::string, PathInfo>> special;  // the first match that is not a file
  for (size_t i = 0; rc == 0 && i < g.gl_pathc; ++i) {
    const PathInfo match = inspect_path(g.gl_pathv[i]);
    if (match.kind == PathKind::File) files.push_back(g.gl_pathv[i]);
    else if (match.kind == PathKind::Other && !special) special.emplace(g.gl_pathv[i], match);
  }
  ::globfree(&g);
  if (rc != 0 && rc != GLOB_NOMATCH) fail("{}: cannot expand the pattern (glob error {})", spec, rc);
  if (special) not_a_dataset_file(special->first, special->second);
  if (files.empty()) fail("{}: no file matches this pattern", spec);
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<PreferenceRow> read_preference_dataset(const std::string& spec, const ReadOptions& options,
                                                   ReadReport* report) {
  return read_rows<PreferenceRow>(spec, options, report, [](const json& j, std::string_view) {
    return parse_preference(j);
  });
}

std::vector<PromptRow> read_prompt_dataset(const std::string& spec, const ReadOptions& options, ReadReport* report) {
  return read_rows<PromptRow>(spec, options, report, [](const json& j, std::string_view line) {
    PromptRow r;
    r.prompt = parse_prompt(j);
    r.json = std::string(line);
    return r;
  });
}

std::vector<ScoredRow> read_scored_dataset(const std::string& spec, const ReadOptions& options, ReadReport* report) {
  return read_rows<ScoredRow>(spec, options, report, [](const json& j, std::string_view line) {
    ScoredRow r = parse_scored(j);
    r.json = std::string(line);
    return r;
  });
}

bool has_preference_fields(const std::string& spec) {
  std::optional<bool> answer;  // from the first record that is a row of either kind
  auto classify = [&](const json& object) {
    try {
      parse_preference(object);
      answer = true;
      return false;
    } catch (const BadLine& e) {
      if (e.droppable) {
        answer = true;
        return false;
      }
    }
    try {
      parse_prompt(object);
      answer = false;
      return false;
    } catch (const BadLine&) {
    }
    return true;
  };
  for (const std::string& path : expand_paths(spec)) {
    if (checked_dataset_file_size(path) >= 4 && is_parquet_file(path)) {
      for_each_parquet_row(path, [&](size_t, const json& object) { return classify(object); });
    } else {
      for_each_line(path, [&](size_t, std::string_view line) {
        if (is_blank_line(line)) return true;
        try {
          return classify(parse_line(line));
        } catch (const BadLine&) {
          return true;
        }
      });
    }
    if (answer) return *answer;
  }
  return false;
}

std::vector<size_t> permutation(size_t n, uint64_t seed) {
  std::vector<size_t> p(n);
  for (size_t i = 0; i < n; ++i) p[i] = i;
  SplitMix64 rng(seed);
  for (size_t i = n; i > 1; --i) std::swap(p[i - 1], p[rng.below(i)]);
  return p;
}

Split holdout_split(size_t n, double fraction, size_t max_validation, uint64_t seed) {
  Split s;
  if (n == 0) return s;
  const double wanted = std::isfinite(fraction) ? std::round(static_cast<double>(n) * std::max(0.0, fraction)) : 0.0;
  // A positive fraction holds out at least one row (when there are two); zero holds out none.
  const bool some = wanted > 0 || (std::isfinite(fraction) && fraction > 0);
  size_t k = std::max(static_cast<size_t>(std::min(wanted, static_cast<double>(n))), size_t(some && n >= 2 ? 1 : 0));
  k = std::min(k, std::min(max_validation, n - 1));
  std::vector<size_t> order = permutation(n, seed);
  s.validation.assign(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k));
  s.train.assign(order.begin() + static_cast<std::ptrdiff_t>(k), order.end());
  std::sort(s.validation.begin(), s.validation.end());
  std::sort(s.train.begin(), s.train.end());
  return s;
}

}  // namespace rlhf::data
