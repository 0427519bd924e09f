// TensorBoard event files, written and read natively: TFRecord framing (u64 length, masked
// CRC32C of it, data, masked CRC32C of the data) around `Event` protobufs (wall_time,
// step, file_version, summary{value{tag, simple_value}}). The reader also understands the
// scalar tensors TF2 writes (summary.value.tensor), so it reads other tools' files.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace rlhf::track {

// CRC32C (Castagnoli) and TFRecord's mask of it.
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
uint32_t masked_crc32c(const void* data, size_t n);

// Appends scalar events to `events.out.tfevents.<unix time>.<host>.<pid>.rlhf` in a folder
// (created if needed). Each add is framed and flushed, so a kill loses at most the record
// being written; the reader stops cleanly at a torn tail.
class EventWriter {
 public:
  explicit EventWriter(const std::string& dir);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  void add_scalar(std::string_view tag, int64_t step, double value, double wall_time = 0 /*0 = now*/);
  void flush();
  const std::string& path() const { return path_; }

 private:
  void write_record(std::string_view data);
  std::string path_;
  std::FILE* file_ = nullptr;
};

struct ScalarPoint {
  std::string tag;
  int64_t step = 0;
  double wall_time = 0;
  double value = 0;
};

// Scalars of an event file, or of every event file (name containing "tfevents") under a
// folder, recursively, in file then record order. Throws rlhf::Error naming the file on a
// corrupt record (bad CRC, bad protobuf); a torn last record ends the file silently: one cut
// short, or one whose bytes turn into zeros that run to the end of the file (what a power
// loss leaves when the file's size reached the disk before its data).
std::vector<ScalarPoint> read_scalars(const std::string& path);

// The encoders the writer uses, exposed for tests: one TFRecord frame around `data`, and
// the serialized Event protobufs (the file_version event that starts a file; a scalar).
std::string encode_record(std::string_view data);
std::string encode_file_version_event(double wall_time);
std::string encode_scalar_event(double wall_time, int64_t step, std::string_view tag, float value);

}  // namespace rlhf::track
