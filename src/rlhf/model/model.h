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

// --dtype auto before it is settled for a device.
inline constexpr torch::Dtype kAutoDtype = torch::ScalarType::Undefined;

struct LoadOptions {
  // Weights and compute; logits are always float32. kAutoDtype is "auto" (parse_dtype("auto")):
  // load_model settles it for the device with resolve_dtype.
  torch::Dtype dtype = torch::kFloat32;
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

// "fp32"/"float32", "bf16"/"bfloat16", "fp16"/"float16"; "auto" -> kAutoDtype, which
// load_model settles for its device (resolve_dtype); throws rlhf::Error otherwise.
torch::Dtype parse_dtype(const std::string& name);
// "fp32", "bf16", "fp16", or "auto" for kUndefined.
const char* dtype_name(torch::Dtype dtype);

// What this CPU offers bf16 matmuls (oneDNN uses either), read at run time.
struct CpuFeatures {
  bool avx512_bf16 = false;
  bool amx_bf16 = false;
};
// The flags of /proc/cpuinfo (what the kernel enables), else cpuid on x86; none elsewhere.
CpuFeatures detect_cpu_features();

// The dtype a model runs in, and the one line to print about it (empty: nothing to say).
struct DtypeChoice {
  torch::Dtype dtype = torch::kFloat32;
  std::string note;  // why "auto" chose it, or a warning that an explicit bf16 is slow here
};
// `asked` ("auto", "fp32", "bf16", ...) on `device`. "auto" is bf16 on CUDA and on a CPU with
// AVX512-BF16 or AMX-BF16, fp32 on any other CPU (model.cpp holds the measured figures).
// An explicit bf16 on a CPU with neither AVX512-BF16 nor AMX-BF16 keeps bf16 with a warning.
DtypeChoice resolve_dtype(const std::string& asked, torch::Device device, const CpuFeatures& cpu);
// resolve_dtype with this machine's features; each distinct note goes to stderr once per process.
torch::Dtype settle_dtype(torch::Dtype asked, torch::Device device);
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
