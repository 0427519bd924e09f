#include "rlhf/data/lines.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <arrow/io/interfaces.h>
#include <arrow/result.h>

#include "rlhf/data/remote.h"
#include "rlhf/util/error.h"
#include "rlhf/util/mapped_file.h"
#include "rlhf/util/path_kind.h"

namespace rlhf::data {

uint64_t checked_dataset_file_size(const std::string& path) {
  if (is_remote_path(path)) {
    const int64_t size = open_remote(path).size;
    if (static_cast<uint64_t>(size) > kMaxFileBytes)
      fail("{}: object is {} bytes; dataset files are limited to 4 GiB (split it)", path, size);
    return static_cast<uint64_t>(size);
  }
  const PathInfo info = inspect_path(path);
  if (info.kind == PathKind::Missing) fail("{}: no such file", path);
  if (info.kind != PathKind::File)
    fail("{}: this path is {}; a dataset is a JSONL file (or .jsonl.gz, .parquet), a folder of them or a glob", path, info.words);
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) fail("{}: cannot read: {}", path, ec.message());
  if (size > kMaxFileBytes) fail("{}: file is {} bytes; dataset files are limited to 4 GiB (split it)", path, size);
  return size;
}

namespace {

// Splits text into lines, keeping the unfinished last piece for the next call.
class LineSplitter {
 public:
  LineSplitter(const std::string& path, const std::function<bool(size_t, std::string_view)>& fn)
      : path_(path), fn_(fn) {}

  // Feeds `bytes`; false once fn asked to stop.
  bool feed(std::string_view bytes) {
    while (!bytes.empty()) {
      const size_t nl = bytes.find('\n');
      if (nl == std::string_view::npos) {
        if (pending_.size() + bytes.size() > kMaxLineBytes) too_long(pending_.size() + bytes.size());
        pending_.append(bytes);
        return true;
      }
      std::string_view line = bytes.substr(0, nl);
      bytes.remove_prefix(nl + 1);
      if (!pending_.empty()) {
        if (pending_.size() + line.size() > kMaxLineBytes) too_long(pending_.size() + line.size());
        pending_.append(line);
        if (!emit(pending_)) return false;
        pending_.clear();
      } else if (!emit(line)) {
        return false;
      }
    }
    return true;
  }
  // The last line when the text does not end with "\n".
  void finish() {
    if (!pending_.empty()) emit(pending_);
    pending_.clear();
  }
  size_t lines() const { return number_; }

 private:
  bool emit(std::string_view line) {
    if (line.size() > kMaxLineBytes) too_long(line.size());
    ++number_;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return fn_(number_, line);
  }
  [[noreturn]] void too_long(size_t bytes) const {
    fail("{}:{}: line is {} bytes or more; lines are limited to 64 MiB", path_, number_ + 1, bytes);
  }

