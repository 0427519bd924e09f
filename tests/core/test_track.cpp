// TensorBoard event files (CRC32C, record framing, writer, reader), the metrics logger
// (event files + CSV + JSONL, resume) and the progress line. TensorBoard's own
// EventAccumulator is the reference: it reads our files, and we read the course's TF2 files
// as it does.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "rlhf/track/metrics.h"
#include "rlhf/track/tensorboard.h"
#include "rlhf/util/error.h"
#include "rlhf/util/progress.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using rlhf::Progress;
using rlhf::testing::capture;
using rlhf::testing::read_text;
using rlhf::testing::scratch_dir;
using rlhf::testing::source_dir;
using rlhf::track::ScalarPoint;

std::string hex(const std::string& bytes) {
  std::string s;
  for (unsigned char c : bytes) s += fmt::format("{:02x}", c);
  return s;
}

std::vector<fs::path> event_files(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find("tfevents") != std::string::npos) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

// `tag step value wall_time` lines, sorted by tag then step (as tensorboard_ref.py prints them).
struct Line {
  std::string tag;
  int64_t step;
  double value, wall_time;
  bool operator<(const Line& o) const { return std::tie(tag, step) < std::tie(o.tag, o.step); }
};

std::vector<Line> lines_of(const std::vector<ScalarPoint>& points) {
  std::vector<Line> lines;
  for (const auto& p : points) lines.push_back({p.tag, p.step, p.value, p.wall_time});
  std::stable_sort(lines.begin(), lines.end());
  return lines;
}

// What TensorBoard's EventAccumulator reads from `path` (dev venv only).
std::vector<Line> tensorboard_reads(const std::string& py, const std::string& path) {
  int status = 0;
  const auto script = source_dir() / "tests" / "parity" / "tensorboard_ref.py";
  const std::string out = capture(py + " " + script.string() + " '" + path + "'", &status);
  EXPECT_EQ(status, 0) << out;
  std::vector<Line> lines;
  std::istringstream in(out);
  std::string text;
  while (std::getline(in, text)) {
    std::istringstream fields(text);
    Line l;
    std::string value, wall_time;
    fields >> l.tag >> l.step >> value >> wall_time;
    l.value = std::strtod(value.c_str(), nullptr);
    l.wall_time = std::strtod(wall_time.c_str(), nullptr);
    lines.push_back(l);
  }
  return lines;
}

void expect_same_lines(const std::vector<Line>& ours, const std::vector<Line>& theirs) {
  ASSERT_EQ(ours.size(), theirs.size());
  for (size_t i = 0; i < ours.size(); ++i) {
    SCOPED_TRACE(fmt::format("point {}: {} {}", i, theirs[i].tag, theirs[i].step));
    EXPECT_EQ(ours[i].tag, theirs[i].tag);
    EXPECT_EQ(ours[i].step, theirs[i].step);
    EXPECT_EQ(ours[i].value, theirs[i].value);
    EXPECT_EQ(ours[i].wall_time, theirs[i].wall_time);
  }
}

fs::path course_tensorboard() { return source_dir().parent_path() / "shared" / "data" / "course" / "tensorboard"; }

std::set<std::string> tags_of(const std::vector<ScalarPoint>& points) {
  std::set<std::string> tags;
  for (const auto& p : points) tags.insert(p.tag);
  return tags;
}

// ---- CRC and framing ------------------------------------------------------------------------

