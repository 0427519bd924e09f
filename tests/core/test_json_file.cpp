// Strict JSON: an object that names a key twice is refused (nlohmann would keep one value
// silently), with the key and the line; whole JSON files are read with their name in errors.
#include <gtest/gtest.h>

#include <fstream>

#include "rlhf/util/error.h"
#include "rlhf/util/json_file.h"
#include "test_util.h"

namespace rlhf {
namespace {

// The RepeatedKeyError of parsing `text`, as "key@line" ("" when none).
std::string repeated(std::string_view text) {
  try {
    parse_json_unique_keys(text);
  } catch (const RepeatedKeyError& e) {
    return e.key() + "@" + std::to_string(e.line());
  }
  return "";
}

TEST(JsonUniqueKeys, ARepeatedKeyIsRefusedAtAnyDepthWithItsLine) {
  EXPECT_EQ(repeated(R"({"a": 1, "b": 2, "a": 3})"), "a@1");
  EXPECT_EQ(repeated("{\n \"x\": {\"k\": 1,\n \"k\": 2}\n}"), "k@3");
  EXPECT_EQ(repeated("[{\"a\": 1}, {\"a\": 2},\n\n {\"b\": [1, {\"c\": 0, \"c\": 0}]}]"), "c@3");
  // The same key spelled with an escape is the same key.
  EXPECT_EQ(repeated(R"({"a": 1, "\u0061": 2})"), "a@1");
  // Values equal to keys, the same key in sibling objects, strings holding quotes and braces:
  // no repetition.
  EXPECT_EQ(repeated(R"({"a": "a", "b": {"a": 1}, "c": {"a": 2}, "d": "\"a\": {", "e": ["a", "a"]})"), "");
}

TEST(JsonUniqueKeys, BadJsonStillThrowsTheParseError) {
  EXPECT_THROW(parse_json_unique_keys("{\"a\": }"), nlohmann::json::parse_error);
  EXPECT_EQ(parse_json_unique_keys(R"({"a": [1, 2], "b": null})")["a"][1], 2);
}

TEST(JsonFile, ARepeatedKeyNamesTheFileAndLine) {
  const auto path = (testing::scratch_dir() / "config.json").string();
  std::ofstream(path) << "{\n  \"hidden_size\": 64,\n  \"hidden_size\": 128\n}\n";
  try {
    read_json_file(path);
    FAIL() << "a repeated key was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":3: key 'hidden_size' appears twice"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace rlhf
