// GGUF reader: files written here (every metadata type, plain tensors, malformed headers),
// dequantization parity with gguf-py, the real SmolLM2 file when present, and models whose
// weights the fuzz target (fuzz/fuzz_gguf.cpp) found mishandled.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/gguf_writer.h"
#include "rlhf/model/gguf.h"
#include "rlhf/model/loader.h"
#include "rlhf/util/error.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using rlhf::gguf::File;
using rlhf::gguf::TensorType;
using rlhf::gguf::ValueType;
using rlhf::testing::GgufWriter;
using rlhf::testing::scratch_dir;

std::string write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
  return p.string();
}

// Opening `path` must throw rlhf::Error naming the file and containing every part.
void expect_open_error(const std::string& path, std::initializer_list<std::string> parts) {
  try {
    File::open(path);
    ADD_FAILURE() << "opening " << path << " did not fail";
  } catch (const rlhf::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

void expect_error(const std::function<void()>& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no rlhf::Error";
  } catch (const rlhf::Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

std::string f32_bytes(std::vector<float> v) { return GgufWriter::bytes_of(v); }
std::string u16_bytes(std::vector<uint16_t> v) { return GgufWriter::bytes_of(v); }

std::vector<float> to_f32(const rlhf::HostTensor& h) {
  std::vector<float> out(size_t(h.numel()));
  const auto type = h.dtype == rlhf::DType::F32   ? TensorType::F32
                    : h.dtype == rlhf::DType::F16 ? TensorType::F16
                                                  : TensorType::BF16;
  rlhf::gguf::dequantize(type, h.data, out.data(), h.numel());
  return out;
}

// A small valid file: metadata of every type, tensors of the three plain types.
GgufWriter small_file() {
  GgufWriter w;
  w.add("v.u8", ValueType::U8, uint8_t(200));
  w.add("v.i8", ValueType::I8, int8_t(-100));
  w.add("v.u16", ValueType::U16, uint16_t(60000));
  w.add("v.i16", ValueType::I16, int16_t(-30000));
  w.add("v.u32", ValueType::U32, uint32_t(4000000000u));
  w.add("v.i32", ValueType::I32, int32_t(-2000000000));
  w.add("v.u64", ValueType::U64, uint64_t(1) << 40);
  w.add("v.i64", ValueType::I64, -(int64_t(1) << 40));
  w.add("v.f32", ValueType::F32, 1.5f);
  w.add("v.f64", ValueType::F64, 0.1);
  w.add("v.bool", ValueType::BOOL, uint8_t(1));
  w.add_string("v.str", "h\xc3\xa9llo w\xc3\xb6rld");
  w.add_array("a.u8", ValueType::U8, std::vector<uint8_t>{0, 255});
  w.add_array("a.i8", ValueType::I8, std::vector<int8_t>{-128, 127});
  w.add_array("a.u16", ValueType::U16, std::vector<uint16_t>{65535});
  w.add_array("a.i16", ValueType::I16, std::vector<int16_t>{-5, 5});
  w.add_array("a.u32", ValueType::U32, std::vector<uint32_t>{1, 4294967295u});
  w.add_array("a.i32", ValueType::I32, std::vector<int32_t>{-7, 0, 7});
  w.add_array("a.u64", ValueType::U64, std::vector<uint64_t>{uint64_t(1) << 50});
  w.add_array("a.i64", ValueType::I64, std::vector<int64_t>{-(int64_t(1) << 50)});
  w.add_array("a.f32", ValueType::F32, std::vector<float>{0.5f, -2.25f});
  w.add_array("a.f64", ValueType::F64, std::vector<double>{1e-300, 3.0});
  w.add_array("a.bool", ValueType::BOOL, std::vector<uint8_t>{1, 0, 1});
  w.add_string_array("a.str", {"alpha", "", "\xce\xb3"});
  w.add_array("a.empty", ValueType::U32, std::vector<uint32_t>{});
  w.add_tensor("w.f32", {2, 3}, TensorType::F32, f32_bytes({0, 1, 2, 3, 4, 5.5f}));
  // 1, -2, 2^-24 (smallest subnormal), 65504 (largest)
  w.add_tensor("w.f16", {4}, TensorType::F16, u16_bytes({0x3c00, 0xc000, 0x0001, 0x7bff}));
  // 1, 3.140625, -0.5, 0
  w.add_tensor("w.bf16", {2, 1, 2}, TensorType::BF16, u16_bytes({0x3f80, 0x4049, 0xbf00, 0x0000}));
  return w;
}

TEST(GgufTest, MetadataOfEveryTypeAndPlainTensorsRoundTrip) {
  const auto path = write_bytes(scratch_dir() / "small.gguf", small_file().build());
  const File f = File::open(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.metadata().size(), 25u);

  EXPECT_EQ(f.get_uint("v.u8"), 200u);
  EXPECT_EQ(f.get_int("v.i8"), -100);
  EXPECT_EQ(f.get_uint("v.u16"), 60000u);
  EXPECT_EQ(f.get_int("v.i16"), -30000);
  EXPECT_EQ(f.get_uint("v.u32"), 4000000000u);
  EXPECT_EQ(f.get_int("v.i32"), -2000000000);
  EXPECT_EQ(f.get_uint("v.u64"), uint64_t(1) << 40);
  EXPECT_EQ(f.get_int("v.i64"), -(int64_t(1) << 40));
  EXPECT_EQ(f.get_float("v.f32"), 1.5);
  EXPECT_EQ(f.get_float("v.f64"), 0.1);
  EXPECT_TRUE(f.get_bool("v.bool"));
  EXPECT_EQ(f.get_string("v.str"), "h\xc3\xa9llo w\xc3\xb6rld");
  EXPECT_EQ(f.metadata().at("v.u16").type, ValueType::U16);
  EXPECT_EQ(f.metadata().at("v.i16").type, ValueType::I16);

  EXPECT_EQ(f.get_int_array("a.u8"), (std::vector<int64_t>{0, 255}));
  EXPECT_EQ(f.get_int_array("a.i8"), (std::vector<int64_t>{-128, 127}));
  EXPECT_EQ(f.get_int_array("a.u16"), (std::vector<int64_t>{65535}));
  EXPECT_EQ(f.get_int_array("a.i16"), (std::vector<int64_t>{-5, 5}));
  EXPECT_EQ(f.get_int_array("a.u32"), (std::vector<int64_t>{1, 4294967295}));
  EXPECT_EQ(f.get_int_array("a.i32"), (std::vector<int64_t>{-7, 0, 7}));
  EXPECT_EQ(f.get_int_array("a.u64"), (std::vector<int64_t>{int64_t(1) << 50}));
  EXPECT_EQ(f.get_int_array("a.i64"), (std::vector<int64_t>{-(int64_t(1) << 50)}));
  EXPECT_EQ(f.get_float_array("a.f32"), (std::vector<double>{0.5, -2.25}));
  EXPECT_EQ(f.get_float_array("a.f64"), (std::vector<double>{1e-300, 3.0}));
  EXPECT_EQ(std::get<std::vector<bool>>(f.metadata().at("a.bool").v), (std::vector<bool>{true, false, true}));
  EXPECT_EQ(f.get_string_array("a.str"), (std::vector<std::string>{"alpha", "", "\xce\xb3"}));
  EXPECT_TRUE(f.get_int_array("a.empty").empty());
  EXPECT_EQ(f.metadata().at("a.u32").type, ValueType::ARRAY);
  EXPECT_EQ(f.metadata().at("a.u32").elem_type, ValueType::U32);

  ASSERT_EQ(f.tensors().size(), 3u);
  const auto* t32 = f.find_tensor("w.f32");
  ASSERT_NE(t32, nullptr);
  EXPECT_EQ(t32->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(t32->type, TensorType::F32);
  EXPECT_EQ(t32->nbytes, 24u);
  EXPECT_EQ(t32->offset % 32, 0u);
  auto h32 = f.load(*t32);
  EXPECT_EQ(h32.dtype, rlhf::DType::F32);
  EXPECT_EQ(h32.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(to_f32(h32), (std::vector<float>{0, 1, 2, 3, 4, 5.5f}));

  auto h16 = f.load(*f.find_tensor("w.f16"));
  EXPECT_EQ(h16.dtype, rlhf::DType::F16);
  EXPECT_EQ(h16.nbytes, 8u);
  EXPECT_EQ(to_f32(h16), (std::vector<float>{1, -2, std::ldexp(1.0f, -24), 65504}));

  const auto* tb = f.find_tensor("w.bf16");
  EXPECT_EQ(tb->shape, (std::vector<int64_t>{2, 1, 2}));
  auto hb = f.load(*tb);
  EXPECT_EQ(hb.dtype, rlhf::DType::BF16);
  EXPECT_EQ(to_f32(hb), (std::vector<float>{1, 3.140625f, -0.5f, 0}));
  EXPECT_EQ(f.find_tensor("absent"), nullptr);

  // Plain tensors are views into the mapping, which the tensor keeps alive.
  const std::string bytes = small_file().build();
  EXPECT_EQ(std::memcmp(hb.data, bytes.data() + tb->offset, 8), 0);
  EXPECT_NE(hb.owner, nullptr);
}

TEST(GgufTest, ReadsVersion2) {
  auto w = small_file();
  w.version = 2;
  const File f = File::open(write_bytes(scratch_dir() / "v2.gguf", w.build()));
  EXPECT_EQ(f.version(), 2u);
  EXPECT_EQ(f.tensors().size(), 3u);
}

TEST(GgufTest, HonoursAlignment) {
  const auto dir = scratch_dir();
  auto w = small_file();
  w.set_alignment(64);
  File f = File::open(write_bytes(dir / "a64.gguf", w.build()));
  for (const auto& t : f.tensors()) EXPECT_EQ(t.offset % 64, 0u) << t.name;
  EXPECT_EQ(to_f32(f.load(*f.find_tensor("w.bf16"))), (std::vector<float>{1, 3.140625f, -0.5f, 0}));

  // Alignment 1 puts the F32 tensor at an odd offset: it still loads, element-aligned.
  GgufWriter odd;
  odd.set_alignment(1);
  odd.add_tensor("a", {1}, TensorType::F16, u16_bytes({0x3c00}));
  odd.add_tensor("c", {3}, TensorType::F32, f32_bytes({1, 2, 3}));
  f = File::open(write_bytes(dir / "a1.gguf", odd.build()));
  auto c = f.load(*f.find_tensor("c"));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(c.data) % 4, 0u);
  EXPECT_EQ(to_f32(c), (std::vector<float>{1, 2, 3}));

  for (uint32_t bad : {0u, 48u}) {
    GgufWriter b;
    b.add("general.alignment", ValueType::U32, bad);
    expect_open_error(write_bytes(dir / "bad.gguf", b.build()), {"general.alignment", "power of two"});
  }
}

TEST(GgufTest, GettersConvertAndReject) {
  const auto path = write_bytes(scratch_dir() / "small.gguf", small_file().build());
  const File f = File::open(path);
  EXPECT_EQ(f.get_int("v.u32"), 4000000000);   // unsigned that fits
  expect_error([&] { f.get_int("a.u64"); }, {path, "'a.u64'", "array"});
  EXPECT_EQ(f.get_float("v.u16"), 60000.0);    // integers widen to float
  EXPECT_EQ(f.get_float_array("a.i32"), (std::vector<double>{-7, 0, 7}));
  EXPECT_EQ(f.find_uint("v.u32"), 4000000000u);
  EXPECT_FALSE(f.find_uint("absent").has_value());
  EXPECT_FALSE(f.find_float("absent").has_value());
  EXPECT_FALSE(f.find_string("absent").has_value());
  EXPECT_EQ(f.find_string("v.str"), "h\xc3\xa9llo w\xc3\xb6rld");

  expect_error([&] { f.get_uint("v.i8"); }, {path, "'v.i8'", "-100", "unsigned"});
  expect_error([&] { f.get_string("v.u32"); }, {path, "'v.u32'", "u32", "string"});
  expect_error([&] { f.get_bool("absent"); }, {path, "'absent'", "absent"});
  expect_error([&] { f.get_string_array("a.i32"); }, {path, "'a.i32'", "array of i32"});
  expect_error([&] { f.get_int_array("a.str"); }, {path, "array of string"});
  expect_error([&] { f.get_float("v.str"); }, {path, "'v.str'"});
  expect_error([&] { f.find_string("v.u8"); }, {path, "'v.u8'"});
}

// Hand-made blocks with values worked out from the format definitions.
TEST(GgufTest, DequantizesHandMadeBlocks) {
  using rlhf::gguf::dequantize;
  {  // Q8_0: d = 0.5
    uint8_t b[34] = {0x00, 0x38};
    b[2] = 0x80, b[3] = 0x7f, b[5] = 1;
    float y[32];
    dequantize(TensorType::Q8_0, b, y, 32);
    EXPECT_EQ(y[0], -64.0f);
    EXPECT_EQ(y[1], 63.5f);
    EXPECT_EQ(y[2], 0.0f);
    EXPECT_EQ(y[3], 0.5f);
  }
  {  // Q4_0: d = 2; element j is the low nibble of byte j, element j+16 the high nibble.
    uint8_t b[18] = {0x00, 0x40, 0x9f, 0x08};
    float y[32];
    dequantize(TensorType::Q4_0, b, y, 32);
    EXPECT_EQ(y[0], 14.0f);
    EXPECT_EQ(y[16], 2.0f);
    EXPECT_EQ(y[1], 0.0f);
    EXPECT_EQ(y[17], -16.0f);
    EXPECT_EQ(y[2], -16.0f);
  }
  {  // Q4_1: d = 1, m = -0.5
    uint8_t b[20] = {0x00, 0x3c, 0x00, 0xb8, 0x3a};
    float y[32];
    dequantize(TensorType::Q4_1, b, y, 32);
    EXPECT_EQ(y[0], 9.5f);
    EXPECT_EQ(y[16], 2.5f);
    EXPECT_EQ(y[1], -0.5f);
  }
  {  // Q5_0: d = 1; qh bits 0 and 16 set
    uint8_t b[22] = {0x00, 0x3c, 0x01, 0x00, 0x01, 0x00, 0x21};
    float y[32];
    dequantize(TensorType::Q5_0, b, y, 32);
    EXPECT_EQ(y[0], 1.0f);
    EXPECT_EQ(y[16], 2.0f);
    EXPECT_EQ(y[1], -16.0f);
    EXPECT_EQ(y[17], -16.0f);
  }
  {  // Q5_1: d = 1, m = 0.25; qh bit 31 set
    uint8_t b[24] = {0x00, 0x3c, 0x00, 0x34, 0x00, 0x00, 0x00, 0x80};
    b[8 + 15] = 0xf0;
    float y[32];
    dequantize(TensorType::Q5_1, b, y, 32);
    EXPECT_EQ(y[15], 0.25f);
    EXPECT_EQ(y[31], 31.25f);
  }
  {  // Q4_K: d = dmin = 1; sub-block 0: scale 2, min 1; sub-block 4: scale 19, min 37.
    uint8_t b[144] = {0x00, 0x3c, 0x00, 0x3c};
    uint8_t* sc = b + 4;
    sc[0] = 2 | (1 << 6);
    sc[4] = 1 | (2 << 6);
    sc[8] = 0x53;
    uint8_t* qs = b + 16;
    qs[0] = 0x07;
    qs[64] = 0x05;
    float y[256];
    dequantize(TensorType::Q4_K, b, y, 256);
    EXPECT_EQ(y[0], 13.0f);    // 2*7 - 1
    EXPECT_EQ(y[1], -1.0f);    // 2*0 - 1
    EXPECT_EQ(y[32], 0.0f);    // sub-block 1: scale 0, min 0
    EXPECT_EQ(y[128], 58.0f);  // 19*5 - 37
    EXPECT_EQ(y[129], -37.0f);
  }
  {  // Q6_K: d = 1 (last two bytes)
    uint8_t b[210] = {};
    uint8_t *ql = b, *qh = b + 128;
    auto* sc = reinterpret_cast<int8_t*>(b + 192);
    b[208] = 0x00, b[209] = 0x3c;
    sc[0] = 2, sc[2] = -1, sc[4] = 1, sc[8] = 3;
    ql[0] = 0x21;
    qh[0] = 0x06;
    ql[64] = 0x0f;
    qh[32] = 0x03;
    float y[256];
    dequantize(TensorType::Q6_K, b, y, 256);
    EXPECT_EQ(y[0], 2.0f);      // 2 * ((1 | 2<<4) - 32)
    EXPECT_EQ(y[32], 16.0f);    // -1 * ((0 | 1<<4) - 32)
    EXPECT_EQ(y[64], -30.0f);   // 1 * (2 - 32)
    EXPECT_EQ(y[128], 93.0f);   // 3 * ((15 | 3<<4) - 32)
    EXPECT_EQ(y[1], -64.0f);    // 2 * (0 - 32)
  }
  EXPECT_EQ(rlhf::gguf::type_nbytes(TensorType::Q8_0, 64), 68u);
  EXPECT_EQ(rlhf::gguf::type_nbytes(TensorType::Q4_K, 256), 144u);
  EXPECT_EQ(rlhf::gguf::type_nbytes(TensorType::Q6_K, 512), 420u);
  EXPECT_EQ(rlhf::gguf::type_nbytes(TensorType::BF16, 3), 6u);
  EXPECT_THROW(rlhf::gguf::type_nbytes(TensorType::Q4_0, 33), rlhf::Error);
  EXPECT_EQ(rlhf::gguf::type_block_size(static_cast<TensorType>(99)), 0);
  EXPECT_STREQ(rlhf::gguf::tensor_type_name(TensorType::Q6_K), "Q6_K");
}

TEST(GgufTest, DequantizationMatchesGgufPy) {
  RLHF_REQUIRE_VENV(py);
  const auto dir = scratch_dir();
  const auto script = rlhf::testing::source_dir() / "tests" / "parity" / "gguf_ref.py";
  ASSERT_EQ(rlhf::testing::run(py + " " + script.string() + " write " + dir.string()), 0);
  const auto manifest = nlohmann::json::parse(rlhf::testing::read_text(dir / "ref.json"));
  const File f = File::open((dir / "ref.gguf").string());
  EXPECT_EQ(f.get_string("general.architecture"), "testarch");
  EXPECT_EQ(f.get_uint("test.u32"), 123456u);
  EXPECT_EQ(f.get_int("test.i32"), -42);
  EXPECT_EQ(f.get_float("test.f32"), 0.25);
  EXPECT_TRUE(f.get_bool("test.bool"));
  EXPECT_EQ(f.get_string("test.str"), "h\xc3\xa9llo");
  EXPECT_EQ(f.get_string_array("test.strs"), (std::vector<std::string>{"a", "bc", ""}));
  EXPECT_EQ(f.get_int_array("test.ints"), (std::vector<int64_t>{1, -2, 3}));

  std::set<std::string> types;
  ASSERT_EQ(f.tensors().size(), manifest.size());
  for (const auto& [name, m] : manifest.items()) {
    SCOPED_TRACE(name);
    const auto* t = f.find_tensor(name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(rlhf::gguf::tensor_type_name(t->type), m["type"].get<std::string>());
    EXPECT_EQ(t->shape, m["shape"].get<std::vector<int64_t>>());
    types.insert(m["type"].get<std::string>());
    const auto h = f.load(*t);
    const auto got = to_f32(h);
    const std::string ref_bytes = rlhf::testing::read_text(dir / (name + ".f32"));
    ASSERT_EQ(ref_bytes.size(), got.size() * 4);
    std::vector<float> ref(got.size());
    std::memcpy(ref.data(), ref_bytes.data(), ref_bytes.size());
    size_t exact = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      if (got[i] == ref[i]) {
        ++exact;
        continue;
      }
      ASSERT_LE(std::fabs(got[i] - ref[i]), 1e-6 * std::max(1.0f, std::fabs(ref[i])))
          << "element " << i << ": " << got[i] << " vs " << ref[i];
    }
    EXPECT_EQ(exact, ref.size());
  }
  EXPECT_EQ(types.size(), 10u);  // every supported type
}

TEST(GgufTest, GgufPyReadsOurFile) {
  RLHF_REQUIRE_VENV(py);
  const auto path = write_bytes(scratch_dir() / "small.gguf", small_file().build());
  const auto script = rlhf::testing::source_dir() / "tests" / "parity" / "gguf_ref.py";
  int status = 0;
  const std::string out = rlhf::testing::capture(py + " " + script.string() + " read " + path, &status);
  ASSERT_EQ(status, 0);
  const auto j = nlohmann::json::parse(out);
  const File f = File::open(path);
  EXPECT_EQ(j["version"], 3);
  ASSERT_EQ(j["metadata"].size(), f.metadata().size());
  for (const auto& [key, v] : f.metadata()) {
    SCOPED_TRACE(key);
    const auto& r = j["metadata"][key];
    std::visit(
        [&](const auto& x) {
          using X = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<X, std::vector<bool>>) {
            EXPECT_EQ(r.get<std::vector<bool>>(), x);
          } else {
            EXPECT_EQ(r.get<X>(), x);
          }
        },
        v.v);
  }
  ASSERT_EQ(j["tensors"].size(), f.tensors().size());
  for (const auto& t : f.tensors()) {
    SCOPED_TRACE(t.name);
    const auto& r = j["tensors"][t.name];
    EXPECT_EQ(r["type"].get<std::string>(), rlhf::gguf::tensor_type_name(t.type));
    EXPECT_EQ(r["shape"].get<std::vector<int64_t>>(), t.shape);
    const auto got = to_f32(f.load(t));
    const auto ref = r["values"].get<std::vector<double>>();
    ASSERT_EQ(ref.size(), got.size());
    for (size_t i = 0; i < ref.size(); ++i) EXPECT_EQ(double(got[i]), ref[i]) << i;
  }
}

TEST(GgufTest, SmolLM2File) {
  const auto model = rlhf::testing::default_model_gguf();
  if (!model) GTEST_SKIP() << "SmolLM2 GGUF absent: run scripts/setup";
  const File f = File::open(*model);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.tensors().size(), 272u);
  std::set<std::string> types;
  for (const auto& t : f.tensors()) types.insert(rlhf::gguf::tensor_type_name(t.type));
  EXPECT_EQ(types, (std::set<std::string>{"F32", "Q4_1", "Q8_0"}));
  EXPECT_EQ(f.get_uint("llama.block_count"), 30u);
  EXPECT_EQ(f.get_uint("llama.embedding_length"), 576u);
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens").size(), 49152u);
  EXPECT_EQ(f.get_int_array("tokenizer.ggml.token_type").size(), 49152u);
  const auto* emb = f.find_tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->shape, (std::vector<int64_t>{49152, 576}));
  EXPECT_EQ(f.find_tensor("blk.0.attn_k.weight")->shape, (std::vector<int64_t>{192, 576}));

  const auto t0 = std::chrono::steady_clock::now();
  int64_t numel = 0;
  std::map<std::string, rlhf::HostTensor> loaded;
  for (const auto& t : f.tensors()) {
    auto h = f.load(t);
    EXPECT_EQ(h.shape, t.shape);
    numel += h.numel();
    loaded.emplace(t.name, std::move(h));
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "loaded " << f.tensors().size() << " tensors (" << numel << " elements) in " << secs
            << " s\n";
  RecordProperty("load_seconds", std::to_string(secs));
  EXPECT_EQ(numel, 134515008);
  const auto& e = loaded.at("token_embd.weight");
  const float* p = reinterpret_cast<const float*>(e.data);
  for (int64_t i = 0; i < e.numel(); ++i) ASSERT_TRUE(std::isfinite(p[i]) && std::fabs(p[i]) < 100) << i;

  // One Q4_1 tensor of the real file against gguf-py.
  auto py = rlhf::testing::venv_python();
  if (!py) return;
  const auto out = scratch_dir() / "q.f32";
  const auto script = rlhf::testing::source_dir() / "tests" / "parity" / "gguf_ref.py";
  ASSERT_EQ(rlhf::testing::run(*py + " " + script.string() + " tensor " + *model +
                               " blk.0.attn_q.weight " + out.string()),
            0);
  const std::string ref = rlhf::testing::read_text(out);
  const auto& q = loaded.at("blk.0.attn_q.weight");
  ASSERT_EQ(ref.size(), q.nbytes);
  EXPECT_EQ(std::memcmp(ref.data(), q.data, q.nbytes), 0);
}

// ---- malformed files ----

TEST(GgufTest, RejectsEmptyAndForeignFiles) {
  const auto dir = scratch_dir();
  expect_open_error(write_bytes(dir / "empty.gguf", ""), {"not a GGUF file", "0 bytes"});
  expect_open_error(write_bytes(dir / "magic.gguf", "GGML\x03\0\0\0 and more bytes here"),
                    {"not a GGUF file", "bad magic"});
  expect_open_error((dir / "missing.gguf").string(), {"cannot open"});
}

TEST(GgufTest, RejectsUnsupportedVersions) {
  const auto dir = scratch_dir();
  for (uint32_t v : {1u, 99u}) {
    auto w = small_file();
    w.version = v;
    expect_open_error(write_bytes(dir / "v.gguf", w.build()),
                      {"unsupported GGUF version " + std::to_string(v)});
  }
  auto w = small_file();
  w.version = 0x03000000;  // a big-endian file read little-endian
  expect_open_error(write_bytes(dir / "be.gguf", w.build()), {"big-endian"});
}

TEST(GgufTest, EveryTruncatedPrefixFails) {
  const std::string bytes = small_file().build();
  const auto path = scratch_dir() / "t.gguf";
  for (size_t n = 0; n < bytes.size(); ++n) {
    write_bytes(path, bytes.substr(0, n));
    try {
      File::open(path.string());
      ADD_FAILURE() << "prefix of " << n << " bytes opened";
    } catch (const rlhf::Error& e) {
      EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
    }
  }
  write_bytes(path, bytes);
  EXPECT_NO_THROW(File::open(path.string()));
}

TEST(GgufTest, RejectsAbsurdCountsAndLengths) {
  const auto dir = scratch_dir();
  {  // tensor count 2^40
    std::string b = small_file().build();
    const uint64_t n = uint64_t(1) << 40;
    std::memcpy(b.data() + 8, &n, 8);
    expect_open_error(write_bytes(dir / "tc.gguf", b), {"tensor count 1099511627776", "cannot fit"});
  }
  {  // metadata count 2^40
    std::string b = small_file().build();
    const uint64_t n = uint64_t(1) << 40;
    std::memcpy(b.data() + 16, &n, 8);
    expect_open_error(write_bytes(dir / "kc.gguf", b), {"metadata count 1099511627776", "cannot fit"});
  }
  {  // key length 2^60 at byte 24
    std::string b = "GGUF";
    GgufWriter::put<uint32_t>(b, 3);
    GgufWriter::put<uint64_t>(b, 0);
    GgufWriter::put<uint64_t>(b, 1);
    GgufWriter::put<uint64_t>(b, uint64_t(1) << 60);
    b += "key bytes";
    expect_open_error(write_bytes(dir / "key.gguf", b), {"byte 32", "key", "1152921504606846976"});
  }
  {  // string value length 2^60
    GgufWriter w;
    std::string v;
    GgufWriter::put<uint64_t>(v, uint64_t(1) << 60);
    w.add_raw("big.string", ValueType::STRING, v + "abc");
    expect_open_error(write_bytes(dir / "str.gguf", w.build()), {"'big.string'", "1152921504606846976"});
  }
  {  // array count 2^50 of u32
    GgufWriter w;
    std::string v;
    GgufWriter::put<uint32_t>(v, uint32_t(ValueType::U32));
    GgufWriter::put<uint64_t>(v, uint64_t(1) << 50);
    w.add_raw("big.array", ValueType::ARRAY, v + "abcdefgh");
    expect_open_error(write_bytes(dir / "arr.gguf", w.build()),
                      {"'big.array'", "array of 1125899906842624 u32", "cannot fit"});
  }
  {  // array of strings whose count fits the bytes only at one byte per element
    GgufWriter w;
    std::string v;
    GgufWriter::put<uint32_t>(v, uint32_t(ValueType::STRING));
    GgufWriter::put<uint64_t>(v, 64);
    w.add_raw("strs", ValueType::ARRAY, v + std::string(100, 'x'));
    expect_open_error(write_bytes(dir / "strs.gguf", w.build()), {"'strs'", "array of 64 string"});
  }
}

TEST(GgufTest, RejectsBadMetadataValues) {
  const auto dir = scratch_dir();
  {
    GgufWriter w;
    std::string v;
    GgufWriter::put<uint32_t>(v, uint32_t(ValueType::ARRAY));
    GgufWriter::put<uint64_t>(v, 1);
    w.add_raw("nested", ValueType::ARRAY, v + std::string(32, '\0'));
    expect_open_error(write_bytes(dir / "nested.gguf", w.build()), {"'nested'", "nested arrays"});
  }
  {
    GgufWriter w;
    w.add_raw("k", static_cast<ValueType>(13), "abcd");
    expect_open_error(write_bytes(dir / "vt.gguf", w.build()), {"'k'", "unknown metadata value type id 13"});
  }
  {
    GgufWriter w;
    w.add("flag", ValueType::BOOL, uint8_t(2));
    expect_open_error(write_bytes(dir / "bool.gguf", w.build()), {"'flag'", "bool value 2"});
  }
  {
    GgufWriter w;
    w.add("k", ValueType::U8, uint8_t(1));
    w.add("k", ValueType::U8, uint8_t(2));
    expect_open_error(write_bytes(dir / "dupkey.gguf", w.build()), {"'k'", "duplicate key"});
  }
}

TEST(GgufTest, RejectsBadTensorInfos) {
  const auto dir = scratch_dir();
  auto one = [](std::vector<uint64_t> shape, uint32_t type, std::string data) {
    GgufWriter w;
    w.add_tensor("bad.weight", std::move(shape), static_cast<TensorType>(type), std::move(data));
    return w;
  };
  expect_open_error(write_bytes(dir / "dims.gguf", one({1, 1, 1, 1, 4}, 0, f32_bytes({1, 2, 3, 4})).build()),
                    {"'bad.weight'", "5 dimensions"});
  expect_open_error(write_bytes(dir / "type.gguf", one({4}, 99, f32_bytes({1, 2, 3, 4})).build()),
                    {"'bad.weight'", "unsupported tensor type id 99"});
  expect_open_error(write_bytes(dir / "q2k.gguf", one({256}, 10, std::string(84, '\0')).build()),
                    {"'bad.weight'", "unsupported tensor type id 10"});
  expect_open_error(
      write_bytes(dir / "block.gguf", one({2, 33}, uint32_t(TensorType::Q8_0), std::string(68, '\0')).build()),
      {"'bad.weight'", "innermost dimension 33", "Q8_0", "block size 32"});
  expect_open_error(write_bytes(dir / "overflow.gguf",
                                one({uint64_t(1) << 62, uint64_t(1) << 62}, 0, "").build()),
                    {"'bad.weight'", "overflows"});
  expect_open_error(write_bytes(dir / "bytes.gguf", one({uint64_t(1) << 62}, 0, "").build()),
                    {"'bad.weight'", "overflow"});
  expect_open_error(write_bytes(dir / "huge.gguf", one({uint64_t(1) << 40}, 0, "").build()),
                    {"'bad.weight'", "past the end"});
  {
    auto w = one({4}, 0, f32_bytes({1, 2, 3, 4}));
    w.tensors[0].offset = 1 << 20;
    expect_open_error(write_bytes(dir / "past.gguf", w.build()), {"'bad.weight'", "past the end"});
    w.tensors[0].offset = ~uint64_t(31);  // aligned, and overflows when added to the data start
    expect_open_error(write_bytes(dir / "wrap.gguf", w.build()), {"'bad.weight'", "past the end"});
    w.tensors[0].offset = 4;
    expect_open_error(write_bytes(dir / "misaligned.gguf", w.build()),
                      {"'bad.weight'", "offset 4", "not a multiple of the alignment 32"});
  }
  {
    auto w = one({4}, 0, f32_bytes({1, 2, 3, 4}));
    w.add_tensor("bad.weight", {1}, TensorType::F32, f32_bytes({1}));
    expect_open_error(write_bytes(dir / "dup.gguf", w.build()), {"'bad.weight'", "duplicate tensor name"});
  }
}

// A tiny Llama model (1 layer, hidden 8, 2 heads of 4, one KV head, FFN 16, 12 tokens), F32,
// with blk.0.attn_q.weight of `q_shape` (torch order; [8, 8] is the right one).
GgufWriter tiny_llama(std::vector<uint64_t> q_shape) {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add("llama.block_count", ValueType::U32, uint32_t(1));
  w.add("llama.context_length", ValueType::U32, uint32_t(64));
  w.add("llama.embedding_length", ValueType::U32, uint32_t(8));
  w.add("llama.feed_forward_length", ValueType::U32, uint32_t(16));
  w.add("llama.attention.head_count", ValueType::U32, uint32_t(2));
  w.add("llama.attention.head_count_kv", ValueType::U32, uint32_t(1));
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string_array("tokenizer.ggml.tokens", {"a", "b", "c", "\xc4\xa0", "ab", "\xc4\xa0" "a", "!", "1", "<|endoftext|>",
                                               "<|im_start|>", "<|im_end|>", "<pad>"});
  w.add_string_array("tokenizer.ggml.merges", {"a b"});
  w.add("tokenizer.ggml.eos_token_id", ValueType::U32, uint32_t(10));
  auto zeros = [](uint64_t rows, uint64_t cols) { return std::string(rows * cols * 4, '\0'); };
  w.add_tensor("token_embd.weight", {12, 8}, TensorType::F32, zeros(12, 8));
  w.add_tensor("output_norm.weight", {8}, TensorType::F32, zeros(1, 8));
  w.add_tensor("blk.0.attn_norm.weight", {8}, TensorType::F32, zeros(1, 8));
  w.add_tensor("blk.0.ffn_norm.weight", {8}, TensorType::F32, zeros(1, 8));
  w.add_tensor("blk.0.attn_q.weight", q_shape, TensorType::F32, zeros(q_shape[0], q_shape[1]));
  w.add_tensor("blk.0.attn_k.weight", {4, 8}, TensorType::F32, zeros(4, 8));
  w.add_tensor("blk.0.attn_v.weight", {4, 8}, TensorType::F32, zeros(4, 8));
  w.add_tensor("blk.0.attn_output.weight", {8, 8}, TensorType::F32, zeros(8, 8));
  w.add_tensor("blk.0.ffn_gate.weight", {16, 8}, TensorType::F32, zeros(16, 8));
  w.add_tensor("blk.0.ffn_up.weight", {16, 8}, TensorType::F32, zeros(16, 8));
  w.add_tensor("blk.0.ffn_down.weight", {8, 16}, TensorType::F32, zeros(8, 16));
  return w;
}

// A query weight of no rows (a fuzzed file: dims [8796093022216, 0], no bytes) divided by zero
// in the rotary-row permutation; it is refused, naming the file and the tensor.
TEST(GgufTest, ModelWithAnEmptyRotaryWeightIsRefused) {
  const auto dir = scratch_dir();
  const std::string good = write_bytes(dir / "good.gguf", tiny_llama({8, 8}).build());
  EXPECT_EQ(rlhf::read_model(good).weights.at("model.layers.0.self_attn.q_proj.weight").shape,
            (std::vector<int64_t>{8, 8}));
  const std::string empty = write_bytes(dir / "empty-q.gguf", tiny_llama({0, 8796093022216}).build());
  expect_error([&] { rlhf::read_model(empty); },
               {empty + ":model.layers.0.self_attn.q_proj.weight", "0 rows cannot hold 2 rotary heads"});
  rlhf::HostTensor none;
  none.shape = {0, 8};
  expect_error([&] { rlhf::llama_cpp_rotary_rows(none, 2, false, "x"); }, {"tensor x: 0 rows"});
  none.shape = {8, 8};
  expect_error([&] { rlhf::llama_cpp_rotary_rows(none, 0, true, "x"); }, {"cannot hold 0 rotary heads"});
}

}  // namespace
