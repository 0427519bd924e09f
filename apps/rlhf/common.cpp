// Flags shared by the commands that run a model.
#include <torch/torch.h>

#include <malloc.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "commands.h"
#include "rlhf/model/registry.h"

namespace rlhf::cli {

void add_common(CLI::App* cmd, CommonFlags& f) {
  if (f.model.empty()) f.model = kDefaultModel;
  cmd->add_option("--model,-m,--large-model-reference", f.model,
                  "registered model name, GGUF file or Hugging Face folder")->capture_default_str();
  cmd->add_option("--dtype", f.dtype, "weights and compute: fp32, bf16, fp16")->capture_default_str();
  cmd->add_option("--device", f.device, "cpu, cuda, cuda:N")->capture_default_str();
  cmd->add_option("--threads", f.threads, "CPU threads (0 = all cores)")->check(whole_in(0, kMaxThreads));
}

namespace {

// The validators' error text: "<what>, got <input>" (CLI11 puts the flag's name in front).
std::string refusal(const std::string& what, const std::string& input) {
  return fmt::format("must be {}, got \"{}\"", what, input);
}

}  // namespace

CLI::Validator real_in(double lo, double hi) {
  const std::string what = fmt::format("a number from {} to {}", lo, hi);
  return CLI::Validator(
      [lo, hi, what](std::string& input) -> std::string {
        errno = 0;
        char* end = nullptr;
        const double v = std::strtod(input.c_str(), &end);
        if (input.empty() || end != input.c_str() + input.size() || !std::isfinite(v) || v < lo || v > hi)
          return refusal(what, input);
        return {};
      },
      fmt::format("[{}, {}]", lo, hi));
}

CLI::Validator whole_in(int64_t lo, int64_t hi) {
  const std::string what = fmt::format("a whole number from {} to {}", lo, hi);
  return CLI::Validator(
      [lo, hi, what](std::string& input) -> std::string {
        errno = 0;
        char* end = nullptr;
        const long long v = std::strtoll(input.c_str(), &end, 0);
        if (input.empty() || end != input.c_str() + input.size() || errno == ERANGE || v < lo || v > hi)
          return refusal(what, input);
        return {};
      },
      fmt::format("[{}, {}]", lo, hi));
}

CLI::Validator unsigned_whole() {
  return CLI::Validator(
      [](std::string& input) -> std::string {
        errno = 0;
        char* end = nullptr;
        const size_t first = input.find_first_not_of(" \t");
        std::strtoull(input.c_str(), &end, 0);
        if (input.empty() || first == std::string::npos || input[first] == '-' || input[first] == '+' ||
            end != input.c_str() + input.size() || errno == ERANGE)
          return refusal("a whole number from 0 to 18446744073709551615", input);
        return {};
      },
      "[0, 2^64-1]");
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