  const std::string& path_;
  const std::function<bool(size_t, std::string_view)>& fn_;
  std::string pending_;
  size_t number_ = 0;
};

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Reads up to n bytes into buf; 0 at the end.
using ReadFn = std::function<int64_t(void* buf, int64_t n)>;

void gzip_lines(const std::string& path, const ReadFn& read, const std::function<bool(size_t, std::string_view)>& fn) {
  z_stream z{};
  if (inflateInit2(&z, 15 + 16) != Z_OK) fail("{}: cannot start gzip decompression", path);
  std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&z, inflateEnd);
  LineSplitter lines(path, fn);
  std::vector<unsigned char> in(size_t(1) << 20), out(size_t(4) << 20);
  uint64_t produced = 0;
  bool in_member = false;  // inside a gzip member whose end has not been read
  for (;;) {
    const int64_t got = read(in.data(), static_cast<int64_t>(in.size()));
    if (got == 0) break;
    z.next_in = in.data();
    z.avail_in = static_cast<uInt>(got);
    while (z.avail_in > 0) {
      in_member = true;  // input left: a member (the next one, after an end) is being read
      z.next_out = out.data();
      z.avail_out = static_cast<uInt>(out.size());
      const int rc = inflate(&z, Z_NO_FLUSH);
      if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
        fail("{}: not a valid gzip stream after line {}: {}", path, lines.lines(),
             z.msg ? z.msg : "inflate error " + std::to_string(rc));
      const size_t n = out.size() - z.avail_out;
      produced += n;
      if (produced > kMaxDecompressedBytes)
        fail("{}: decompresses to more than 64 GiB; split it", path);
      if (!lines.feed(std::string_view(reinterpret_cast<const char*>(out.data()), n))) return;
      if (rc == Z_STREAM_END) {
        in_member = false;
        if (inflateReset(&z) != Z_OK) fail("{}: cannot restart gzip decompression", path);
      } else if (rc == Z_BUF_ERROR && n == 0 && z.avail_in > 0) {
        fail("{}: not a valid gzip stream after line {}", path, lines.lines());
      }
    }
  }
  if (in_member) fail("{}: the gzip stream is cut short (after line {}): the file is truncated", path, lines.lines());
  lines.finish();
}

void stream_lines(const std::string& path, const ReadFn& read, const std::function<bool(size_t, std::string_view)>& fn) {
  LineSplitter lines(path, fn);
  std::vector<char> buf(size_t(4) << 20);
  for (int64_t got; (got = read(buf.data(), static_cast<int64_t>(buf.size()))) > 0;)
    if (!lines.feed(std::string_view(buf.data(), static_cast<size_t>(got)))) return;
  lines.finish();
}

ReadFn fd_reader(const std::string& path, int fd) {
  return [&path, fd](void* buf, int64_t n) -> int64_t {
    for (;;) {
      const ssize_t got = ::read(fd, buf, static_cast<size_t>(n));
      if (got >= 0) return got;
      if (errno != EINTR) fail("{}: cannot read: {}", path, std::strerror(errno));
    }
  };
}

ReadFn remote_reader(const std::string& path, const std::shared_ptr<arrow::io::RandomAccessFile>& file) {
  return [&path, file](void* buf, int64_t n) -> int64_t {
    auto got = file->Read(n, buf);
    if (!got.ok()) fail("{}: cannot read: {}", path, got.status().message());
    return *got;
  };
}

}  // namespace

std::string dataset_file_head(const std::string& path, size_t n) {
  std::string head(n, '\0');
  if (is_remote_path(path)) {
    auto object = open_remote(path);
    auto got = object.file->ReadAt(0, static_cast<int64_t>(n), head.data());
    head.resize(got.ok() ? static_cast<size_t>(*got) : 0);
    return head;
  }
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  const ssize_t got = fd.get() < 0 ? 0 : ::read(fd.get(), head.data(), n);
  head.resize(got > 0 ? static_cast<size_t>(got) : 0);
  return head;
}

bool is_gzip_file(const std::string& path) { return dataset_file_head(path, 2) == "\x1f\x8b"; }

void for_each_line(const std::string& path, const std::function<bool(size_t number, std::string_view line)>& fn) {
  const uint64_t size = checked_dataset_file_size(path);
  if (size == 0) return;
  const bool gzip = size >= 2 && is_gzip_file(path);
  if (is_remote_path(path)) {
    auto object = open_remote(path);
    const ReadFn read = remote_reader(path, object.file);
    return gzip ? gzip_lines(path, read, fn) : stream_lines(path, read, fn);
  }
  if (gzip) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) fail("{}: cannot open: {}", path, std::strerror(errno));
    return gzip_lines(path, fd_reader(path, fd.get()), fn);
  }
  auto file = MappedFile::open(path);
  LineSplitter lines(path, fn);
  if (lines.feed(std::string_view(reinterpret_cast<const char*>(file->data()), file->size()))) lines.finish();
}

}  // namespace rlhf::data