TEST(TrackCrc, KnownValues) {
  EXPECT_EQ(rlhf::track::crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(rlhf::track::crc32c("", 0), 0u);
  // 32 zero bytes and 32 0xff bytes (RFC 3720 B.4).
  std::string zeros(32, '\0'), ones(32, '\xff');
  EXPECT_EQ(rlhf::track::crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(rlhf::track::crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  // Incremental = one shot, across the 8-byte blocks.
  std::string text = "The quick brown fox jumps over the lazy dog, twice over.";
  for (size_t cut : {0, 1, 7, 8, 13, 40}) {
    uint32_t c = rlhf::track::crc32c(text.data(), cut);
    c = rlhf::track::crc32c(text.data() + cut, text.size() - cut, c);
    EXPECT_EQ(c, rlhf::track::crc32c(text.data(), text.size())) << cut;
  }
}

TEST(TrackRecord, FactsTestVectors) {
  using namespace rlhf::track;
  EXPECT_EQ(hex(encode_record(encode_file_version_event(1.0))),
            "1800000000000000a37f4b2209000000000000f03f1a0d627261696e2e4576656e743a3286bf577a");
  EXPECT_EQ(hex(encode_record(encode_scalar_event(1.0, 5, "loss", 0.5f))),
            "1a00000000000000129bd82d09000000000000f03f10052a0d0a0b0a046c6f7373150000003f1e6d8ff9");
}

// ---- writer and reader ----------------------------------------------------------------------

TEST(TrackEvents, WriteThenRead) {
  const fs::path dir = scratch_dir();
  std::vector<ScalarPoint> want;
  std::string path;
  {
    rlhf::track::EventWriter w(dir.string());
    path = w.path();
    const std::vector<std::string> tags = {"rank_loss", "accuracy", "timing/step s", "learning_rate"};
    for (int64_t step : std::vector<int64_t>{0, 1, 10, 300, int64_t(1) << 40}) {
      for (size_t t = 0; t < tags.size(); ++t) {
        const double value = std::sin(double(step) + double(t)) * std::pow(10.0, double(t) - 2);
        const double wall = 1.7e9 + double(step) * 0.25 + double(t) * 1e-3;
        w.add_scalar(tags[t], step, value, wall);
        want.push_back({tags[t], step, wall, static_cast<float>(value)});
      }
    }
    w.add_scalar("negative_step", -3, -0.0, 1.5);
    want.push_back({"negative_step", -3, 1.5, -0.0});
    // Readable while the writer is open (flushed after each add).
    EXPECT_EQ(rlhf::track::read_scalars(path).size(), want.size());
  }
  EXPECT_NE(fs::path(path).filename().string().find("events.out.tfevents."), std::string::npos);
  EXPECT_EQ(fs::path(path).parent_path(), dir);
  for (const std::string& p : {path, dir.string()}) {
    const auto got = rlhf::track::read_scalars(p);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      SCOPED_TRACE(i);
      EXPECT_EQ(got[i].tag, want[i].tag);
      EXPECT_EQ(got[i].step, want[i].step);
      EXPECT_EQ(got[i].wall_time, want[i].wall_time);
      EXPECT_EQ(got[i].value, want[i].value);
    }
  }
  // The first record is the file_version event.
  const std::string bytes = read_text(path);
  EXPECT_NE(bytes.substr(0, 64).find("brain.Event:2"), std::string::npos);
}

TEST(TrackEvents, WritersInOneFolderGetTheirOwnFiles) {
  const fs::path dir = scratch_dir() / "nested" / "run";
  {
    rlhf::track::EventWriter a(dir.string()), b(dir.string());
    EXPECT_NE(a.path(), b.path());
    a.add_scalar("x", 1, 1.0, 10);
    b.add_scalar("x", 2, 2.0, 20);
  }
  EXPECT_EQ(event_files(dir).size(), 2u);
  // A folder is read recursively, file by file in name order.
  const auto got = rlhf::track::read_scalars((dir.parent_path().parent_path()).string());
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].step, 1);
  EXPECT_EQ(got[1].step, 2);
}

TEST(TrackEvents, TensorBoardReadsOurFiles) {
  RLHF_REQUIRE_VENV(py);
  const fs::path dir = scratch_dir();
  {
    rlhf::track::EventWriter w(dir.string());
    for (int64_t step = 10; step <= 200; step += 10) {
      w.add_scalar("reward", step, 1.0 / double(step) - 0.3);
      w.add_scalar("kl_loss", step, std::exp(-double(step) / 50.0));
      w.add_scalar("learning_rate", step, 3e-6 * double(step));
    }
  }
  const auto ours = rlhf::track::read_scalars(dir.string());
  ASSERT_EQ(ours.size(), 60u);
  expect_same_lines(lines_of(ours), tensorboard_reads(py, dir.string()));
}

TEST(TrackEvents, BadCrcIsAnErrorNamingFileAndOffset) {
  const fs::path dir = scratch_dir();
  std::string path;
  {
    rlhf::track::EventWriter w(dir.string());
    path = w.path();
    w.add_scalar("loss", 1, 0.5, 1.0);
    w.add_scalar("loss", 2, 0.25, 2.0);
  }
  std::string bytes = read_text(path);
  const size_t second = bytes.size() - rlhf::track::encode_record(rlhf::track::encode_scalar_event(2.0, 2, "loss", 0.25f)).size();
  bytes[second + 20] ^= 0x40;  // inside the data of the last record
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  try {
    rlhf::track::read_scalars(dir.string());
    ADD_FAILURE() << "a bad CRC was not reported";
  } catch (const rlhf::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("byte " + std::to_string(second)), std::string::npos) << msg;
  }
  // A corrupt length field too.
  bytes = read_text(path);
  bytes[second + 20] ^= 0x40;
  bytes[second] ^= 0x01;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  EXPECT_THROW(rlhf::track::read_scalars(path), rlhf::Error);
}

