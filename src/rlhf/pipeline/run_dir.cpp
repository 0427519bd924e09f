#include "rlhf/pipeline/run_dir.h"

#include <ctime>
#include <filesystem>

#include <fmt/format.h>

#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"
#include "rlhf/util/json_file.h"
#include "rlhf/util/output_dir.h"

namespace rlhf::pipeline {
namespace fs = std::filesystem;
using nlohmann::json;

json Manifest::to_json() const {
  json j = {{"stage", stage},     {"state", state},     {"key", key},
            {"inputs", inputs},   {"params", params},   {"outputs", outputs},
            {"metrics", metrics}, {"started", started}, {"finished", finished},
            {"wall_seconds", wall_seconds}, {"attempts", attempts}, {"versions", versions}};
  if (!error.empty()) j["error"] = error;
  return j;
}

Manifest Manifest::from_json(const json& j, const std::string& source) {
  if (!j.is_object()) fail("{}: not a JSON object", source);
  auto str = [&](const char* k, bool required) -> std::string {
    auto it = j.find(k);
    if (it == j.end() || it->is_null()) {
      if (required) fail("{}: field '{}' is missing", source, k);
      return "";
    }
    if (!it->is_string()) fail("{}: field '{}' must be a string", source, k);
    return it->get<std::string>();
  };
  Manifest m;
  m.stage = str("stage", true);
  m.state = str("state", true);
  if (m.state != "running" && m.state != "done" && m.state != "failed")
    fail("{}: field 'state' is \"{}\", not running, done or failed", source, m.state);
  m.key = str("key", true);
  m.started = str("started", false);
  m.finished = str("finished", false);
  m.error = str("error", false);
  m.inputs = j.value("inputs", json::object());
  m.params = j.value("params", json::object());
  m.metrics = j.value("metrics", json::object());
  m.versions = j.value("versions", json::object());
  if (auto it = j.find("outputs"); it != j.end() && it->is_array())
    for (const auto& o : *it)
      if (o.is_string()) m.outputs.push_back(o.get<std::string>());
  if (auto it = j.find("wall_seconds"); it != j.end() && it->is_number()) m.wall_seconds = it->get<double>();
  if (auto it = j.find("attempts"); it != j.end() && it->is_number_integer()) m.attempts = it->get<int64_t>();
  return m;
}

void claim_run_dir(const std::string& run_dir) {
  claim_output_dir(run_dir, {.command = "pipeline run",
                             .own = {"spec.yaml", "plan.json", "report.html", ".lock", "tensorboard", "validate",
                                     "label", "train_reward", "train_policy", "infer_untuned", "infer_tuned", "sxs",
                                     "autosxs", "export"},
                             .resume = true,
                             .flag = "--run-dir"});
}

std::string stage_dir(const std::string& run_dir, const std::string& stage) { return (fs::path(run_dir) / stage).string(); }
std::string manifest_path(const std::string& run_dir, const std::string& stage) {
  return (fs::path(run_dir) / stage / "manifest.json").string();
}
std::string tensorboard_dir(const std::string& run_dir, const std::string& stage) {
  return (fs::path(run_dir) / "tensorboard" / stage).string();
}
std::string report_path(const std::string& run_dir) { return (fs::path(run_dir) / "report.html").string(); }

std::optional<Manifest> read_manifest(const std::string& run_dir, const std::string& stage) {
  const std::string p = manifest_path(run_dir, stage);
  std::error_code ec;
  if (!fs::exists(p, ec)) return std::nullopt;
  return Manifest::from_json(read_json_file(p, size_t(16) << 20), p);
}

void write_manifest(const std::string& run_dir, const Manifest& m) {
  fs::create_directories(stage_dir(run_dir, m.stage));
  write_file_atomic(manifest_path(run_dir, m.stage), m.to_json().dump(2) + "\n");
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace rlhf::pipeline
