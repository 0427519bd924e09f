#include "rlhf/util/json_file.h"

#include <unordered_set>
#include <vector>

#include <fmt/format.h>

#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"

namespace rlhf {
namespace {

using nlohmann::json;

struct Repeated {
  std::string key;
};

// The 1-based line of the first place in `text` where an object names a key it already
// named (the text is valid JSON). Keys are compared as decoded strings.
size_t repeated_key_line(std::string_view text) {
  std::vector<std::unordered_set<std::string>> objects;  // the keys of each open object
  std::vector<bool> in_object;                           // per open container: object or array
  bool expect_key = false;
  size_t line = 1;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') {
      ++line;
    } else if (c == '"') {
      size_t end = i + 1;
      bool escaped = false;
      while (end < text.size() && text[end] != '"') {
        escaped = escaped || text[end] == '\\';
        end += text[end] == '\\' ? 2 : 1;
      }
      if (expect_key && !in_object.empty() && in_object.back()) {
        const std::string_view raw = text.substr(i, end - i + 1);
        std::string key = escaped ? json::parse(raw).get<std::string>() : std::string(raw.substr(1, raw.size() - 2));
        if (!objects.back().insert(std::move(key)).second) return line;
        expect_key = false;
      }
      i = end;
    } else if (c == '{' || c == '[') {
      in_object.push_back(c == '{');
      if (c == '{') objects.emplace_back();
      expect_key = c == '{';
    } else if (c == '}' || c == ']') {
      if (!in_object.empty() && in_object.back()) objects.pop_back();
      if (!in_object.empty()) in_object.pop_back();
      expect_key = false;
    } else if (c == ',') {
      expect_key = !in_object.empty() && in_object.back();
    }
  }
  return 1;
}

}  // namespace

RepeatedKeyError::RepeatedKeyError(std::string key, size_t line)
    : std::runtime_error(fmt::format("line {}: key '{}' appears twice in one object", line, key)),
      key_(std::move(key)),
      line_(line) {}

json parse_json_unique_keys(std::string_view text) {
  std::vector<std::unordered_set<std::string>> objects;
  json::parser_callback_t check = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start: objects.emplace_back(); break;
      case json::parse_event_t::object_end: objects.pop_back(); break;
      case json::parse_event_t::key:
        if (!objects.back().insert(parsed.get<std::string>()).second) throw Repeated{parsed.get<std::string>()};
        break;
      default: break;
    }
    return true;
  };
  try {
    return json::parse(text, check);
  } catch (const Repeated& r) {
    throw RepeatedKeyError(r.key, repeated_key_line(text));
  }
}

json read_json_file(const std::string& path, size_t max_bytes) {
  const std::string text = read_file(path, max_bytes);
  try {
    return parse_json_unique_keys(text);
  } catch (const json::parse_error& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  } catch (const RepeatedKeyError& e) {
    fail("{}:{}: key '{}' appears twice in one object; keep one", path, e.line(), e.key());
  }
}

}  // namespace rlhf
