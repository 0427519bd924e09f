#include "rlhf/util/fs.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "rlhf/util/error.h"
#include "rlhf/util/path_kind.h"

namespace rlhf {

std::string read_file(const std::string& path, size_t max_bytes) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    const PathInfo info = inspect_path(path);
    if (info.kind == PathKind::Missing) fail("{}: no such file", path);
    fail("{}: not a regular file: it is {}", path, info.words);
  }
  auto size = std::filesystem::file_size(path, ec);
  if (ec) fail("{}: cannot read size: {}", path, ec.message());
  if (size > max_bytes) fail("{}: file is {} bytes, more than the {} accepted here", path, size, max_bytes);
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("{}: cannot open: {}", path, std::strerror(errno));
  std::string s(size, '\0');
  f.read(s.data(), static_cast<std::streamsize>(size));
  if (static_cast<size_t>(f.gcount()) != size) fail("{}: short read", path);
  return s;
}

void write_all(int fd, std::string_view bytes, std::string_view path) {
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("{}: write failed: {}", path, std::strerror(errno));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  namespace fs = std::filesystem;
  fs::path target(path);
  if (target.has_parent_path()) fs::create_directories(target.parent_path());
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("{}: cannot create: {}", tmp, std::strerror(errno));
  try {
    write_all(fd, bytes, tmp);
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    fail("{}: cannot flush to disk", tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    fail("{}: cannot rename into place: {}", path, std::strerror(e));
  }
}

std::string cache_dir() {
  if (const char* c = std::getenv("RLHF_CACHE"); c && *c) return c;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/rlhf";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.cache/rlhf";
}

}  // namespace rlhf
