// Model: a loaded model ready to run: its transformer on a device, its tokenizer and chat
// template, and how prompts are turned into ids (raw text or the chat template).
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "rlhf/model/config.h"
#include "rlhf/model/transformer.h"
#include "rlhf/text/chat_template.h"
#include "rlhf/text/tokenizer.h"
#include "rlhf/util/launch.h"

namespace rlhf {

struct LoadOptions {
  torch::Dtype dtype = torch::kFloat32;  // weights and compute; logits are always float32
  torch::Device device = torch::kCPU;
};

struct Model {
  std::string reference, path, format;
  ModelConfig config;
  std::unique_ptr<text::Tokenizer> tokenizer;
  text::ChatTemplate chat_template;
  std::vector<int32_t> stop_ids;
  int32_t pad_id = 0;
  std::unique_ptr<Transformer> net;

  // Ids of a prompt: through the chat template as one user turn when `chat`, else the raw text
  // (with BOS when the tokenizer asks for it).
  std::vector<int32_t> encode_prompt(const std::string& text, bool chat) const;
};

// Resolves and loads `reference` (registered name, GGUF file or HF folder).
std::unique_ptr<Model> load_model(const std::string& reference, const LoadOptions& options = {});

// "fp32"/"float32", "bf16"/"bfloat16", "fp16"/"float16"; throws rlhf::Error otherwise.
torch::Dtype parse_dtype(const std::string& name);
// "cpu", "cuda", "cuda:N"; throws rlhf::Error when CUDA is asked of a CPU build. In a job of
// several ranks (util/launch.h) "cuda" is the rank's own GPU, cuda:LOCAL_RANK.
torch::Device parse_device(const std::string& name);
// The device `name` stands for in `job`: "cuda" -> "cuda:<local rank>" when the job has
// several ranks; any other name as it is.
std::string rank_device_name(const std::string& name, const DistEnv& job);

// Torch's CPU threads: `threads` when > 0, else default_threads().
void apply_threads(int64_t threads);
// In a job of several ranks, the machine's cores shared among its local ranks (at least 1);
// otherwise OMP_NUM_THREADS when set, else every core.
int default_threads(const DistEnv& job);

}  // namespace rlhf
