#include "rlhf/data/remote.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <mutex>
#include <utility>

#include <arrow/filesystem/api.h>
#include <arrow/filesystem/s3fs.h>
#include <arrow/io/interfaces.h>
#include <arrow/util/key_value_metadata.h>
#include <fmt/format.h>

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

// Arrow's message for a failed request, with what it means when the storage refused the
// credentials (S3's and GCS's words for it): the variables to check are named.
std::string explain(const Located& l, const arrow::Status& st) {
  const std::string message = st.message();
  static const char* const refused[] = {"ACCESS_DENIED", "AccessDenied", "INVALID_ACCESS_KEY_ID", "InvalidAccessKeyId",
                                        "SIGNATURE_DOES_NOT_MATCH", "SignatureDoesNotMatch", "EXPIRED_TOKEN",
                                        "ExpiredToken", "INVALID_TOKEN", "InvalidToken", "HTTP status 403",
                                        "PERMISSION_DENIED", "UNAUTHENTICATED", "status 401"};
  bool denied = false;
  for (const char* word : refused) denied = denied || message.find(word) != std::string::npos;
  if (!denied) return message;
  const char* variables = l.scheme == "s3" ? "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN or the AWS profile"
                          : l.scheme == "gs" || l.scheme == "gcs" ? "GOOGLE_APPLICATION_CREDENTIALS"
                                                                  : "the storage's credentials";
  return fmt::format("access denied: the storage refused the credentials (check {}, and that they may read this "
                     "object) [{}]",
                     variables, message);
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
  if (!info.ok()) fail("{}: {}", spec, explain(l, info.status()));
  if (info->type() == arrow::fs::FileType::File) return {spec};
  if (info->type() == arrow::fs::FileType::NotFound) fail("{}: no such object or prefix", spec);
  arrow::fs::FileSelector selector;
  selector.base_dir = l.path;
  auto listed = l.fs->GetFileInfo(selector);
  if (!listed.ok()) fail("{}: cannot list: {}", spec, explain(l, listed.status()));
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
  if (!file.ok()) {
    if (file.status().IsIOError() && file.status().message().find("does not exist") != std::string::npos)
      fail("{}: no such object", uri);
    fail("{}: cannot open: {}", uri, explain(l, file.status()));
  }
  auto size = (*file)->GetSize();
  if (!size.ok()) fail("{}: cannot read its size: {}", uri, explain(l, size.status()));
  return {*file, *size};
}

std::string remote_fingerprint(const std::string& uri) {
  Located l = locate(uri);
  auto info = l.fs->GetFileInfo(l.path);
  if (!info.ok()) fail("{}: {}", uri, explain(l, info.status()));
  if (info->type() != arrow::fs::FileType::File) fail("{}: no such object", uri);
  std::string out = fmt::format("{}\nsize {}\nmtime {}\n", uri, info->size(),
                                std::chrono::duration_cast<std::chrono::nanoseconds>(info->mtime().time_since_epoch()).count());
  // The storage's own identity of the content, where the object's metadata carries it (opened
  // by path: S3 then asks for the object's metadata, which it skips when given the FileInfo).
  auto file = l.fs->OpenInputFile(l.path);
  if (!file.ok()) fail("{}: cannot open: {}", uri, explain(l, file.status()));
  auto metadata = (*file)->ReadMetadata();
  if (metadata.ok() && *metadata) {
    std::vector<std::pair<std::string, std::string>> identity;
    for (int64_t i = 0; i < (*metadata)->size(); ++i) {
      std::string lower = (*metadata)->key(i);
      std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
      for (const char* wanted : {"etag", "versionid", "version-id", "last-modified", "generation", "md5hash", "crc32c"})
        if (lower == wanted) identity.emplace_back(lower, (*metadata)->value(i));
    }
    std::sort(identity.begin(), identity.end());
    for (const auto& [key, value] : identity) out += key + " " + value + "\n";
  }
  return out;
}

}  // namespace rlhf::data
