// The GGUF file of an export, for llama.cpp: F32 or F16 tensors (norms and biases stay F32),
// llama.cpp tensor names, Q/K rows permuted back to llama.cpp's rotary layout; the metadata
// of a GGUF base kept (file type updated), or built from an HF base's config and tokenizer.
#pragma once
#include <string>
#include <vector>

#include "rlhf/export/export_plan.h"

namespace rlhf::exporter {

DType parse_gguf_dtype(const std::string& name);  // f32, f16 (--dtype)

// Writes the file at `path`; returns {path}.
std::vector<std::string> write_gguf_export(const ExportPlan& plan, const std::string& path);

}  // namespace rlhf::exporter
