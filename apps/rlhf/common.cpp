// Flags shared by the commands that run a model.
#include <torch/torch.h>

#include <malloc.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "commands.h"
#include "rlhf/model/registry.h"

namespace rlhf::cli {

void add_common(CLI::App* cmd, CommonFlags& f) {
  if (f.model.empty()) f.model = kDefaultModel;
  cmd->add_option("--model,-m,--large-model-reference", f.model,
                  "registered model name, GGUF file or Hugging Face folder")->capture_default_str();
  cmd->add_option("--dtype", f.dtype, "weights and compute: fp32, bf16, fp16")->capture_default_str();
  cmd->add_option("--device", f.device, "cpu, cuda, cuda:N")->capture_default_str();
  cmd->add_option("--threads", f.threads, "CPU threads (0 = all cores)");
}

void apply_threads(int threads) {
  int n = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(n);
}

void use_mapped_allocations(size_t threshold) {
  if (const char* env = std::getenv("RLHF_MMAP_THRESHOLD")) threshold = std::strtoull(env, nullptr, 10);
  mallopt(M_MMAP_THRESHOLD, static_cast<int>(threshold));
}

}  // namespace rlhf::cli
