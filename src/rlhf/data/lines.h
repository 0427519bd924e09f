// The lines of one dataset file, local (mapped) or in object storage (data/remote.h,
// streamed): JSONL as it is, or gzip-compressed (`.jsonl.gz`, told by its magic bytes, not its
// name) and decompressed as it is read, never whole in memory. One place for the bounds every
// dataset reader keeps.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace rlhf::data {

inline constexpr size_t kMaxLineBytes = size_t(64) << 20;         // one line
inline constexpr uint64_t kMaxFileBytes = uint64_t(4) << 30;       // a file as stored
inline constexpr uint64_t kMaxDecompressedBytes = uint64_t(64) << 30;  // a gzip file's content

// The size of the dataset file at `path`, checked to be a regular file (opening a FIFO would
// wait for a writer) of at most kMaxFileBytes; throws rlhf::Error naming it otherwise.
uint64_t checked_dataset_file_size(const std::string& path);

// The first n bytes of a dataset file, local or in object storage (fewer when it is shorter).
std::string dataset_file_head(const std::string& path, size_t n);

// True when the file at `path` starts with gzip's magic bytes (1f 8b).
bool is_gzip_file(const std::string& path);

// Calls fn(number, line) for each line of the file, numbered from 1, without its "\n" or a
// final "\r"; stops early when fn returns false. The file must be a regular file (a FIFO
// would block). Throws rlhf::Error naming the file, and the line where it applies, for a
// missing or special file, a file or line over its bound, and a gzip stream that is corrupt
// or cut short (several concatenated gzip members read as one, as gzip does).
void for_each_line(const std::string& path, const std::function<bool(size_t number, std::string_view line)>& fn);

}  // namespace rlhf::data