TEST(TrackEvents, TornTailIsTolerated) {
  const fs::path dir = scratch_dir();
  std::string path;
  {
    rlhf::track::EventWriter w(dir.string());
    path = w.path();
    for (int step = 1; step <= 3; ++step) w.add_scalar("loss", step, 1.0 / step, step);
  }
  const std::string full = read_text(path);
  const size_t last = rlhf::track::encode_record(rlhf::track::encode_scalar_event(3.0, 3, "loss", 1.0f / 3)).size();
  // Every cut inside the last record (as a kill -9 mid-write leaves it) keeps the first two.
  for (size_t cut = 1; cut < last; ++cut) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << full.substr(0, full.size() - cut);
    const auto got = rlhf::track::read_scalars(path);
    ASSERT_EQ(got.size(), 2u) << "cut " << cut;
    EXPECT_EQ(got[1].step, 2);
  }
}

TEST(TrackEvents, MissingPathIsAnError) {
  try {
    rlhf::track::read_scalars("/nonexistent/run");
    ADD_FAILURE();
  } catch (const rlhf::Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/run"), std::string::npos);
  }
  // A folder without event files holds no scalars.
  EXPECT_TRUE(rlhf::track::read_scalars(scratch_dir().string()).empty());
}

// Hand-made TF2-style events: a scalar tensor (tensor_content, float_val packed and not,
// double_val, int64_val) with plugin "scalars" metadata, and tensors that are not scalars.
std::string varint(uint64_t v) {
  std::string s;
  while (v >= 0x80) {
    s.push_back(char((v & 0x7f) | 0x80));
    v >>= 7;
  }
  s.push_back(char(v));
  return s;
}
std::string field_bytes(int field, const std::string& b) { return varint(uint64_t(field) << 3 | 2) + varint(b.size()) + b; }
std::string field_varint(int field, uint64_t v) { return varint(uint64_t(field) << 3) + varint(v); }
template <class T>
std::string raw(T v) {
  std::string s(sizeof v, '\0');
  std::memcpy(s.data(), &v, sizeof v);
  return s;
}
std::string tensor_event(int64_t step, const std::string& tag, const std::string& tensor, const std::string& plugin) {
  std::string value = field_bytes(1, tag) + field_bytes(8, tensor);
  if (!plugin.empty()) value += field_bytes(9, field_bytes(1, field_bytes(1, plugin)));
  return varint(1 << 3 | 1) + raw(2.5) + field_varint(2, step) + field_bytes(5, field_bytes(1, value));
}

