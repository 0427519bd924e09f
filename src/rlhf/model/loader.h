// Reading a model from disk, before any torch tensor exists: a GGUF file or a Hugging Face
// folder becomes a ModelConfig, weights under Hugging Face names and layout, a tokenizer,
// a chat template and the ids that end a completion.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "rlhf/model/config.h"
#include "rlhf/model/host_tensor.h"
#include "rlhf/text/chat_template.h"
#include "rlhf/text/tokenizer.h"

namespace rlhf {

struct ModelFiles {
  std::string reference;  // as the user named it (a registered name or a path)
  std::string path;       // the file or folder it resolved to
  std::string format;     // "gguf" or "hf"
  ModelConfig config;
  std::map<std::string, HostTensor> weights;  // "model.layers.0.self_attn.q_proj.weight", ...
  std::unique_ptr<text::Tokenizer> tokenizer;
  text::ChatTemplate chat_template;
  std::vector<int32_t> stop_ids;  // generation stops at any of these (EOS, end-of-turn)
  int32_t pad_id = 0;             // left padding for batched generation; never a stop id
};

// Resolves `reference` (registry name or path) and reads everything. Throws rlhf::Error
// naming the file on any problem. weights=false reads only config, tokenizer and template.
ModelFiles read_model(const std::string& reference, bool weights = true);

// SHA-256 of what a model is made of: a GGUF file, or every file of a folder that read_model
// reads (config.json, tokenizer.json or tokenizer.model, tokenizer_config.json,
// chat_template.jinja, generation_config.json, the safetensors files and their index), so an
// edited chat template or EOS id gives another hash. Recorded in trained artifacts and in the
// pipeline's cache keys. Cached under cache_dir()/hashes by each file's path, size, times and
// inode, so only the first call reads the files and any edit is seen.
std::string model_content_hash(const std::string& path);

// llama.cpp's converter interleaves the two rotary halves of every Q/K head: GGUF row
// (h, 2j + s) holds Hugging Face row (h, s·hd/2 + j). Converts either way (to_gguf: HF -> GGUF),
// any element size.
HostTensor llama_cpp_rotary_rows(const HostTensor& t, int64_t n_head, bool to_gguf, const std::string& what);

// The Hugging Face names of the weights a config needs (for checks and for export).
std::vector<std::string> expected_weight_names(const ModelConfig& c);

}  // namespace rlhf
