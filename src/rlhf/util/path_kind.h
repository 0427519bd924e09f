// What a path names (a regular file, a folder, something else, nothing), in words fit for an
// error message: readers refuse devices, FIFOs, sockets and symbolic-link loops by name
// instead of hanging on them or calling them missing.
#pragma once
#include <string>

namespace rlhf {

enum class PathKind { Missing, File, Folder, Other };

struct PathInfo {
  PathKind kind = PathKind::Missing;
  // "a regular file", "a folder", "a FIFO (named pipe)", "a socket", "a character device",
  // "a block device", "a symbolic link loop", "a symbolic link to a missing path",
  // "missing", or "unreadable (<reason>)".
  std::string words;
};

// Follows symbolic links (stat), without opening the path.
PathInfo inspect_path(const std::string& path);

}  // namespace rlhf
