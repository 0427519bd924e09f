// Datasets in object storage: `s3://bucket/key` and `gs://bucket/key` (`hdfs://` too where the
// machine has libhdfs), read in place through Apache Arrow's filesystem layer, with the
// standard credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
// AWS_REGION / AWS_DEFAULT_REGION, AWS_ENDPOINT_URL (an S3-compatible server; or the URI's
// `?endpoint_override=host:port&scheme=http`), and GOOGLE_APPLICATION_CREDENTIALS for GCS.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace arrow::io {
class RandomAccessFile;
}  // namespace arrow::io

namespace rlhf::data {

// True for a path that names object storage (s3://, gs://, gcs://, hdfs://, viewfs://).
bool is_remote_path(std::string_view path);

// The dataset files `spec` names: the object itself, or the *.jsonl, *.jsonl.gz and
// *.parquet objects under it when it is a prefix ("folder"), in name order; each as a URI
// that keeps the spec's query. Throws rlhf::Error naming the URI for a missing object or
// bucket, refused credentials ("access denied", naming the variables that hold them), or an
// empty prefix.
std::vector<std::string> expand_remote(const std::string& spec);

// The object at `uri`, opened for reading, and its size. Throws rlhf::Error naming the URI.
struct RemoteObject {
  std::shared_ptr<arrow::io::RandomAccessFile> file;
  int64_t size = 0;
};
RemoteObject open_remote(const std::string& uri);

// What identifies the content of the object at `uri` without reading it: the URI, its size and
// modification time, and the storage's ETag, version or generation where its metadata has
// them (text, for a content hash). Changes when the object is written again. Throws
// rlhf::Error naming the URI for a missing object or refused credentials.
std::string remote_fingerprint(const std::string& uri);

// Stops the storage clients (S3's SDK) once no object is open; needed before the process ends
// (Arrow: a process that exits with S3 still started may crash in its exit handlers).
// A program that reads remote datasets holds one RemoteSession for the whole of main().
void finish_remote();
struct RemoteSession {
  RemoteSession() = default;
  RemoteSession(const RemoteSession&) = delete;
  RemoteSession& operator=(const RemoteSession&) = delete;
  ~RemoteSession() { finish_remote(); }
};

}  // namespace rlhf::data
