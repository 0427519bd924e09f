#include "rlhf/util/output_dir.h"

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"
#include "rlhf/util/json_file.h"
#include "rlhf/util/path_kind.h"

namespace rlhf {
namespace {
namespace fs = std::filesystem;

// An entry the command wrote: an own name or pattern, the marker, or what an interrupted
// atomic write of one of them left behind ("<name>.tmp.<pid>").
bool is_own(const std::string& name, const std::vector<std::string>& own) {
  auto matches = [&](const std::string& pattern) {
    if (pattern.ends_with('*')) return name.starts_with(std::string_view(pattern).substr(0, pattern.size() - 1));
    return name == pattern || name.starts_with(pattern + ".tmp.");
  };
  return matches(kMarkerFile) || std::any_of(own.begin(), own.end(), matches);
}

void write_marker(const fs::path& dir, const std::string& command) {
  const nlohmann::json marker = {{"command", command}, {"rlhf", RLHF_VERSION}};
  write_file_atomic((dir / kMarkerFile).string(), marker.dump() + "\n");
}

// The command a marker names; throws when the file is not one this program wrote.
std::string marker_command(const fs::path& path, const std::string& folder, const std::string& flag) {
  try {
    const nlohmann::json j = read_json_file(path.string(), 64 << 10);
    if (j.is_object() && j.contains("command") && j["command"].is_string()) return j["command"].get<std::string>();
  } catch (const Error&) {
  }
  fail("{}: its {} file was not written by rlhf; choose another {}", folder, kMarkerFile, flag);
}

// claim_output_dir, or (act false) check_output_dir.
bool claim(const std::string& path, const OutputClaim& c, bool act) {
  if (path.empty()) fail("{} is empty", c.flag);
  const fs::path dir(path);
  const PathInfo info = inspect_path(path);
  if (info.kind == PathKind::Missing) {
    if (!act) return false;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) fail("{}: cannot create the folder: {}", path, ec.message());
    write_marker(dir, c.command);
    return false;
  }
  if (info.kind != PathKind::Folder) fail("{}: exists and is {}, not a folder; choose another {}", path, info.words, c.flag);

  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    names.push_back(it->path().filename().string());
  if (ec) fail("{}: cannot list the folder: {}", path, ec.message());
  std::sort(names.begin(), names.end());
  if (names.empty()) {
    if (act) write_marker(dir, c.command);
    return false;
  }
  const bool marked = std::find(names.begin(), names.end(), kMarkerFile) != names.end();
  if (!marked) {
    const std::string& first = names.front();
    fail("{}: the folder holds files rlhf did not write (first: {}); `rlhf {}` writes only into a new or empty "
         "folder or its own earlier output: choose another {}",
         path, first, c.command, c.flag);
  }
  const std::string command = marker_command(dir / kMarkerFile, path, c.flag);
  if (command != c.command)
    fail("{}: holds the output of `rlhf {}`, not of `rlhf {}`; choose another {}", path, command, c.command, c.flag);
  for (const std::string& name : names)
    if (!is_own(name, c.own))
      fail("{}: the folder holds files `rlhf {}` did not write (first: {}); it writes only into its own earlier "
           "output: choose another {}",
           path, c.command, name, c.flag);

  const bool earlier = std::any_of(names.begin(), names.end(), [](const std::string& n) {
    return n != kMarkerFile && !n.starts_with(std::string(kMarkerFile) + ".tmp.");
  });
  if (!earlier) return false;
  if (c.resume) return true;
  if (c.overwrite) {
    for (const std::string& name : names) {
      if (!act || name == kMarkerFile) continue;
      fs::remove_all(dir / name, ec);
      if (ec) fail("{}: cannot remove the earlier {}: {}", path, name, ec.message());
    }
    return false;
  }
  fail("{}: holds an earlier `rlhf {}` run; {}choose another {}", path, c.command,
       c.resume_flag.empty() ? std::string() : fmt::format("pass {} to continue it, or ", c.resume_flag), c.flag);
}

}  // namespace

bool claim_output_dir(const std::string& path, const OutputClaim& c) { return claim(path, c, true); }

bool check_output_dir(const std::string& path, const OutputClaim& c) { return claim(path, c, false); }

void check_output_file(const std::string& path, const std::string& command, const std::string& flag,
                       const std::function<bool(const std::string&)>& is_own_file) {
  if (path.empty()) fail("{} is empty", flag);
  const PathInfo info = inspect_path(path);
  if (info.kind == PathKind::Missing) return;
  if (info.kind == PathKind::Folder) fail("{}: is a folder; {} names the file `rlhf {}` writes", path, flag, command);
  if (info.kind != PathKind::File) fail("{}: exists and is {}, not a regular file; choose another {}", path, info.words, flag);
  std::error_code ec;
  if (fs::file_size(path, ec) == 0 && !ec) return;
  if (!is_own_file(path))
    fail("{}: exists and was not written by `rlhf {}`; it replaces only its own earlier output: choose another {} "
         "or remove the file",
         path, command, flag);
}

}  // namespace rlhf
