// The fuzz targets' input as a file, for readers that take a path: each process writes its
// inputs into one scratch folder (under /dev/shm when there is one, else $TMPDIR or /tmp),
// removed when the process exits normally.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace rlhf::fuzz {

inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    std::string base = "/tmp";
    if (const char* t = std::getenv("TMPDIR"); t && *t) base = t;
    if (std::filesystem::is_directory("/dev/shm")) base = "/dev/shm";
    std::string templ = base + "/rlhf-fuzz-XXXXXX";
    if (!::mkdtemp(templ.data())) {
      std::perror("rlhf-fuzz: mkdtemp");
      std::abort();
    }
    static std::string made = templ;
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(made, ec);
    });
    return templ;
  }();
  return dir;
}

// Writes the bytes to scratch_dir()/name (replacing what was there) and returns the path.
inline std::string write_input(const uint8_t* data, size_t size, const std::string& name) {
  const std::string path = scratch_dir() + "/" + name;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::perror(path.c_str());
    std::abort();
  }
  for (size_t done = 0; done < size;) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n <= 0) {
      std::perror(path.c_str());
      std::abort();
    }
    done += size_t(n);
  }
  ::close(fd);
  return path;
}

// Reads every byte of a tensor's data, so that AddressSanitizer sees a view that runs past
// its buffer; the sum keeps the reads from being optimised away.
inline uint64_t touch(const uint8_t* p, size_t n) {
  uint64_t sum = 0;
  for (size_t i = 0; i < n; ++i) sum += p[i];
  return sum;
}

// A broken promise of a reader (not an input error): abort, so that libFuzzer keeps the input.
inline void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "rlhf-fuzz: invariant broken: %s\n", what);
    std::abort();
  }
}

}  // namespace rlhf::fuzz
