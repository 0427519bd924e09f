// The settings both trainers have, declared once for both tables (internal to train/).
#pragma once
#include <limits>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "rlhf/util/settings.h"

namespace rlhf::config_rows {

constexpr double kUnbounded = std::numeric_limits<double>::max();
constexpr double kMaxLength = 1 << 20;
inline const std::vector<std::string> kDtypes = {"fp32", "bf16", "float32", "bfloat16", "auto"};
inline const std::vector<std::string> kLoraTargets = {"q_proj", "k_proj",  "v_proj",    "o_proj",
                                                      "gate_proj", "up_proj", "down_proj", "all-linear"};

#define RLHF_SETTING_REF(Config, member) [](void* c) -> ::rlhf::SettingRef { return &static_cast<Config*>(c)->member; }

// The run's data, numerics, seed and bookkeeping: same member, flag and spec key in every trainer.
template <class C>
void add_shared_rows(std::vector<SettingRow>& rows) {
  rows.push_back({.name = "prompt_sequence_length", .flag = "--prompt-sequence-length", .spec_key = "prompt_sequence_length",
                  .help = "prompt tokens kept (the last ones)", .min = 1, .max = kMaxLength,
                  .ref = RLHF_SETTING_REF(C, prompt_sequence_length)});
  rows.push_back({.name = "target_sequence_length", .flag = "--target-sequence-length", .spec_key = "target_sequence_length",
                  .help = "completion tokens at most, EOS included", .min = 2, .max = kMaxLength,
                  .ref = RLHF_SETTING_REF(C, target_sequence_length)});
  rows.push_back({.name = "skip_invalid", .flag = "--skip-invalid", .spec_key = "advanced.skip_invalid",
                  .help = "leave out invalid data lines (counted) instead of stopping",
                  .ref = RLHF_SETTING_REF(C, skip_invalid)});
  rows.push_back({.name = "dtype", .flag = "--dtype", .spec_key = "advanced.dtype",
                  .help = "base weights and activations (adapters and heads stay fp32); auto: bf16 on CUDA and on CPUs with AVX512-BF16 or AMX, else fp32", .choices = kDtypes,
                  .ref = RLHF_SETTING_REF(C, dtype)});
  rows.push_back({.name = "device", .flag = "--device", .spec_key = "advanced.device", .help = "cpu, cuda or cuda:N",
                  .ref = RLHF_SETTING_REF(C, device)});
  rows.push_back({.name = "seed", .flag = "--seed", .spec_key = "advanced.seed",
                  .help = "seed of the data order, sampling and initialisation", .ref = RLHF_SETTING_REF(C, seed)});
  rows.push_back({.name = "max_skipped_steps", .flag = "--max-skipped-steps", .spec_key = "advanced.max_skipped_steps",
                  .help = "consecutive optimizer steps with a non-finite gradient norm (each skipped) before the run stops",
                  .min = 1, .max = 1e6, .result = false, .ref = RLHF_SETTING_REF(C, max_skipped_steps)});
  rows.push_back({.name = "checkpoint_every", .flag = "--checkpoint-every", .spec_key = "advanced.checkpoint_every",
                  .help = "checkpoint every N steps (and at the end)", .min = 1, .max = kUnbounded, .result = false,
                  .ref = RLHF_SETTING_REF(C, checkpoint_every)});
  rows.push_back({.name = "keep_checkpoints", .flag = "--keep-checkpoints", .spec_key = "advanced.keep_checkpoints",
                  .help = "checkpoints kept (the newest)", .min = 1, .max = 1000, .result = false,
                  .ref = RLHF_SETTING_REF(C, keep_checkpoints)});
  rows.push_back({.name = "gradient_checkpointing", .flag = "--gradient-checkpointing",
                  .spec_key = "advanced.gradient_checkpointing",
                  .help = "recompute each decoder layer's activations in the backward pass (less memory, about one more forward)",
                  .result = false, .ref = RLHF_SETTING_REF(C, gradient_checkpointing)});
  rows.push_back({.name = "threads", .flag = "--threads", .spec_key = "advanced.threads",
                  .help = "CPU threads (0 = all cores)", .min = 0, .max = 1024, .result = false,
                  .ref = RLHF_SETTING_REF(C, threads)});
}

// Checks that are not one value against its row.
template <class C>
void check_shared(const C& c, const SettingNames& given) {
  if (given.count("train_steps") && given.count("epochs"))
    throw SettingError("epochs", "give the train steps or the epochs, not both");
  if (given.count("micro_batch_size") && c.micro_batch_size > c.batch_size)
    throw SettingError("micro_batch_size", fmt::format("must not exceed the batch size ({} > {})", c.micro_batch_size, c.batch_size));
  const std::string& d = c.device;
  const bool device_ok = d == "cpu" || d == "cuda" ||
                         (d.rfind("cuda:", 0) == 0 && d.size() > 5 && d.size() < 9 &&
                          d.find_first_not_of("0123456789", 5) == std::string::npos);
  if (!device_ok) throw SettingError("device", fmt::format("is \"{}\"; it must be cpu, cuda or cuda:N", d));
}

}  // namespace rlhf::config_rows
