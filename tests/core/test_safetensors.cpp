// safetensors reader and writer: round trips, parity with the Python `safetensors` package in
// both directions (sharded model written by Python, our file read by Python), malformed files.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "rlhf/model/safetensors.h"
#include "rlhf/util/error.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using rlhf::DType;
using rlhf::HostTensor;
using rlhf::safetensors::Archive;
using rlhf::testing::scratch_dir;

std::string write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
  return p.string();
}

// A raw safetensors file: u64 header length, header, data.
std::string st_file(const std::string& header, const std::string& data) {
  std::string s(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(s.data(), &n, 8);
  return s + header + data;
}

// Opening `path` must throw rlhf::Error containing every part.
void expect_open_error(const std::string& path, std::initializer_list<std::string> parts) {
  try {
    Archive::open(path);
    ADD_FAILURE() << "opening " << path << " did not fail";
  } catch (const rlhf::Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

template <class T>
HostTensor owned(std::vector<int64_t> shape, DType dtype, std::vector<T> v) {
  auto buf = std::make_shared<std::vector<T>>(std::move(v));
  HostTensor t;
  t.shape = std::move(shape);
  t.dtype = dtype;
  t.data = reinterpret_cast<const uint8_t*>(buf->data());
  t.nbytes = buf->size() * sizeof(T);
  t.owner = buf;
  return t;
}

std::map<std::string, HostTensor> sample_tensors() {
  std::map<std::string, HostTensor> m;
  m["model.embed.weight"] = owned<float>({2, 3}, DType::F32, {0, 1.5f, -2, 3, 4, 5});
  m["model.norm.weight"] = owned<uint16_t>({3}, DType::F16, {0x3c00, 0xc000, 0x0001});
  m["lm_head.weight"] = owned<uint16_t>({2, 2}, DType::BF16, {0x3f80, 0x4049, 0xbf00, 0x0000});
  m["scalar"] = owned<float>({}, DType::F32, {7.0f});
  m["z.bias"] = owned<float>({3}, DType::F32, {-1, 0, 1});
  return m;
}

std::string bytes_of(const HostTensor& t) { return std::string(reinterpret_cast<const char*>(t.data), t.nbytes); }

void expect_same(const std::map<std::string, HostTensor>& want, const Archive& a) {
  std::vector<std::string> names;
  for (const auto& [name, t] : want) names.push_back(name);
  EXPECT_EQ(a.names(), names);
  for (const auto& [name, t] : want) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(a.contains(name));
    const HostTensor& got = a.get(name);
    EXPECT_EQ(got.dtype, t.dtype);
    EXPECT_EQ(got.shape, t.shape);
    EXPECT_EQ(bytes_of(got), bytes_of(t));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(got.data) % rlhf::dtype_size(got.dtype), 0u);
  }
}

TEST(SafetensorsTest, WriteThenReadRoundTrips) {
  const auto dir = scratch_dir();
  const auto path = (dir / "model.safetensors").string();
  const auto tensors = sample_tensors();
  rlhf::safetensors::write(path, tensors, {{"format", "pt"}, {"note", "r\xc3\xa9sum\xc3\xa9"}});

  const std::string bytes = rlhf::testing::read_text(path);
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.rfind("{\"__metadata__\"", 0), 0u) << header;
  const std::string padding = header.substr(header.rfind('}') + 1);
  EXPECT_LT(padding.size(), 8u);
  EXPECT_EQ(padding, std::string(padding.size(), ' '));
  // 4-byte types come first in the data, so every tensor is element-aligned.
  const auto j = nlohmann::json::parse(header);
  EXPECT_EQ(j["model.embed.weight"]["data_offsets"], nlohmann::json::parse("[0, 24]"));
  EXPECT_EQ(j["lm_head.weight"]["data_offsets"], nlohmann::json::parse("[40, 48]"));

  const Archive a = Archive::open(path);
  expect_same(tensors, a);
  EXPECT_EQ(a.metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"note", "r\xc3\xa9sum\xc3\xa9"}}));
  expect_same(tensors, Archive::open(dir.string()));  // a folder holding one file

  // Views into the file outlive the archive.
  HostTensor kept = a.get("z.bias");
  { const Archive gone = Archive::open(path); kept = gone.get("z.bias"); }
  EXPECT_EQ(bytes_of(kept), bytes_of(tensors.at("z.bias")));
}

