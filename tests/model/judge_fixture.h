// What the judge and labeling tests share: a tiny byte-level model with room for the
// judge's prompt, and a JSONL file's rows.
#pragma once
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "tiny_model.h"

namespace rlhf::testing {

// A tiny byte-level model with room for the judge's prompt.
inline std::filesystem::path tiny_judge(const std::filesystem::path& dir, uint32_t seed = 11) {
  write_tiny_hf_model(dir, seed);
  nlohmann::json cfg = nlohmann::json::parse(read_text(dir / "config.json"));
  cfg["max_position_embeddings"] = 4096;
  std::ofstream(dir / "config.json") << cfg.dump(2);
  return dir;
}

}  // namespace rlhf::testing
