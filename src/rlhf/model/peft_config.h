// adapter_config.json as peft writes it, for the LoRA adapters this runtime runs and merges:
// plain LoRA only (no rsLoRA, DoRA, per-layer ranks or trained biases). Read and written
// here only. Torch-free.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace rlhf {

struct PeftLoraConfig {
  int64_t rank = 0;
  double alpha = 0;                  // lora_alpha (rank when absent)
  double dropout = 0;                // lora_dropout
  std::vector<std::string> targets;  // target_modules (may be empty)
  std::string base_model;            // base_model_name_or_path
  std::string task_type;             // CAUSAL_LM, SEQ_CLS, ...
  std::vector<std::string> modules_to_save;  // e.g. {"score"} (written when not empty)
};

// Reads and checks the file (at most 16 MiB); throws rlhf::Error naming the file and the field.
PeftLoraConfig read_peft_lora_config(const std::string& path);

// Writes `config` as peft's adapter_config.json (peft_type LORA, bias none), atomically.
void write_peft_lora_config(const std::string& path, const PeftLoraConfig& config);

}  // namespace rlhf
