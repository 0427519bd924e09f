#include "rlhf/model/model.h"

#include "rlhf/model/loader.h"

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "rlhf/util/error.h"

namespace rlhf {

std::vector<int32_t> Model::encode_prompt(const std::string& text, bool chat) const {
  if (!chat) return tokenizer->encode_sequence(text);
  if (chat_template.style == text::ChatStyle::None)
    fail("{}: this model has no chat template; drop --chat to use raw prompts", path);
  std::vector<text::ChatMessage> turn = {{"user", text}};
  // The template spells out BOS itself where the model wants one; the text stays text.
  return text::fit_prompt(*tokenizer, chat_template.render(turn, /*add_generation_prompt=*/true)).ids;
}

std::unique_ptr<Model> load_model(const std::string& reference, const LoadOptions& options) {
  ModelFiles files = read_model(reference, /*weights=*/true);
  auto m = std::make_unique<Model>();
  m->reference = files.reference;
  m->path = files.path;
  m->format = files.format;
  m->config = files.config;
  m->tokenizer = std::move(files.tokenizer);
  m->chat_template = files.chat_template;
  m->stop_ids = files.stop_ids;
  m->pad_id = files.pad_id;
  try {
    m->net = std::make_unique<Transformer>(files.config, files.weights, options.dtype, options.device);
  } catch (const Error& e) {
    fail("{}: {}", files.path, e.what());
  }
  return m;
}

torch::Dtype parse_dtype(const std::string& name) {
  if (name == "fp32" || name == "float32") return torch::kFloat32;
  if (name == "bf16" || name == "bfloat16") return torch::kBFloat16;
  if (name == "fp16" || name == "float16") return torch::kFloat16;
  fail("unknown dtype '{}' (fp32, bf16, fp16)", name);
}

std::string rank_device_name(const std::string& name, const DistEnv& job) {
  return name == "cuda" && job.distributed() ? "cuda:" + std::to_string(job.local_rank) : name;
}

torch::Device parse_device(const std::string& asked) {
  if (asked == "cpu") return torch::kCPU;
  const std::string name = rank_device_name(asked, read_dist_env());
  if (name.rfind("cuda", 0) == 0) {
    if (!torch::cuda::is_available())
      fail("device '{}' asked, but {}", name,
#ifdef RLHF_CUDA
           "no CUDA device is visible"
#else
           "this is a CPU build (configure with -DRLHF_CUDA=ON)"
#endif
      );
    try {
      return torch::Device(name);
    } catch (const std::exception&) {
      fail("bad device '{}' (cpu, cuda, cuda:N)", name);
    }
  }
  fail("unknown device '{}' (cpu, cuda, cuda:N)", name);
}

int default_threads(const DistEnv& job) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (job.distributed()) return std::max(1, cores / std::max(1, job.local_world_size));
  if (const char* omp = std::getenv("OMP_NUM_THREADS"); omp && std::atoi(omp) > 0) return std::atoi(omp);
  return cores;
}

void apply_threads(int64_t threads) {
  torch::set_num_threads(threads > 0 ? static_cast<int>(threads) : default_threads(read_dist_env()));
}

}  // namespace rlhf
