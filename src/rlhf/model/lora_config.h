// LoRA settings of one adapter (peft's names): torch-free, so configs and trained-folder
// manifests can hold it without the runtime.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace rlhf {

struct LoraConfig {
  int64_t rank = 4;
  double alpha = 0.0;    // scale = alpha / rank; 0 means alpha = rank (scale 1)
  double dropout = 0.0;  // on the adapter's input, training only
  std::vector<std::string> targets = {"q_proj", "v_proj"};  // or {"all-linear"}
};

}  // namespace rlhf
