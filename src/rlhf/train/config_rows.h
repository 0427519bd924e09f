// The settings both trainers have, declared once for both tables (internal to train/).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
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

// The rows of a trainer on preference pairs (train-reward, train-dpo); `prefix` names the trainer
// in the spec keys of its own settings ("reward_model_", "dpo_").

// The data and its encoding: the instruction, the prompt format, the shared rows, the
// validation pairs.
template <class C>
void add_preference_data_rows(std::vector<SettingRow>& rows, const std::string& prefix) {
  rows.push_back({.name = "instruction", .flag = "--instruction", .spec_key = "instruction",
                  .help = "text prepended to every prompt", .ref = RLHF_SETTING_REF(C, instruction)});
  rows.push_back({.name = "prompt_format", .flag = "--prompt-format", .spec_key = "advanced.prompt_format",
                  .help = "raw (text prompts, as the seed), chat (the model's template), auto (chat when every prompt is a "
                          "conversation, raw when none is)",
                  .choices = {"raw", "chat", "auto"}, .ref = RLHF_SETTING_REF(C, prompt_format)});
  add_shared_rows<C>(rows);
  rows.push_back({.name = "validation_fraction", .flag = "--validation-fraction", .spec_key = "advanced.validation_fraction",
                  .help = "pairs held out for validation when no --eval-dataset has preference fields", .min = 0,
                  .max = 0.9, .ref = RLHF_SETTING_REF(C, validation_fraction)});
  rows.push_back({.name = "max_validation_pairs", .flag = "--max-validation-pairs",
                  .spec_key = "advanced." + prefix + "max_validation_pairs", .help = "validation pairs at most", .min = 1,
                  .max = 1 << 30, .ref = RLHF_SETTING_REF(C, max_validation_pairs)});
}

// The LoRA adapter the trainer trains (`adapter`: "reward", "policy").
template <class C>
void add_lora_rows(std::vector<SettingRow>& rows, const std::string& prefix, const std::string& adapter) {
  rows.push_back({.name = "lora.rank", .flag = "--lora-rank", .spec_key = "advanced." + prefix + "lora_rank",
                  .help = "LoRA rank of the " + adapter + " adapter", .min = 1, .max = 4096,
                  .ref = RLHF_SETTING_REF(C, lora.rank)});
  rows.push_back({.name = "lora.alpha", .flag = "--lora-alpha", .spec_key = "advanced." + prefix + "lora_alpha",
                  .help = "LoRA alpha (0 = the rank: scale 1)", .min = 0, .max = 1e6, .ref = RLHF_SETTING_REF(C, lora.alpha)});
  rows.push_back({.name = "lora.targets", .flag = "--lora-targets", .spec_key = "advanced." + prefix + "lora_targets",
                  .help = "LoRA target modules", .choices = kLoraTargets, .ref = RLHF_SETTING_REF(C, lora.targets)});
}

// Steps, batches and AdamW over pairs; `flag_prefix` goes before the flags of the steps, the
// epochs and the learning rate ("--reward-model-" or "--").
template <class C>
void add_pair_optimizer_rows(std::vector<SettingRow>& rows, const std::string& prefix, const std::string& flag_prefix) {
  rows.push_back({.name = "train_steps", .flag = flag_prefix + "train-steps", .spec_key = prefix + "train_steps",
                  .help = "optimizer steps", .min = 1, .max = kUnbounded, .ref = RLHF_SETTING_REF(C, train_steps)});
  rows.push_back({.name = "epochs", .flag = flag_prefix + "epochs", .spec_key = prefix + "epochs",
                  .help = "epochs instead of steps: steps = ceil(pairs / batch) x epochs (0 = use the steps)", .min = 0,
                  .max = 1e6, .ref = RLHF_SETTING_REF(C, epochs)});
  rows.push_back({.name = "batch_size", .flag = "--batch-size", .spec_key = "advanced." + prefix + "batch_size",
                  .help = "pairs per optimizer step", .min = 1, .max = kMaxLength, .ref = RLHF_SETTING_REF(C, batch_size)});
  rows.push_back({.name = "micro_batch_size", .flag = "--micro-batch-size",
                  .spec_key = "advanced." + prefix + "micro_batch_size",
                  .help = "pairs per forward/backward (gradient accumulation; at most the batch size)", .min = 1,
                  .max = kMaxLength, .ref = RLHF_SETTING_REF(C, micro_batch_size)});
  rows.push_back({.name = "learning_rate_multiplier", .flag = flag_prefix + "learning-rate-multiplier",
                  .spec_key = prefix + "learning_rate_multiplier", .help = "scales the base learning rate 1e-4", .min = 0,
                  .max = 1e6, .open_min = true, .ref = RLHF_SETTING_REF(C, learning_rate_multiplier)});
  rows.push_back({.name = "warmup_ratio", .flag = "--warmup-ratio", .spec_key = "advanced." + prefix + "warmup_ratio",
                  .help = "fraction of the steps with linear warmup", .min = 0, .max = 1,
                  .ref = RLHF_SETTING_REF(C, warmup_ratio)});
  rows.push_back({.name = "weight_decay", .flag = "--weight-decay", .spec_key = "advanced." + prefix + "weight_decay",
                  .help = "AdamW decoupled weight decay", .min = 0, .max = 1e6, .ref = RLHF_SETTING_REF(C, weight_decay)});
  rows.push_back({.name = "adam_epsilon", .flag = "--adam-epsilon", .spec_key = "advanced." + prefix + "adam_epsilon",
                  .help = "AdamW epsilon", .min = 0, .max = 1, .open_min = true, .ref = RLHF_SETTING_REF(C, adam_epsilon)});
  rows.push_back({.name = "max_grad_norm", .flag = "--max-grad-norm", .spec_key = "advanced." + prefix + "max_grad_norm",
                  .help = "gradient clipping norm (0 = off)", .min = 0, .max = 1e6, .ref = RLHF_SETTING_REF(C, max_grad_norm)});
}

template <class C>
void add_validation_every_row(std::vector<SettingRow>& rows, const std::string& prefix) {
  rows.push_back({.name = "validation_every", .flag = "--validation-every", .spec_key = "advanced." + prefix + "validation_every",
                  .help = "validate every N steps (and at the end; 0 = only at the end)", .min = 0, .max = kUnbounded,
                  .result = false, .ref = RLHF_SETTING_REF(C, validation_every)});
}

// The steps of a run over `pairs` training pairs: the train steps, or ceil(pairs / batch) x epochs
// (at least 1) when epochs are given.
template <class C>
int64_t pair_steps(const C& c, int64_t pairs) {
  if (c.epochs <= 0) return c.train_steps;
  const double per_epoch = std::ceil(static_cast<double>(std::max<int64_t>(pairs, 0)) / static_cast<double>(c.batch_size));
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(per_epoch * c.epochs)));
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