TEST(TrackEvents, ReadsTf2ScalarTensors) {
  const fs::path dir = scratch_dir();
  const std::string scalar_shape = field_bytes(2, "");
  std::string file = rlhf::track::encode_record(rlhf::track::encode_file_version_event(1.0));
  auto add = [&](const std::string& ev) { file += rlhf::track::encode_record(ev); };
  add(tensor_event(1, "content", field_varint(1, 1) + scalar_shape + field_bytes(4, raw(0.75f)), "scalars"));
  add(tensor_event(2, "packed", field_varint(1, 1) + scalar_shape + field_bytes(5, raw(-1.5f)), "scalars"));
  add(tensor_event(3, "unpacked", field_varint(1, 1) + scalar_shape + varint(5 << 3 | 5) + raw(2.25f), "scalars"));
  add(tensor_event(4, "double", field_varint(1, 2) + scalar_shape + field_bytes(6, raw(0.1)), ""));
  add(tensor_event(5, "int64", field_varint(1, 9) + scalar_shape + field_bytes(10, varint(uint64_t(-7))), "scalars"));
  add(tensor_event(6, "dtype_last", scalar_shape + field_bytes(4, raw(int32_t(42))) + field_varint(1, 3), ""));
  // Not scalars: a text tensor, a vector without plugin, a histogram plugin tensor.
  add(tensor_event(7, "text", field_varint(1, 7) + scalar_shape + field_bytes(8, "hello"), "text"));
  add(tensor_event(8, "vector", field_varint(1, 1) + field_bytes(2, field_bytes(2, field_varint(1, 2))) +
                                    field_bytes(4, raw(1.0f) + raw(2.0f)), ""));
  add(tensor_event(9, "histo", field_varint(1, 2) + scalar_shape + field_bytes(6, raw(3.0)), "histograms"));
  add(rlhf::track::encode_scalar_event(3.0, 10, "simple", 0.5f));
  std::ofstream(dir / "events.out.tfevents.1.host.v2", std::ios::binary) << file;

  const auto got = rlhf::track::read_scalars(dir.string());
  std::map<std::string, std::pair<int64_t, double>> by_tag;
  for (const auto& p : got) by_tag[p.tag] = {p.step, p.value};
  const std::map<std::string, std::pair<int64_t, double>> want = {
      {"content", {1, 0.75}}, {"packed", {2, -1.5}}, {"unpacked", {3, 2.25}}, {"double", {4, 0.1}},
      {"int64", {5, -7}},     {"dtype_last", {6, 42}}, {"simple", {10, 0.5}}};
  EXPECT_EQ(by_tag, want);
  EXPECT_EQ(got.front().wall_time, 2.5);

  // A length-delimited field longer than its message is a bad protobuf, reported.
  std::string bad = rlhf::track::encode_file_version_event(1.0) + varint(5 << 3 | 2) + varint(100) + "xx";
  std::ofstream(dir / "events.out.tfevents.2.host.v2", std::ios::binary) << rlhf::track::encode_record(bad);
  try {
    rlhf::track::read_scalars(dir.string());
    ADD_FAILURE();
  } catch (const rlhf::Error& e) {
    EXPECT_NE(std::string(e.what()).find("events.out.tfevents.2.host.v2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("byte 0"), std::string::npos) << e.what();
  }
}

// ---- the course's own event files (TF2, scalar tensors) -----------------------------------

TEST(TrackCourse, ReadsTheCourseEventFiles) {
  const fs::path root = course_tensorboard();
  if (!fs::exists(root)) GTEST_SKIP() << "course data absent: " << root;
  const auto rm = rlhf::track::read_scalars((root / "reward-model").string());
  EXPECT_EQ(tags_of(rm), (std::set<std::string>{"learning_rate", "learning_rate/current", "rank_loss", "timing/uptime"}));
  EXPECT_EQ(rm.size(), 4u * 141);
  for (const char* run : {"reinforcer-small", "reinforcer-full"}) {
    SCOPED_TRACE(run);
    const auto rl = rlhf::track::read_scalars((root / run).string());
    const auto tags = tags_of(rl);
    for (const char* tag : {"reward", "kl_loss", "rl_loss", "learning_rate"}) EXPECT_TRUE(tags.count(tag)) << tag;
    for (const auto& p : rl) ASSERT_TRUE(std::isfinite(p.value)) << p.tag << " " << p.step;
  }
  const auto full = rlhf::track::read_scalars((root / "reinforcer-full").string());
  EXPECT_EQ(full.size(), 6u * 1000);
  EXPECT_EQ(full.front().step, 10);
  EXPECT_EQ(full.back().step, 10000);
}

TEST(TrackCourse, AgreesWithTensorBoard) {
  const fs::path root = course_tensorboard();
  if (!fs::exists(root)) GTEST_SKIP() << "course data absent: " << root;
  RLHF_REQUIRE_VENV(py);
  for (const char* run : {"reward-model", "reinforcer-small", "reinforcer-full"}) {
    SCOPED_TRACE(run);
    const std::string dir = (root / run).string();
    expect_same_lines(lines_of(rlhf::track::read_scalars(dir)), tensorboard_reads(py, dir));
  }
}

// ---- metrics logger -------------------------------------------------------------------------

std::vector<std::string> lines_in(const fs::path& p) {
  std::vector<std::string> lines;
  std::istringstream in(read_text(p));
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

TEST(TrackMetrics, WritesCsvJsonlAndEvents) {
  const fs::path dir = scratch_dir() / "metrics";
  {
    rlhf::track::MetricsLogger log(dir.string());
    EXPECT_EQ(log.dir(), dir.string());
    log.log(1, {{"rank_loss", 0.693}, {"accuracy", 0.5}});
    log.log(2, {{"rank_loss", 0.1 + 0.2}, {"accuracy", NAN}, {"weird,tag", 1e-30}});
    // Flushed: readable while the logger is open.
    EXPECT_EQ(lines_in(dir / "metrics.csv").size(), 6u);
  }
  const auto csv = lines_in(dir / "metrics.csv");
  ASSERT_EQ(csv.size(), 6u);
  EXPECT_EQ(csv[0], "step,tag,value,wall_time");
  EXPECT_EQ(csv[1].rfind("1,accuracy,0.5,", 0), 0u) << csv[1];
  EXPECT_EQ(csv[2].rfind("1,rank_loss,0.693,", 0), 0u) << csv[2];
  EXPECT_EQ(csv[3].rfind("2,accuracy,nan,", 0), 0u) << csv[3];
  EXPECT_EQ(csv[4].rfind("2,rank_loss,0.30000000000000004,", 0), 0u) << csv[4];  // round-trips
  EXPECT_EQ(csv[5].rfind("2,\"weird,tag\",1e-30,", 0), 0u) << csv[5];

  const auto jsonl = lines_in(dir / "metrics.jsonl");
  ASSERT_EQ(jsonl.size(), 2u);
  const auto first = nlohmann::json::parse(jsonl[0]);
  EXPECT_EQ(first["step"], 1);
  EXPECT_EQ(first["rank_loss"].get<double>(), 0.693);
  EXPECT_GT(first["wall_time"].get<double>(), 1.6e9);
  const auto second = nlohmann::json::parse(jsonl[1]);
  EXPECT_TRUE(second["accuracy"].is_null());
  EXPECT_EQ(second["rank_loss"].get<double>(), 0.1 + 0.2);
  EXPECT_EQ(second["weird,tag"].get<double>(), 1e-30);

  const auto points = rlhf::track::read_scalars(dir.string());
  ASSERT_EQ(points.size(), 5u);
  EXPECT_EQ(points[0].tag, "accuracy");
  EXPECT_EQ(points[0].step, 1);
  EXPECT_EQ(points[4].tag, "weird,tag");
  EXPECT_EQ(points[4].value, double(1e-30f));
}

TEST(TrackMetrics, ResumeDropsLaterRows) {
  const fs::path dir = scratch_dir();
  {
    rlhf::track::MetricsLogger log(dir.string());
    for (int step = 1; step <= 5; ++step) log.log(step, {{"loss", 1.0 / step}});
  }
  // A kill mid-write leaves a torn last line; it goes too.
  std::ofstream(dir / "metrics.csv", std::ios::app) << "6,loss,0.1";
  std::ofstream(dir / "metrics.jsonl", std::ios::app) << "{\"step\":6,\"lo";
  {
    rlhf::track::MetricsLogger log(dir.string(), /*resume_step=*/3);
    log.log(4, {{"loss", 0.125}});
  }
  const auto csv = lines_in(dir / "metrics.csv");
  ASSERT_EQ(csv.size(), 5u);
  EXPECT_EQ(csv[0], "step,tag,value,wall_time");
  EXPECT_EQ(csv[3].rfind("3,loss,", 0), 0u);
  EXPECT_EQ(csv[4].rfind("4,loss,0.125,", 0), 0u);
  const auto jsonl = lines_in(dir / "metrics.jsonl");
  ASSERT_EQ(jsonl.size(), 4u);
  EXPECT_EQ(nlohmann::json::parse(jsonl[2])["step"], 3);
  EXPECT_EQ(nlohmann::json::parse(jsonl[3])["step"], 4);
  EXPECT_EQ(nlohmann::json::parse(jsonl[3])["loss"].get<double>(), 0.125);
  EXPECT_EQ(event_files(dir).size(), 2u);
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();

  // Without resume_step, a run starts its CSV and JSONL afresh.
  { rlhf::track::MetricsLogger log(dir.string()); }
  EXPECT_EQ(lines_in(dir / "metrics.csv"), std::vector<std::string>{"step,tag,value,wall_time"});
  EXPECT_TRUE(lines_in(dir / "metrics.jsonl").empty());
}

// ---- rlhf curves ------------------------------------------------------------------------------

TEST(TrackCurves, PrintsTagStepValueLines) {
  // This suite does not build the CLI; say so rather than fail when it is absent or older.
  if (!fs::exists(rlhf::testing::cli())) GTEST_SKIP() << "rlhf binary not built: " << rlhf::testing::cli();
  if (capture(rlhf::testing::cli() + " --help").find("curves") == std::string::npos)
    GTEST_SKIP() << rlhf::testing::cli() << " has no `curves` command yet: build the rlhf target";
  const fs::path dir = scratch_dir();
  {
    rlhf::track::EventWriter w((dir / "run").string());
    w.add_scalar("reward", 10, 0.5);
    w.add_scalar("kl_loss", 10, 0.1);
    w.add_scalar("reward", 20, -1.25);
    w.add_scalar("kl_loss", 20, 1e-7);
  }
  int rc = -1;
  std::string out = capture(rlhf::testing::cli() + " curves " + dir.string(), &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(out, "reward 10 0.5\nkl_loss 10 0.100000001\nreward 20 -1.25\nkl_loss 20 1.00000001e-07\n");
  out = capture(rlhf::testing::cli() + " curves " + dir.string() + " --tag reward", &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(out, "reward 10 0.5\nreward 20 -1.25\n");
  out = capture(rlhf::testing::cli() + " curves --tag reward --tag kl_loss " + dir.string(), &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(out, "reward 10 0.5\nkl_loss 10 0.100000001\nreward 20 -1.25\nkl_loss 20 1.00000001e-07\n");

  // Nothing readable there: an error naming the path.
  const fs::path empty = dir / "empty";
  fs::create_directories(empty);
  for (const std::string& p : {empty.string(), (dir / "missing").string()}) {
    out = capture(rlhf::testing::cli() + " curves " + p, &rc, true);
    EXPECT_EQ(rc, 1) << out;
    EXPECT_NE(out.find(p), std::string::npos) << out;
  }
  out = capture(rlhf::testing::cli() + " curves " + dir.string() + " --tag nope", &rc, true);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("nope"), std::string::npos) << out;
}

// ---- progress ---------------------------------------------------------------------------------

TEST(Progress, FormatDuration) {
  EXPECT_EQ(Progress::format_duration(0), "0s");
  EXPECT_EQ(Progress::format_duration(12.7), "12s");
  EXPECT_EQ(Progress::format_duration(59.99), "59s");
  EXPECT_EQ(Progress::format_duration(60), "1m00s");
  EXPECT_EQ(Progress::format_duration(185), "3m05s");
  EXPECT_EQ(Progress::format_duration(3599), "59m59s");
  EXPECT_EQ(Progress::format_duration(3600 + 125), "1h02m");
  EXPECT_EQ(Progress::format_duration(100 * 3600), "100h00m");
  EXPECT_EQ(Progress::format_duration(-5), "0s");
  EXPECT_EQ(Progress::format_duration(INFINITY), "?");
}

TEST(Progress, FormatLine) {
  // 120 of 1000 steps in 40 s: 3 step/s, 880 left: 293 s.
  EXPECT_EQ(Progress::format_line("train-reward", 120, 1000, "step", 0, 40, "rank_loss 0.412 acc 0.81"),
            "train-reward  120/1000 step  [##------------------]  12%  3.0 step/s  elapsed 40s  ETA 4m53s  "
            "rank_loss 0.412 acc 0.81");
  // Resumed at 100: the rate counts only the 20 steps done here.
  EXPECT_EQ(Progress::format_line("rl", 120, 1000, "step", 100, 40, ""),
            "rl  120/1000 step  [##------------------]  12%  2.0 s/step  elapsed 40s  ETA 29m20s");
  // Nothing done yet: no rate, no ETA; done: full bar, no ETA.
  EXPECT_EQ(Progress::format_line("x", 0, 10, "pair", 0, 1, ""), "x  0/10 pair  [--------------------]  0%  elapsed 1s");
  EXPECT_EQ(Progress::format_line("x", 10, 10, "pair", 0, 2, ""),
            "x  10/10 pair  [####################]  100%  5.0 pair/s  elapsed 2s");
  // Unknown total.
  EXPECT_EQ(Progress::format_line("gen", 300, 0, "token", 0, 2, ""), "gen  300 token  150 token/s  elapsed 2s");
}

TEST(Progress, UpdateAndFinishAreSafe) {
  Progress p("test", 3, "item");
  for (int i = 1; i <= 3; ++i) p.update(i, fmt::format("i {}", i));
  p.finish("done");
  p.finish();  // twice is harmless
  Progress unfinished("test2", 0);
  unfinished.update(5);
}

}  // namespace
