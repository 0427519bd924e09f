// A LoRA adapter on disk in peft's layout, so peft and `rlhf export` read it:
//   adapter_model.safetensors  base_model.model.<module>.lora_A.weight [rank, in] / lora_B.weight [out, rank]
//   adapter_config.json        peft_type LORA, r, lora_alpha, target_modules, base_model_name_or_path
//                              (model/peft_config.h)
#pragma once
#include <string>
#include <vector>

#include "rlhf/model/transformer.h"

namespace rlhf {

struct AdapterFileOptions {
  std::string base_reference;                  // base_model_name_or_path
  std::string task_type = "CAUSAL_LM";         // peft task type ("SEQ_CLS" for a reward model)
  std::vector<std::string> modules_to_save;    // e.g. {"score"}
};

void save_adapter(const std::string& dir, const LoraAdapter& adapter, const AdapterFileOptions& options);

// Reads dir/adapter_model.safetensors into `adapter`'s tensors (names and shapes checked).
void load_adapter(const std::string& dir, LoraAdapter& adapter);

// Copies the weights of one adapter into another of the same shape (no grad).
void copy_adapter(const LoraAdapter& from, LoraAdapter& to);

}  // namespace rlhf
