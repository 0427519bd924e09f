#include "rlhf/pipeline/status.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <map>

#include <fmt/format.h>

#include "rlhf/pipeline/run_dir.h"
#include "rlhf/util/error.h"
#include "rlhf/util/json_file.h"
#include "rlhf/util/progress.h"

namespace rlhf::pipeline {
namespace fs = std::filesystem;
using nlohmann::json;

int try_lock_run_dir(const std::string& run_dir) {
  fs::create_directories(run_dir);
  const std::string p = (fs::path(run_dir) / ".lock").string();
  int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) fail("{}: cannot open: {}", p, std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool run_dir_locked(const std::string& run_dir) {
  const std::string p = (fs::path(run_dir) / ".lock").string();
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool locked = ::flock(fd, LOCK_SH | LOCK_NB) != 0;
  ::close(fd);
  return locked;
}

std::string stage_state(const Manifest* m, const std::string& plan_key, bool live) {
  if (!m) return "pending";
  // A manifest of an older program has no plan_key: its key was the plan key.
  if (!plan_key.empty() && (m->plan_key.empty() ? m->key : m->plan_key) != plan_key) return "stale";
  if (m->state == "running") return live ? "running" : "interrupted";
  return m->state;
}

std::vector<StageStatus> run_status(const std::string& run_dir) {
  const fs::path plan_path = fs::path(run_dir) / "plan.json";
  std::error_code ec;
  if (!fs::exists(plan_path, ec)) fail("{}: no pipeline run here (plan.json is missing)", run_dir);
  const json plan = read_json_file(plan_path.string());
  if (!plan.contains("stages") || !plan["stages"].is_array()) fail("{}: field 'stages' is missing", plan_path.string());
  const bool live = run_dir_locked(run_dir);
  std::vector<StageStatus> out;
  std::map<std::string, json> outputs_now;  // stage -> {path: sha256} as the outputs are now
  for (const auto& st : plan["stages"]) {
    StageStatus s;
    s.name = st.value("name", "");
    s.title = st.value("title", "");
    const std::string key = st.value("key", "");
    auto m = read_manifest(run_dir, s.name);
    s.state = stage_state(m ? &*m : nullptr, key, live);
    if (m) {
      s.started = m->started;
      s.finished = m->finished;
      s.wall_seconds = m->wall_seconds;
      s.metrics = m->metrics;
      s.error = m->error;
      if (m->state == "done") {
        const OutputCheck check = check_outputs(run_dir, *m);
        outputs_now[s.name] = output_sha256(check.hashes);
        s.missing = check.missing;
        s.edited = check.edited;
        // What it read of the stages upstream, against what they hold now.
        for (auto it = m->inputs.begin(); it != m->inputs.end(); ++it) {
          if (!it->is_object() || !it->contains("outputs") || !outputs_now.count(it.key())) continue;
          const json& now = outputs_now[it.key()];
          for (auto o = (*it)["outputs"].begin(); o != (*it)["outputs"].end(); ++o)
            if (now.contains(o.key()) && now[o.key()] != o.value()) s.changed.push_back(o.key());
        }
        if (s.state == "done" && !s.edited.empty()) s.state = "edited";
        if (s.state != "stale" && (!s.missing.empty() || !s.changed.empty())) s.state = "stale";
      }
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::string format_status(const std::vector<StageStatus>& stages) {
  std::string out;
  for (const auto& s : stages) {
    std::string line = fmt::format("{:<14} {:<12}", s.name, s.state);
    if (s.state == "done" || s.state == "failed" || s.state == "stale" || s.state == "edited")
      line += fmt::format(" {:>8}  {}", Progress::format_duration(s.wall_seconds), s.finished);
    else if (s.state == "running" || s.state == "interrupted")
      line += fmt::format(" since {}", s.started);
    std::string metrics;
    if (s.metrics.is_object())
      for (auto it = s.metrics.begin(); it != s.metrics.end(); ++it) {
        if (!it.value().is_number()) continue;
        metrics += fmt::format("{}{} {:.4g}", metrics.empty() ? "" : ", ", it.key(), it.value().get<double>());
      }
    if (!metrics.empty()) line += "  " + metrics;
    out += line + "\n";
    if (s.state == "failed" && !s.error.empty()) out += "    error: " + s.error + "\n";
    auto list = [](const std::vector<std::string>& v) {
      std::string l;
      for (const auto& x : v) l += (l.empty() ? "" : ", ") + x;
      return l;
    };
    if (!s.edited.empty())
      out += "    edited by hand: " + list(s.edited) +
             " (pipeline run runs the stage again; with --accept-edited-outputs it uses the edit)\n";
    if (!s.missing.empty()) out += "    gone: " + list(s.missing) + " (pipeline run runs the stage again)\n";
    if (!s.changed.empty()) out += "    changed since it read them: " + list(s.changed) + " (pipeline run runs the stage again)\n";
  }
  return out;
}

}  // namespace rlhf::pipeline
