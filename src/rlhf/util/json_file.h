// A whole JSON file, read with a size bound; errors name the file.
#pragma once
#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

namespace rlhf {

// Throws rlhf::Error naming `path` when it cannot be read, is larger than max_bytes, or is
// not valid JSON.
nlohmann::json read_json_file(const std::string& path, size_t max_bytes = size_t(64) << 20);

}  // namespace rlhf
