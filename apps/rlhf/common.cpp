// Flags shared by the commands that run a model.
#include <torch/torch.h>

#include <malloc.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "commands.h"
#include "rlhf/model/registry.h"
#include "rlhf/util/settings.h"

namespace rlhf::cli {

void add_common(CLI::App* cmd, CommonFlags& f) {
  if (f.model.empty()) f.model = kDefaultModel;
  cmd->add_option("--model,-m,--large-model-reference", f.model,
                  "registered model name, GGUF file or Hugging Face folder")->capture_default_str();
  cmd->add_option("--dtype", f.dtype, "weights and compute: auto (bf16 on CUDA and on CPUs with AVX512-BF16 or AMX, else fp32), fp32, bf16, fp16")->capture_default_str();
  cmd->add_option("--device", f.device, "cpu, cuda, cuda:N")->capture_default_str();
  cmd->add_option("--threads", f.threads, "CPU threads (0 = all cores)")->check(whole_in(0, kMaxThreads));
}

namespace {

// A validator that reads the text as the settings tables do (util/settings.h): one rule for
// numbers in every command, NaN, infinities and wrapped negatives refused in plain words.
template <class T>
CLI::Validator setting_validator(SettingRow row, std::string description) {
  return CLI::Validator(
      [row](std::string& input) -> std::string {
        T value{};
        try {
          parse_setting(row, &value, input);
        } catch (const SettingError& e) {
          return e.what();
        }
        return {};
      },
      std::move(description));
}

}  // namespace

CLI::Validator real_in(double lo, double hi) {
  return setting_validator<double>({.min = lo, .max = hi}, fmt::format("[{}, {}]", lo, hi));
}

CLI::Validator whole_in(int64_t lo, int64_t hi) {
  return setting_validator<int64_t>({.min = static_cast<double>(lo), .max = static_cast<double>(hi)},
                                    fmt::format("[{}, {}]", lo, hi));
}

CLI::Validator unsigned_whole() { return setting_validator<uint64_t>({}, "[0, 2^64-1]"); }

void use_mapped_allocations(size_t threshold) {
  if (const char* env = std::getenv("RLHF_MMAP_THRESHOLD")) threshold = std::strtoull(env, nullptr, 10);
  mallopt(M_MMAP_THRESHOLD, static_cast<int>(threshold));
}

}  // namespace rlhf::cli
