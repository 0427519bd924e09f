// Output folders a command may write into, and only those. A folder the program creates gets
// a small marker file (kMarkerFile, JSON naming the command); an existing folder is used only
// when it is empty, or when it holds the marker of the same command and nothing but the
// command's own entries (an earlier run of it). Anything else is refused with an error naming
// the folder and the first entry that is not the command's, before the command does any work:
// a command never replaces or removes files it did not write.
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace rlhf {

// The marker file in every folder a command claimed: {"command": "...", "rlhf": "<version>"}.
inline constexpr const char* kMarkerFile = ".rlhf";

struct OutputClaim {
  std::string command;           // "train-reward", "pipeline run", ...: recorded and named in errors
  std::vector<std::string> own;  // the top-level entries the command writes ("name", or "prefix*");
                                 // "<own>.tmp.*" (an interrupted atomic write) counts as own too
  bool resume = false;           // an earlier run is kept as it is (continued, or replaced file by file)
  bool overwrite = false;        // an earlier run's own entries are removed (only those)
  std::string flag = "--output"; // the option naming the folder, for messages
  std::string resume_flag = "--resume";  // suggested when an earlier run is refused ("" = none)
};

// Makes `path` a folder this command may write into (creating it and its parents when
// missing) and returns true when it holds an earlier run of the same command that is kept
// (claim.resume). Throws rlhf::Error, changing nothing, when the path is not a folder, holds
// entries the command did not write, holds another command's output, or holds an earlier run
// while neither resume nor overwrite was asked for.
bool claim_output_dir(const std::string& path, const OutputClaim& claim);

// The same checks, changing nothing (nothing is created, marked or removed): for a command
// that checks its output before its work and claims it only when it writes.
bool check_output_dir(const std::string& path, const OutputClaim& claim);

// The same rule for a command whose output is one file, checked before its work (changing
// nothing): a missing file or an empty one is fine; an existing file may be replaced only when
// `is_own(path)` recognises it as this command's earlier output. Anything that is not a
// regular file (a folder, a device, a FIFO) is refused.
void check_output_file(const std::string& path, const std::string& command, const std::string& flag,
                       const std::function<bool(const std::string& path)>& is_own);

}  // namespace rlhf