TEST(SafetensorsTest, WriteRejectsInconsistentTensors) {
  const auto path = (scratch_dir() / "bad.safetensors").string();
  std::map<std::string, HostTensor> m;
  m["w"] = owned<float>({2, 3}, DType::F32, {1, 2, 3});
  try {
    rlhf::safetensors::write(path, m);
    ADD_FAILURE() << "no error";
  } catch (const rlhf::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'w'"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(path));
  m.clear();
  m["__metadata__"] = owned<float>({1}, DType::F32, {1});
  EXPECT_THROW(rlhf::safetensors::write(path, m), rlhf::Error);
}

TEST(SafetensorsTest, PythonReadsOurFile) {
  RLHF_REQUIRE_VENV(py);
  const auto path = (scratch_dir() / "ours.safetensors").string();
  const auto tensors = sample_tensors();
  rlhf::safetensors::write(path, tensors, {{"format", "pt"}});
  const auto script = rlhf::testing::source_dir() / "tests" / "parity" / "safetensors_ref.py";
  int status = 0;
  const std::string out = rlhf::testing::capture(py + " " + script.string() + " read " + path, &status);
  ASSERT_EQ(status, 0) << out;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["metadata"], nlohmann::json::parse(R"({"format": "pt"})"));
  ASSERT_EQ(j["tensors"].size(), tensors.size());
  const std::map<std::string, std::vector<double>> values = {
      {"model.embed.weight", {0, 1.5, -2, 3, 4, 5}},
      {"model.norm.weight", {1, -2, 5.960464477539063e-08}},
      {"lm_head.weight", {1, 3.140625, -0.5, 0}},
      {"scalar", {7}},
      {"z.bias", {-1, 0, 1}},
  };
  for (const auto& [name, t] : tensors) {
    SCOPED_TRACE(name);
    const auto& r = j["tensors"][name];
    EXPECT_EQ(r["dtype"].get<std::string>(), rlhf::dtype_name(t.dtype));
    EXPECT_EQ(r["shape"].get<std::vector<int64_t>>(), t.shape);
    EXPECT_EQ(r["values"].get<std::vector<double>>(), values.at(name));
  }
}

TEST(SafetensorsTest, ReadsShardedModelWrittenByPython) {
  RLHF_REQUIRE_VENV(py);
  const auto dir = scratch_dir();
  const auto script = rlhf::testing::source_dir() / "tests" / "parity" / "safetensors_ref.py";
  ASSERT_EQ(rlhf::testing::run(py + " " + script.string() + " shards " + dir.string()), 0);
  const auto ref = nlohmann::json::parse(rlhf::testing::read_text(dir / "ref.json"));
  for (const auto& path : {(dir / "model.safetensors.index.json").string(), dir.string()}) {
    SCOPED_TRACE(path);
    const Archive a = Archive::open(path);
    ASSERT_EQ(a.names().size(), ref.size());
    for (const auto& [name, r] : ref.items()) {
      SCOPED_TRACE(name);
      const HostTensor& t = a.get(name);
      EXPECT_EQ(rlhf::dtype_name(t.dtype), r["dtype"].get<std::string>());
      EXPECT_EQ(t.shape, r["shape"].get<std::vector<int64_t>>());
      const auto want = r["values"].get<std::vector<double>>();
      ASSERT_EQ(size_t(t.numel()), want.size());
      for (size_t i = 0; i < want.size(); ++i) {
        double got;
        if (t.dtype == DType::F32) {
          got = reinterpret_cast<const float*>(t.data)[i];
        } else {  // the F16 values here are exact in half precision: 1.5, -2, 65504, 0.25
          uint16_t h;
          std::memcpy(&h, t.data + 2 * i, 2);
          const int e = (h >> 10) & 0x1f;
          got = std::ldexp(1.0 + (h & 0x3ff) / 1024.0, e - 15) * ((h & 0x8000) ? -1 : 1);
        }
        EXPECT_EQ(got, want[i]) << i;
      }
    }
    EXPECT_EQ(a.metadata().at("format"), "np");
    EXPECT_EQ(a.metadata().at("shard0"), "model-00001-of-00002.safetensors");
    EXPECT_EQ(a.metadata().at("shard1"), "model-00002-of-00002.safetensors");
    try {
      a.get("absent.weight");
      ADD_FAILURE() << "no error";
    } catch (const rlhf::Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("'absent.weight'"), std::string::npos) << msg;
      EXPECT_NE(msg.find("model-00002-of-00002.safetensors"), std::string::npos) << msg;
    }
  }
}

// ---- malformed files ----

