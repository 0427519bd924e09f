// The Hugging Face folder of an export: model.safetensors, config.json (<Arch>ForCausalLM, or
// <Arch>ForSequenceClassification for a reward model, whose head's bias is recorded as
// "score_bias"), generation_config.json, the tokenizer files (copied from an HF base,
// synthesized from a GGUF base's metadata) and export.json (what was exported from what).
#pragma once
#include <string>
#include <vector>

#include "rlhf/export/export_plan.h"

namespace rlhf::exporter {

DType parse_hf_dtype(const std::string& name);  // fp32, bf16, fp16 (--dtype)
const char* hf_dtype_name(DType d);             // "fp32", "bf16", "fp16"

// Writes the folder's files into `dir` (which must exist); returns their names.
std::vector<std::string> write_hf_folder(const ExportPlan& plan, const std::string& dir);

}  // namespace rlhf::exporter
