#include "rlhf/data/remote.h"

#include <algorithm>
#include <mutex>

#include <arrow/filesystem/api.h>
#include <arrow/filesystem/s3fs.h>
#include <arrow/io/interfaces.h>

#include "rlhf/util/error.h"

namespace rlhf::data {
namespace {

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// S3 needs the AWS SDK started once and stopped before the process ends (finish_remote).
std::mutex s3_mutex;
bool s3_started = false;

void ensure_s3() {
  std::lock_guard<std::mutex> lock(s3_mutex);
  if (s3_started) return;
  auto st = arrow::fs::EnsureS3Initialized();
  if (!st.ok()) fail("cannot start S3 support: {}", st.message());
  s3_started = true;
}

// A filesystem for `uri` and the path inside it; `uri`'s query kept aside.
struct Located {
  std::shared_ptr<arrow::fs::FileSystem> fs;
  std::string path, scheme, query;
};

Located locate(const std::string& uri) {
  Located l;
  const size_t colon = uri.find("://");
  l.scheme = uri.substr(0, colon);
  if (const size_t q = uri.find('?'); q != std::string::npos) l.query = uri.substr(q);
  if (l.scheme == "s3") ensure_s3();
  auto fs = arrow::fs::FileSystemFromUri(uri, &l.path);
  if (!fs.ok()) fail("{}: cannot reach the storage: {}", uri, fs.status().message());
  l.fs = *fs;
  return l;
}

bool is_dataset_object(const std::string& name) {
  auto ends = [&](std::string_view suffix) {
    return name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return ends(".jsonl") || ends(".jsonl.gz") || ends(".parquet");
}

}  // namespace

bool is_remote_path(std::string_view path) {
  for (std::string_view scheme : {"s3://", "gs://", "gcs://", "hdfs://", "viewfs://"})
    if (starts_with(path, scheme)) return true;
  return false;
}

std::vector<std::string> expand_remote(const std::string& spec) {
  Located l = locate(spec);
  auto info = l.fs->GetFileInfo(l.path);
  if (!info.ok()) fail("{}: {}", spec, info.status().message());
  if (info->type() == arrow::fs::FileType::File) return {spec};
  if (info->type() == arrow::fs::FileType::NotFound) fail("{}: no such object or prefix", spec);
  arrow::fs::FileSelector selector;
  selector.base_dir = l.path;
  auto listed = l.fs->GetFileInfo(selector);
  if (!listed.ok()) fail("{}: cannot list: {}", spec, listed.status().message());
  std::vector<std::string> files;
  for (const auto& entry : *listed)
    if (entry.type() == arrow::fs::FileType::File && is_dataset_object(entry.base_name()))
      files.push_back(l.scheme + "://" + entry.path() + l.query);
  if (files.empty()) fail("{}: holds no *.jsonl, *.jsonl.gz or *.parquet objects", spec);
  std::sort(files.begin(), files.end());
  return files;
}

void finish_remote() {
  std::lock_guard<std::mutex> lock(s3_mutex);
  if (s3_started) (void)arrow::fs::EnsureS3Finalized();
}

RemoteObject open_remote(const std::string& uri) {
  Located l = locate(uri);
  auto file = l.fs->OpenInputFile(l.path);
  if (!file.ok()) fail("{}: cannot open: {}", uri, file.status().message());
  auto size = (*file)->GetSize();
  if (!size.ok()) fail("{}: cannot read its size: {}", uri, size.status().message());
  return {*file, *size};
}

}  // namespace rlhf::data
