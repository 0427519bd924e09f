// Export: a LoRA adapter merged into its base model (W + alpha/r · B·A, on host float32),
// written for other tools:
//   hf    a Hugging Face folder: config.json, model.safetensors, generation_config.json,
//         tokenizer files (copied from an HF base; synthesized from the GGUF metadata of a
//         GGUF base) and export.json (what was exported from what). A reward model folder
//         becomes <Arch>ForSequenceClassification (num_labels 1): transformers' score layer
//         has no bias, so the head's bias is left out of the weights and recorded as
//         "score_bias" in config.json and export.json (reward = logit + score_bias; a
//         constant that does not change which completion is preferred).
//   gguf  one GGUF file for llama.cpp: F32 or F16 tensors (norms stay F32), llama.cpp tensor
//         names, Q/K rows permuted back to llama.cpp's rotary layout, the metadata of a GGUF
//         base kept (file type updated), or built from an HF base's config and tokenizer.
// The adapter folder is a trained folder (train/trained_folder.h): what train-reward
// (reward_model.json) or train-policy (policy.json) wrote, or a plain peft adapter
// (adapter_config.json + adapter_model.safetensors). The base is --model when given, else
// the one the folder records; a recorded sha256 must match it. The merge is in merge.h, the
// writers in hf_folder.h and gguf_export.h. Output is written to a temporary sibling and
// renamed into place; an existing output is replaced only when it is an earlier export
// (a folder with export.json, a GGUF file), never when it is anything else.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace rlhf {

struct ExportOptions {
  std::string adapter;        // adapter folder; empty exports the base model alone
  std::string output;         // folder (hf) or file (gguf)
  std::string format = "hf";  // "hf" or "gguf"
  std::string dtype;          // hf: fp32|bf16|fp16; gguf: f32|f16. Empty: hf keeps the base
                              // folder's float type (fp32 for a GGUF base), gguf writes f32.
  std::string model;          // base model, overriding the one the adapter folder names
};

struct ExportResult {
  std::string output;
  std::string format;          // "hf" or "gguf"
  std::string dtype;           // as written: fp32/bf16/fp16 (hf), f32/f16 (gguf)
  std::string kind;            // "causal-lm" or "sequence-classification"
  std::string adapter_kind;    // "reward", "policy", "peft" or "" (no adapter)
  std::string base_path;       // the base model used
  int64_t merged_weights = 0;  // weights that received a LoRA delta
  std::optional<double> score_bias;  // reward models: the bias left out of the HF score layer
  std::vector<std::string> files;    // what was written (names inside the folder, or the file)
};

ExportResult export_model(const ExportOptions& options);

// tokenizer.json and tokenizer_config.json for Hugging Face tokenizers, built from a GGUF
// file's tokenizer.* metadata (byte-level BPE, "gpt2" model) so that HF tokenizers gives the
// same ids as this runtime's tokenizer. Writes into `dir` (which must exist); returns the
// file names written.
std::vector<std::string> write_hf_tokenizer_from_gguf(const std::string& gguf_path, const std::string& dir);

}  // namespace rlhf
