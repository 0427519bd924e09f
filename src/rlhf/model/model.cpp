#include "rlhf/model/model.h"

#include "rlhf/model/loader.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

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
    m->net = std::make_unique<Transformer>(files.config, files.weights, settle_dtype(options.dtype, options.device),
                                           options.device);
  } catch (const Error& e) {
    fail("{}: {}", files.path, e.what());
  }
  return m;
}

torch::Dtype parse_dtype(const std::string& name) {
  if (name == "auto") return kAutoDtype;
  if (name == "fp32" || name == "float32") return torch::kFloat32;
  if (name == "bf16" || name == "bfloat16") return torch::kBFloat16;
  if (name == "fp16" || name == "float16") return torch::kFloat16;
  fail("unknown dtype '{}' (auto, fp32, bf16, fp16)", name);
}

const char* dtype_name(torch::Dtype dtype) {
  if (dtype == kAutoDtype) return "auto";
  return dtype == torch::kBFloat16 ? "bf16" : dtype == torch::kFloat16 ? "fp16" : "fp32";
}

CpuFeatures detect_cpu_features() {
  CpuFeatures f;
  std::ifstream info("/proc/cpuinfo");
  for (std::string line; std::getline(info, line);) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    for (std::string w; words >> w;) {
      f.avx512_bf16 |= w == "avx512_bf16";
      f.amx_bf16 |= w == "amx_bf16";
    }
    return f;
  }
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    f.amx_bf16 = (d >> 22) & 1;                                     // leaf 7.0 EDX bit 22
    if (a >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) f.avx512_bf16 = (a >> 5) & 1;  // leaf 7.1 EAX bit 5
  }
#endif
  return f;
}

// "auto" on a CPU follows what bf16 costs there. Measured with libtorch 2.11 on a Zen 4 EPYC
// (AVX512-BF16, no AMX), 2 threads, OMP_WAIT_POLICY=PASSIVE, SmolLM2-135M:
//   matmul 1024x1024x1024: fp32 63 GFLOP/s, bf16 253;  576x1536x576: fp32 46, bf16 134
//   train-reward, steps of 4 pairs: fp32 2.5-3.1 s, bf16 1.3-1.7 s (1 thread: 2.3-3.0 s vs 1.2-1.6 s)
//   infer, 6 prompts x 32 tokens (load included): fp32 4.1 s, bf16 2.9 s
// On an AVX2-only EPYC a 1024² bf16 matmul runs at 0.6 GFLOP/s against 68 in fp32: without
// AVX512-BF16 or AMX-BF16 (whose tiles oneDNN uses for bf16 matmuls) bf16 stays fp32.
DtypeChoice resolve_dtype(const std::string& asked, torch::Device device, const CpuFeatures& cpu) {
  const torch::Dtype dtype = parse_dtype(asked);
  if (device.is_cuda()) {
    if (dtype != kAutoDtype) return {dtype, ""};
    return {torch::kBFloat16, "[rlhf] dtype auto: bf16 (a CUDA device)"};
  }
  if (dtype == kAutoDtype) {
    if (cpu.amx_bf16) return {torch::kBFloat16, "[rlhf] dtype auto: bf16 (this CPU has AMX-BF16)"};
    if (cpu.avx512_bf16) return {torch::kBFloat16, "[rlhf] dtype auto: bf16 (this CPU has AVX512-BF16)"};
    return {torch::kFloat32, "[rlhf] dtype auto: fp32 (this CPU has no AVX512-BF16/AMX)"};
  }
  if (dtype == torch::kBFloat16 && !cpu.avx512_bf16 && !cpu.amx_bf16)
    return {dtype,
            "[rlhf] warning: --dtype bf16 on a CPU without AVX512-BF16 or AMX: bf16 matmuls run far slower than "
            "fp32 here; --dtype auto or fp32 is faster"};
  return {dtype, ""};
}

torch::Dtype settle_dtype(torch::Dtype asked, torch::Device device) {
  static const CpuFeatures cpu = detect_cpu_features();
  const DtypeChoice choice = resolve_dtype(dtype_name(asked), device, cpu);
  // Every rank of a job resolves it the same way; rank 0 says so (a warning, every rank).
  const bool quiet = read_dist_env().rank != 0 && choice.note.find("warning") == std::string::npos;
  if (!choice.note.empty() && !quiet) {
    static std::mutex mu;
    static std::set<std::string> said;
    std::lock_guard<std::mutex> lock(mu);
    if (said.insert(choice.note).second) std::fprintf(stderr, "%s\n", choice.note.c_str());
  }
  return choice.dtype;
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
