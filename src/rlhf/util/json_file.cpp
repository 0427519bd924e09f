#include "rlhf/util/json_file.h"

#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"

namespace rlhf {

nlohmann::json read_json_file(const std::string& path, size_t max_bytes) {
  const std::string text = read_file(path, max_bytes);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
}

}  // namespace rlhf
