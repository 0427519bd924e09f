// Datasets compressed with gzip (`.jsonl.gz`, as Anthropic's HH-RLHF ships) read as the same
// rows as the JSONL they hold, streamed; in folders and globs beside plain files; several
// gzip members read as one; a truncated or corrupt stream and a line over its bound are
// refused naming the file (and the line).
#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "rlhf/data/dataset.h"
#include "rlhf/data/lines.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"
#include "test_util.h"

namespace rlhf::data {
namespace {

namespace fs = std::filesystem;
using testing::scratch_dir;

// gzip of `text` (one member), as the gzip tool writes it.
std::string gzip(const std::string& text, int level = 6) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, text.size()) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  z.avail_in = static_cast<uInt>(text.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::string rows_text(int n) {
  std::string s;
  for (int i = 0; i < n; ++i)
    s += R"({"input_text": "question )" + std::to_string(i) + R"(", "candidate_0": "a", "candidate_1": "b )" +
         std::to_string(i) + R"(", "choice": )" + std::to_string(i % 2) + "}\r\n";
  return s;
}

std::string error_of(const std::string& spec) {
  try {
    read_preference_dataset(spec);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(DatasetGzip, ReadsTheSameRowsAsThePlainFile) {
  const fs::path dir = scratch_dir();
  const std::string text = rows_text(5000);  // several MiB of output buffers' worth of lines
  write_file_atomic((dir / "plain.jsonl").string(), text);
  write_file_atomic((dir / "packed.jsonl.gz").string(), gzip(text));
  auto plain = read_preference_dataset((dir / "plain.jsonl").string());
  auto packed = read_preference_dataset((dir / "packed.jsonl.gz").string());
  ASSERT_EQ(plain.size(), 5000u);
  ASSERT_EQ(packed.size(), plain.size());
  for (size_t i = 0; i < plain.size(); i += 499) {
    EXPECT_EQ(packed[i].prompt.text, plain[i].prompt.text);
    EXPECT_EQ(packed[i].chosen, plain[i].chosen);
    EXPECT_EQ(packed[i].rejected, plain[i].rejected);
  }
  EXPECT_EQ(packed[4321].where, (dir / "packed.jsonl.gz").string() + ":4322");
  // Told by content, not name; a folder takes both kinds, in name order.
  fs::create_directories(dir / "shards");
  write_file_atomic((dir / "shards" / "a.jsonl.gz").string(), gzip(rows_text(3)));
  write_file_atomic((dir / "shards" / "b.jsonl").string(), rows_text(2));
  write_file_atomic((dir / "shards" / "notes.txt").string(), "not data");
  ReadReport report;
  EXPECT_EQ(read_preference_dataset((dir / "shards").string(), {}, &report).size(), 5u);
  EXPECT_EQ(report.files.size(), 2u);
  EXPECT_EQ(read_preference_dataset((dir / "shards" / "*.gz").string()).size(), 3u);
}

TEST(DatasetGzip, ConcatenatedMembersReadAsOne) {
  const fs::path dir = scratch_dir();
  write_file_atomic((dir / "two.jsonl.gz").string(), gzip(rows_text(3)) + gzip(rows_text(4), 1));
  EXPECT_EQ(read_preference_dataset((dir / "two.jsonl.gz").string()).size(), 7u);
}

TEST(DatasetGzip, TruncatedCorruptAndOversizedAreRefusedByName) {
  const fs::path dir = scratch_dir();
  const std::string packed = gzip(rows_text(2000));
  const std::string cut = (dir / "cut.jsonl.gz").string();
  write_file_atomic(cut, packed.substr(0, packed.size() / 2));
  std::string e = error_of(cut);
  EXPECT_NE(e.find(cut + ": the gzip stream is cut short"), std::string::npos) << e;
  std::string bad = packed;
  for (size_t i = 40; i < 400; ++i) bad[i] = static_cast<char>(bad[i] ^ 0x5a);
  const std::string corrupt = (dir / "corrupt.jsonl.gz").string();
  write_file_atomic(corrupt, bad);
  e = error_of(corrupt);
  EXPECT_NE(e.find(corrupt + ": not a valid gzip stream"), std::string::npos) << e;
  // A line over 64 MiB inside a small compressed file is refused at the bound, by line.
  const std::string big = (dir / "big.jsonl.gz").string();
  write_file_atomic(big, gzip(rows_text(1) + std::string(kMaxLineBytes + 10, ' ') + "\n", 9));
  e = error_of(big);
  EXPECT_NE(e.find(big + ":2: line is"), std::string::npos) << e;
}

TEST(DatasetGzip, ForEachLineStopsWhenAsked) {
  const fs::path dir = scratch_dir();
  write_file_atomic((dir / "x.jsonl.gz").string(), gzip("a\nb\r\nc"));
  std::vector<std::string> seen;
  for_each_line((dir / "x.jsonl.gz").string(), [&](size_t n, std::string_view line) {
    seen.push_back(std::to_string(n) + ":" + std::string(line));
    return true;
  });
  EXPECT_EQ(seen, (std::vector<std::string>{"1:a", "2:b", "3:c"}));
  seen.clear();
  for_each_line((dir / "x.jsonl.gz").string(), [&](size_t n, std::string_view line) {
    seen.push_back(std::string(line));
    return n < 2;
  });
  EXPECT_EQ(seen, (std::vector<std::string>{"a", "b"}));
}

}  // namespace
}  // namespace rlhf::data
