// JSON text read strictly: a whole JSON file with a size bound, and JSON text in which no
// object names a key twice (nlohmann keeps one of the values silently; we refuse the
// ambiguity). Errors name the file and the line.
#pragma once
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace rlhf {

// Thrown by parse_json_unique_keys: an object repeats `key`; `line` (1-based, within the
// text) is where it appears the second time.
class RepeatedKeyError : public std::runtime_error {
 public:
  RepeatedKeyError(std::string key, size_t line);
  const std::string& key() const { return key_; }
  size_t line() const { return line_; }

 private:
  std::string key_;
  size_t line_;
};

// nlohmann::json::parse(text), which throws its parse_error on bad JSON, and
// RepeatedKeyError when an object repeats a key.
nlohmann::json parse_json_unique_keys(std::string_view text);

// Throws rlhf::Error naming `path` (and the line) when it cannot be read, is larger than
// max_bytes, is not valid JSON, or has an object that repeats a key.
nlohmann::json read_json_file(const std::string& path, size_t max_bytes = size_t(64) << 20);

}  // namespace rlhf
