#include "rlhf/util/path_kind.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

namespace rlhf {

PathInfo inspect_path(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int e = errno;
    if (e == ELOOP) return {PathKind::Other, "a symbolic link loop"};
    if (e == ENOENT || e == ENOTDIR) {
      struct stat l {};
      if (::lstat(path.c_str(), &l) == 0 && S_ISLNK(l.st_mode))
        return {PathKind::Other, "a symbolic link to a missing path"};
      return {PathKind::Missing, "missing"};
    }
    return {PathKind::Other, std::string("unreadable (") + std::strerror(e) + ")"};
  }
  if (S_ISREG(st.st_mode)) return {PathKind::File, "a regular file"};
  if (S_ISDIR(st.st_mode)) return {PathKind::Folder, "a folder"};
  if (S_ISFIFO(st.st_mode)) return {PathKind::Other, "a FIFO (named pipe)"};
  if (S_ISSOCK(st.st_mode)) return {PathKind::Other, "a socket"};
  if (S_ISCHR(st.st_mode)) return {PathKind::Other, "a character device"};
  if (S_ISBLK(st.st_mode)) return {PathKind::Other, "a block device"};
  return {PathKind::Other, "an unknown kind of file"};
}

}  // namespace rlhf
