// File helpers: whole-file reads with clear errors, and atomic writes (temp file in the
// same folder, fsync, rename) so that a crash never leaves a half-written file behind.
#pragma once
#include <string>
#include <string_view>

namespace rlhf {

// Reads a whole file; throws rlhf::Error naming the path. max_bytes bounds what is accepted.
std::string read_file(const std::string& path, size_t max_bytes = size_t(1) << 31);

// Writes bytes to path atomically (path.tmp.<pid> + fsync + rename). Creates parent folders.
void write_file_atomic(const std::string& path, std::string_view bytes);

// Writes all of bytes to the open file descriptor fd: short writes continue, EINTR retries.
// Throws rlhf::Error naming `path` (what fd is, for the message) and the system's reason.
void write_all(int fd, std::string_view bytes, std::string_view path);

// ~/.cache/rlhf (or $RLHF_CACHE, or $XDG_CACHE_HOME/rlhf).
std::string cache_dir();

}  // namespace rlhf
