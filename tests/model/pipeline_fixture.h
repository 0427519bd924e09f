// What the pipeline tests share: a tiny project (a model with room for the judge's prompt and
// twelve prompts) and the runner's log read back stage by stage.
#pragma once
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/tiny_model.h"
#include "test_util.h"

namespace rlhf::testing {

inline const std::vector<std::string> kPipelineStages = {"validate",      "label",       "train_reward",
                                                         "train_policy",  "infer_untuned", "infer_tuned",
                                                         "sxs",           "autosxs",     "export"};

// DIR/model (a tiny model whose context fits the judge's prompt) and DIR/prompts.jsonl.
inline void write_pipeline_model_and_prompts(const std::filesystem::path& dir) {
  write_tiny_hf_model(dir / "model", 5);
  nlohmann::json cfg = nlohmann::json::parse(read_text(dir / "model" / "config.json"));
  cfg["max_position_embeddings"] = 4096;  // room for the judge's prompt
  std::ofstream(dir / "model" / "config.json") << cfg.dump(2);
  std::ofstream p(dir / "prompts.jsonl");
  for (int i = 0; i < 12; ++i) p << nlohmann::json{{"input_text", "say: word " + std::to_string(i) + " ->"}}.dump() << "\n";
}

inline std::string run_cmd(const std::filesystem::path& spec, const std::filesystem::path& run_dir,
                           const std::string& flags = "") {
  return cli() + " pipeline run " + spec.string() + " --run-dir " + run_dir.string() + " --quiet" + flags;
}

// The outcome the runner printed for each stage ("cached", "running", "resuming").
inline std::map<std::string, std::string> outcomes(const std::string& log) {
  std::map<std::string, std::string> m;
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    for (const auto& s : kPipelineStages) {
      const std::string tag = "] " + s + ": ";
      auto at = line.find(tag);
      if (line.starts_with("[") && at != std::string::npos && at < 8) {
        std::string rest = line.substr(at + tag.size());
        for (const char* w : {"cached", "running", "resuming"})
          if (rest.starts_with(w)) m[s] = w;
      }
    }
  }
  return m;
}

}  // namespace rlhf::testing