TEST(SafetensorsTest, RejectsBadHeaders) {
  const auto dir = scratch_dir();
  auto file = [&](const std::string& name, const std::string& bytes) {
    return write_bytes(dir / name, bytes);
  };
  std::string p = file("empty.safetensors", "");
  expect_open_error(p, {p, "only 0 bytes"});
  {
    std::string b(8, '\0');
    const uint64_t n = uint64_t(1) << 62;
    std::memcpy(b.data(), &n, 8);
    p = file("huge.safetensors", b + "{}");
    expect_open_error(p, {p, "header length 4611686018427387904", "limit"});
  }
  {
    std::string b = st_file("{}", "");
    const uint64_t n = 1000;
    std::memcpy(b.data(), &n, 8);
    p = file("long.safetensors", b);
    expect_open_error(p, {p, "header length 1000", "2 bytes"});
  }
  p = file("notjson.safetensors", st_file("{not json", ""));
  expect_open_error(p, {p, "not valid JSON"});
  p = file("array.safetensors", st_file("[1, 2]", ""));
  expect_open_error(p, {p, "not a JSON object"});
  p = file("meta.safetensors", st_file(R"({"__metadata__": {"a": 1}})", ""));
  expect_open_error(p, {p, "__metadata__", "'a'"});
}

TEST(SafetensorsTest, RejectsBadTensorEntries) {
  const auto dir = scratch_dir();
  const std::string data(16, '\0');
  auto check = [&](const std::string& name, const std::string& entry, std::initializer_list<std::string> parts) {
    const std::string p = write_bytes(dir / (name + ".safetensors"), st_file(R"({"w": )" + entry + "}", data));
    SCOPED_TRACE(name);
    expect_open_error(p, {p, "'w'"});
    expect_open_error(p, parts);
  };
  check("past", R"({"dtype": "F32", "shape": [100], "data_offsets": [0, 400]})",
        {"[0, 400)", "outside the data section of 16 bytes"});
  check("reversed", R"({"dtype": "F32", "shape": [0], "data_offsets": [8, 4]})", {"outside the data section"});
  check("size", R"({"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 16]})",
        {"[2,3]", "needs 24 bytes but data_offsets span 16"});
  check("dtype", R"({"dtype": "I64", "shape": [2], "data_offsets": [0, 16]})", {"dtype I64", "not supported"});
  check("nodtype", R"({"shape": [2], "data_offsets": [0, 8]})", {"'dtype'"});
  check("noshape", R"({"dtype": "F32", "data_offsets": [0, 8]})", {"'shape'"});
  check("offsets", R"({"dtype": "F32", "shape": [2], "data_offsets": [0]})", {"data_offsets"});
  check("negoffset", R"({"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]})", {"data_offsets"});
  check("negshape", R"({"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]})", {"non-negative"});
  check("overflow", R"({"dtype": "F32", "shape": [4294967296, 4294967296, 4], "data_offsets": [0, 8]})",
        {"overflows"});
  check("entry", R"([1])", {"not an object"});
}

TEST(SafetensorsTest, EveryTruncatedPrefixFails) {
  const auto dir = scratch_dir();
  rlhf::safetensors::write((dir / "t.safetensors").string(), sample_tensors(), {{"k", "v"}});
  const std::string bytes = rlhf::testing::read_text(dir / "t.safetensors");
  const auto cut = dir / "cut.safetensors";
  for (size_t n = 0; n < bytes.size(); ++n) {
    write_bytes(cut, bytes.substr(0, n));
    try {
      Archive::open(cut.string());
      ADD_FAILURE() << "prefix of " << n << " bytes opened";
    } catch (const rlhf::Error& e) {
      EXPECT_NE(std::string(e.what()).find(cut.string()), std::string::npos) << e.what();
    }
  }
}

TEST(SafetensorsTest, RejectsBadIndexesAndFolders) {
  const auto dir = scratch_dir();
  rlhf::safetensors::write((dir / "a.safetensors").string(), sample_tensors());
  const auto index = (dir / "model.safetensors.index.json").string();

  write_bytes(index, R"({"weight_map": {"z.bias": "a.safetensors", "x.weight": "nope.safetensors"}})");
  expect_open_error(index, {index, "'nope.safetensors'", "'x.weight'", "does not exist"});
  expect_open_error(dir.string(), {index, "does not exist"});  // the folder prefers its index

  write_bytes(index, R"({"weight_map": {"z.bias": "a.safetensors", "ghost": "a.safetensors"}})");
  expect_open_error(index, {index, "'ghost'", "not in its shard"});

  write_bytes(index, R"({"weights": {}})");
  expect_open_error(index, {index, "weight_map"});
  write_bytes(index, R"({"weight_map": )");
  expect_open_error(index, {index, "not valid JSON"});

  // The index names only some tensors of the shard: those are the model.
  write_bytes(index, R"({"weight_map": {"z.bias": "a.safetensors"}})");
  EXPECT_EQ(Archive::open(index).names(), (std::vector<std::string>{"z.bias"}));

  fs::remove(index);
  rlhf::safetensors::write((dir / "b.safetensors").string(), sample_tensors());
  expect_open_error(dir.string(), {"b.safetensors", "'lm_head.weight'", "also in an earlier file"});

  const auto empty = dir / "empty";
  fs::create_directories(empty);
  expect_open_error(empty.string(), {empty.string(), "neither"});
}

}  // namespace
