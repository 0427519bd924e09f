// The run report's reading of the run directory: values, JSON and JSONL files, the stages'
// states. Nothing here throws; what cannot be read becomes a note in the page.
#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <set>
#include <stdexcept>

#include <fmt/format.h>

#include "rlhf/pipeline/report_parts.h"
#include "rlhf/pipeline/status.h"
#include "rlhf/util/fs.h"
#include "rlhf/util/html.h"

namespace rlhf::pipeline::report {

namespace fs = std::filesystem;
using nlohmann::json;

std::string esc(std::string_view s) { return html::escape(s); }

std::string value_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer() || v.is_number_unsigned()) return v.dump();
  if (v.is_number()) return html::number(v.get<double>());
  if (v.is_null()) return "";
  return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::optional<double> number_at(const json& j, const char* key) {
  if (!j.is_object()) return std::nullopt;
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

std::string string_at(const json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

void flatten(const json& j, const std::string& prefix, std::vector<std::pair<std::string, std::string>>& out) {
  if (j.is_object() && !j.empty()) {
    for (auto it = j.begin(); it != j.end(); ++it)
      flatten(it.value(), prefix.empty() ? it.key() : prefix + "." + it.key(), out);
    return;
  }
  out.emplace_back(prefix, value_text(j));
}

std::optional<int64_t> parse_utc(const std::string& s) {
  std::tm tm{};
  char z = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                  &tm.tm_sec, &z) != 7 ||
      z != 'Z')
    return std::nullopt;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return int64_t(timegm(&tm));
}

std::string rel(const std::string& run_dir, const fs::path& p) {
  std::error_code ec;
  fs::path r = fs::relative(p, run_dir, ec);
  return ec || r.empty() ? p.string() : r.string();
}

// ---- files -------------------------------------------------------------------------------

Loaded load_json(const fs::path& p, const std::string& shown) {
  Loaded l;
  std::error_code ec;
  if (!fs::exists(p, ec)) return l;
  l.exists = true;
  try {
    l.value = json::parse(read_file(p.string(), size_t(64) << 20));
  } catch (const json::parse_error& e) {
    l.error = fmt::format("{}: not valid JSON ({})", shown, e.what());
  } catch (const std::exception& e) {
    l.error = e.what();
  }
  return l;
}

JsonLines load_jsonl(const fs::path& p, const std::string& shown, size_t limit) {
  JsonLines out;
  std::error_code ec;
  if (!fs::exists(p, ec)) return out;
  out.exists = true;
  std::ifstream f(p, std::ios::binary);
  if (!f) {
    out.first_error = fmt::format("{}: cannot open", shown);
    return out;
  }
  size_t lineno = 0;
  for (std::string line; std::getline(f, line);) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    ++out.lines;
    if (out.rows.size() >= limit) continue;
    try {
      json j = json::parse(line);
      if (!j.is_object()) throw std::runtime_error("not a JSON object");
      out.rows.push_back(std::move(j));
    } catch (const std::exception& e) {
      if (out.bad++ == 0) out.first_error = fmt::format("{} line {}: {}", shown, lineno, e.what());
    }
  }
  return out;
}

// ---- stages ------------------------------------------------------------------------------

const char* state_class(const std::string& state) {
  for (const char* s : {"done", "cached", "running", "interrupted", "failed"})
    if (state == s) return s;
  return state == "unreadable" ? "failed" : "pending";
}

namespace {

std::optional<int64_t> mtime(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return std::nullopt;
  return int64_t(st.st_mtime);
}

}  // namespace

std::vector<StageView> read_stages(const std::string& run_dir, const json& plan) {
  std::vector<StageView> out;
  if (!plan.is_object() || !plan.contains("stages") || !plan["stages"].is_array()) return out;
  const std::optional<int64_t> run_start = mtime(fs::path(run_dir) / "spec.yaml");
  const bool live = run_dir_locked(run_dir);
  std::set<std::string> seen;
  for (const auto& s : plan["stages"]) {
    StageView v;
    v.name = string_at(s, "name");
    if (v.name.empty() || !seen.insert(v.name).second) continue;
    v.title = string_at(s, "title");
    v.key = string_at(s, "key");
    if (auto it = s.find("deps"); it != s.end() && it->is_array())
      for (const auto& d : *it)
        if (d.is_string()) v.deps.push_back(d.get<std::string>());
    try {
      v.manifest = read_manifest(run_dir, v.name);
    } catch (const std::exception& e) {
      v.note = e.what();
    }
    if (!v.note.empty()) {
      v.state = "unreadable";
    } else {
      v.state = stage_state(v.manifest ? &*v.manifest : nullptr, v.key, live);
      if (v.state == "done") {  // cached when it finished before this run began
        const auto finished = parse_utc(v.manifest->finished);
        if (run_start && finished && *finished < *run_start) v.state = "cached";
      }
    }
    out.push_back(std::move(v));
  }
  return out;
}

std::string state_label(const StageView& s) {
  if (s.state == "stale") return "stale (runs again)";
  if (s.state == "unreadable") return "manifest unreadable";
  return s.state;
}

double wall_seconds(const StageView& s, int64_t now) {
  if (!s.manifest) return 0;
  if (s.state == "running") {
    if (auto started = parse_utc(s.manifest->started)) return double(std::max<int64_t>(0, now - *started));
  }
  return s.manifest->wall_seconds;
}

}  // namespace rlhf::pipeline::report
