// adapter_config.json as peft writes it, for the LoRA adapters this runtime runs and merges:
// plain LoRA only (no rsLoRA, DoRA, per-layer ranks or trained biases). Torch-free.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace rlhf {

struct PeftLoraConfig {
  int64_t rank = 0;
  double alpha = 0;                  // lora_alpha (rank when absent)
  std::vector<std::string> targets;  // target_modules (may be empty)
  std::string base_model;            // base_model_name_or_path
  std::string task_type;             // CAUSAL_LM, SEQ_CLS, ...
};

// Reads and checks the file; throws rlhf::Error naming the file and the field.
PeftLoraConfig read_peft_lora_config(const std::string& path);

}  // namespace rlhf
