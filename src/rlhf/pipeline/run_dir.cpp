#include "rlhf/pipeline/run_dir.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

#include <fmt/format.h>

#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"
#include "rlhf/util/hash.h"
#include "rlhf/util/json_file.h"
#include "rlhf/util/output_dir.h"

namespace rlhf::pipeline {
namespace fs = std::filesystem;
using nlohmann::json;

json Manifest::to_json() const {
  json j = {{"stage", stage},     {"state", state},     {"key", key},           {"plan_key", plan_key},
            {"inputs", inputs},   {"params", params},   {"outputs", outputs},   {"output_hashes", output_hashes},
            {"metrics", metrics}, {"started", started}, {"finished", finished},
            {"wall_seconds", wall_seconds}, {"attempts", attempts}, {"versions", versions}};
  if (!error.empty()) j["error"] = error;
  if (!accepted_edits.empty()) j["accepted_edits"] = accepted_edits;
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
  m.plan_key = str("plan_key", false);
  m.started = str("started", false);
  m.finished = str("finished", false);
  m.error = str("error", false);
  m.inputs = j.value("inputs", json::object());
  m.params = j.value("params", json::object());
  m.metrics = j.value("metrics", json::object());
  m.versions = j.value("versions", json::object());
  m.output_hashes = j.value("output_hashes", json::object());
  if (m.output_hashes.is_null()) m.output_hashes = json::object();
  if (!m.output_hashes.is_object()) fail("{}: field 'output_hashes' must be an object", source);
  if (auto it = j.find("accepted_edits"); it != j.end() && it->is_array())
    for (const auto& o : *it)
      if (o.is_string()) m.accepted_edits.push_back(o.get<std::string>());
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

std::string serve_command(const std::string& run_dir) {
  std::string dir = stage_dir(run_dir, "train_policy");
  // Quoted for the shell when it holds anything beyond the usual path characters.
  const bool plain = std::all_of(dir.begin(), dir.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '/' || c == '.' || c == '_' || c == '-' || c == '+' || c == ':' || c == '@' || c == ',';
  });
  std::string arg = "tuned=" + dir;
  if (!plain) {
    std::string q = "'";
    for (char c : arg) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    arg = q + "'";
  }
  return "rlhf serve --adapter " + arg;
}

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

namespace {

// A file's size, times and inode: any write to it, or its replacement, changes them.
std::string file_stamp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail("{}: cannot read: {}", path, std::strerror(errno));
  return fmt::format("{}|{}.{}|{}.{}|{}", st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec, st.st_ctim.tv_sec,
                     st.st_ctim.tv_nsec, st.st_ino);
}

// The files of a folder output, by path in it, less checkpoints/ and logs/ (no other stage
// reads them).
std::vector<std::string> output_files(const fs::path& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const fs::path rel = it->path().lexically_relative(dir);
    if (it.depth() == 0 && it->is_directory() && (rel == "checkpoints" || rel == "logs")) {
      it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file()) files.push_back(rel.generic_string());
  }
  if (ec) fail("{}: cannot list folder: {}", dir.string(), ec.message());
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

json output_hashes(const std::string& run_dir, const std::vector<std::string>& outputs, const json& known) {
  json out = json::object();
  for (const auto& rel : outputs) {
    const fs::path p = fs::path(run_dir) / rel;
    std::error_code ec;
    if (!fs::exists(p, ec)) continue;
    std::string stamp, sha;
    if (fs::is_directory(p, ec)) {
      const std::vector<std::string> files = output_files(p);
      for (const auto& f : files) stamp += f + "|" + file_stamp((p / f).string()) + "\n";
      stamp = sha256_hex(stamp);
      auto k = known.find(rel);
      if (k != known.end() && k->is_object() && k->value("stamp", "") == stamp) {
        sha = k->value("sha256", "");
      } else {
        std::string all;
        for (const auto& f : files) all += f + " " + sha256_file((p / f).string()) + "\n";
        sha = sha256_hex(all);
      }
    } else {
      stamp = file_stamp(p.string());
      auto k = known.find(rel);
      sha = k != known.end() && k->is_object() && k->value("stamp", "") == stamp ? k->value("sha256", "")
                                                                               : sha256_file(p.string());
    }
    out[rel] = {{"sha256", sha}, {"stamp", stamp}};
  }
  return out;
}

json output_sha256(const json& hashes) {
  json out = json::object();
  for (auto it = hashes.begin(); it != hashes.end(); ++it) out[it.key()] = it.value().value("sha256", "");
  return out;
}

OutputCheck check_outputs(const std::string& run_dir, const Manifest& m) {
  OutputCheck c;
  c.hashes = output_hashes(run_dir, m.outputs, m.output_hashes);
  for (const auto& rel : m.outputs) {
    if (!c.hashes.contains(rel)) {
      c.missing.push_back(rel);
      continue;
    }
    auto rec = m.output_hashes.find(rel);
    if (rec != m.output_hashes.end() && rec->is_object() && rec->value("sha256", "") != c.hashes[rel]["sha256"])
      c.edited.push_back(rel);
  }
  return c;
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
