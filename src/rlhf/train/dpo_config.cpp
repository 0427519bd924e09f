#include "rlhf/train/dpo_config.h"

// Rows name only the fields they use; the others keep their defaults.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include <cmath>

#include "rlhf/train/config_rows.h"

namespace rlhf {
namespace {

using namespace config_rows;
#define REF(member) RLHF_SETTING_REF(DpoTrainConfig, member)

SettingsTable<DpoTrainConfig> make_table() {
  SettingsTable<DpoTrainConfig> t;
  t.command = "train-dpo";
  auto& r = t.rows;
  // Data and encoding.
  r.push_back({.name = "instruction", .flag = "--instruction", .spec_key = "instruction",
               .help = "text prepended to every prompt", .ref = REF(instruction)});
  r.push_back({.name = "prompt_format", .flag = "--prompt-format", .spec_key = "advanced.prompt_format",
               .help = "raw (text prompts, as the seed), chat (the model's template), auto (chat when every prompt is a "
                       "conversation, raw when none is)",
               .choices = {"raw", "chat", "auto"}, .ref = REF(prompt_format)});
  add_shared_rows<DpoTrainConfig>(r);
  r.push_back({.name = "validation_fraction", .flag = "--validation-fraction", .spec_key = "advanced.validation_fraction",
               .help = "pairs held out for validation when no --eval-dataset has preference fields", .min = 0, .max = 0.9,
               .ref = REF(validation_fraction)});
  r.push_back({.name = "max_validation_pairs", .flag = "--max-validation-pairs",
               .spec_key = "advanced.dpo_max_validation_pairs", .help = "validation pairs at most", .min = 1,
               .max = 1 << 30, .ref = REF(max_validation_pairs)});
  // Model.
  r.push_back({.name = "lora.rank", .flag = "--lora-rank", .spec_key = "advanced.dpo_lora_rank",
               .help = "LoRA rank of the policy adapter", .min = 1, .max = 4096, .ref = REF(lora.rank)});
  r.push_back({.name = "lora.alpha", .flag = "--lora-alpha", .spec_key = "advanced.dpo_lora_alpha",
               .help = "LoRA alpha (0 = the rank: scale 1)", .min = 0, .max = 1e6, .ref = REF(lora.alpha)});
  r.push_back({.name = "lora.targets", .flag = "--lora-targets", .spec_key = "advanced.dpo_lora_targets",
               .help = "LoRA target modules", .choices = kLoraTargets, .ref = REF(lora.targets)});
  // Loss.
  r.push_back({.name = "beta", .flag = "--beta", .spec_key = "advanced.dpo_beta",
               .help = "strength of the tie to the reference (the implicit reward is beta x the log-ratio)", .min = 0,
               .max = 1e6, .open_min = true, .ref = REF(beta)});
  r.push_back({.name = "loss_type", .flag = "--loss-type", .spec_key = "advanced.dpo_loss_type",
               .help = "sigmoid (DPO), ipo (squared distance of the log-ratio margin from 1/(2 beta)), hinge (SLiC)",
               .choices = {"sigmoid", "ipo", "hinge"}, .ref = REF(loss_type)});
  r.push_back({.name = "label_smoothing", .flag = "--label-smoothing", .spec_key = "advanced.dpo_label_smoothing",
               .help = "conservative DPO: the assumed share of flipped preferences, in [0, 0.5) (sigmoid loss only)",
               .min = 0, .max = 0.5, .ref = REF(label_smoothing)});
  // Optimisation.
  r.push_back({.name = "train_steps", .flag = "--train-steps", .spec_key = "dpo_train_steps", .help = "optimizer steps",
               .min = 1, .max = kUnbounded, .ref = REF(train_steps)});
  r.push_back({.name = "epochs", .flag = "--epochs", .spec_key = "dpo_epochs",
               .help = "epochs instead of steps: steps = ceil(pairs / batch) x epochs (0 = use the steps)", .min = 0,
               .max = 1e6, .ref = REF(epochs)});
  r.push_back({.name = "batch_size", .flag = "--batch-size", .spec_key = "advanced.dpo_batch_size",
               .help = "pairs per optimizer step", .min = 1, .max = kMaxLength, .ref = REF(batch_size)});
  r.push_back({.name = "micro_batch_size", .flag = "--micro-batch-size", .spec_key = "advanced.dpo_micro_batch_size",
               .help = "pairs per forward/backward (gradient accumulation; at most the batch size)", .min = 1,
               .max = kMaxLength, .ref = REF(micro_batch_size)});
  r.push_back({.name = "learning_rate_multiplier", .flag = "--learning-rate-multiplier",
               .spec_key = "dpo_learning_rate_multiplier", .help = "scales the base learning rate 1e-4", .min = 0,
               .max = 1e6, .open_min = true, .ref = REF(learning_rate_multiplier)});
  r.push_back({.name = "warmup_ratio", .flag = "--warmup-ratio", .spec_key = "advanced.dpo_warmup_ratio",
               .help = "fraction of the steps with linear warmup", .min = 0, .max = 1, .ref = REF(warmup_ratio)});
  r.push_back({.name = "weight_decay", .flag = "--weight-decay", .spec_key = "advanced.dpo_weight_decay",
               .help = "AdamW decoupled weight decay", .min = 0, .max = 1e6, .ref = REF(weight_decay)});
  r.push_back({.name = "adam_epsilon", .flag = "--adam-epsilon", .spec_key = "advanced.dpo_adam_epsilon",
               .help = "AdamW epsilon", .min = 0, .max = 1, .open_min = true, .ref = REF(adam_epsilon)});
  r.push_back({.name = "max_grad_norm", .flag = "--max-grad-norm", .spec_key = "advanced.dpo_max_grad_norm",
               .help = "gradient clipping norm (0 = off)", .min = 0, .max = 1e6, .ref = REF(max_grad_norm)});
  // Run.
  r.push_back({.name = "validation_every", .flag = "--validation-every", .spec_key = "advanced.dpo_validation_every",
               .help = "validate every N steps (and at the end; 0 = only at the end)", .min = 0, .max = kUnbounded,
               .result = false, .ref = REF(validation_every)});
  return t;
}

}  // namespace

int64_t DpoTrainConfig::steps_for(int64_t pairs) const {
  if (epochs <= 0) return train_steps;
  const double per_epoch = std::ceil(static_cast<double>(std::max<int64_t>(pairs, 0)) / static_cast<double>(batch_size));
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(per_epoch * epochs)));
}

const SettingsTable<DpoTrainConfig>& dpo_settings() {
  static const SettingsTable<DpoTrainConfig> t = make_table();
  return t;
}

void check_dpo_config(const DpoTrainConfig& c, const SettingNames& given) {
  check_settings(dpo_settings(), c);
  check_shared(c, given);
  if (c.label_smoothing >= 0.5)
    throw SettingError("label_smoothing", fmt::format("is {}; it must be below 0.5", c.label_smoothing));
  if (c.label_smoothing > 0 && c.loss_type != "sigmoid")
    throw SettingError("label_smoothing", fmt::format("applies to the sigmoid loss only, not {}", c.loss_type));
}

}  // namespace rlhf
