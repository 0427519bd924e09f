#include "rlhf/train/reward_config.h"

// Rows name only the fields they use; the others keep their defaults.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include <cmath>

#include "rlhf/train/config_rows.h"

namespace rlhf {
namespace {

using namespace config_rows;
#define REF(member) RLHF_SETTING_REF(RewardTrainConfig, member)

SettingsTable<RewardTrainConfig> make_table() {
  SettingsTable<RewardTrainConfig> t;
  t.command = "train-reward";
  auto& r = t.rows;
  // Data and encoding.
  r.push_back({.name = "instruction", .flag = "--instruction", .spec_key = "instruction",
               .help = "text prepended to every prompt", .ref = REF(instruction)});
  r.push_back({.name = "prompt_format", .flag = "--prompt-format", .spec_key = "advanced.prompt_format",
               .help = "raw (text prompts, as the seed), chat (the model's template), auto (chat when every prompt is a "
                       "conversation, raw when none is)",
               .choices = {"raw", "chat", "auto"}, .ref = REF(prompt_format)});
  add_shared_rows<RewardTrainConfig>(r);
  r.push_back({.name = "validation_fraction", .flag = "--validation-fraction", .spec_key = "advanced.validation_fraction",
               .help = "pairs held out for validation when no --eval-dataset has preference fields", .min = 0, .max = 0.9,
               .ref = REF(validation_fraction)});
  r.push_back({.name = "max_validation_pairs", .flag = "--max-validation-pairs",
               .spec_key = "advanced.reward_model_max_validation_pairs", .help = "validation pairs at most",
               .min = 1, .max = 1 << 30, .ref = REF(max_validation_pairs)});
  // Model.
  r.push_back({.name = "lora.rank", .flag = "--lora-rank", .spec_key = "advanced.reward_model_lora_rank",
               .help = "LoRA rank of the reward adapter", .min = 1, .max = 4096, .ref = REF(lora.rank)});
  r.push_back({.name = "lora.alpha", .flag = "--lora-alpha", .spec_key = "advanced.reward_model_lora_alpha",
               .help = "LoRA alpha (0 = the rank: scale 1)", .min = 0, .max = 1e6, .ref = REF(lora.alpha)});
  r.push_back({.name = "lora.targets", .flag = "--lora-targets", .spec_key = "advanced.reward_model_lora_targets",
               .help = "LoRA target modules", .choices = kLoraTargets, .ref = REF(lora.targets)});
  // Optimisation.
  r.push_back({.name = "train_steps", .flag = "--reward-model-train-steps", .spec_key = "reward_model_train_steps",
               .help = "optimizer steps", .min = 1, .max = kUnbounded, .ref = REF(train_steps)});
  r.push_back({.name = "epochs", .flag = "--reward-model-epochs", .spec_key = "reward_model_epochs",
               .help = "epochs instead of steps: steps = ceil(pairs / batch) x epochs (0 = use the steps)", .min = 0,
               .max = 1e6, .ref = REF(epochs)});
  r.push_back({.name = "batch_size", .flag = "--batch-size", .spec_key = "advanced.reward_model_batch_size",
               .help = "pairs per optimizer step", .min = 1, .max = kMaxLength, .ref = REF(batch_size)});
  r.push_back({.name = "micro_batch_size", .flag = "--micro-batch-size", .spec_key = "advanced.reward_model_micro_batch_size",
               .help = "pairs per forward/backward (gradient accumulation; at most the batch size)", .min = 1,
               .max = kMaxLength, .ref = REF(micro_batch_size)});
  r.push_back({.name = "learning_rate_multiplier", .flag = "--reward-model-learning-rate-multiplier",
               .spec_key = "reward_model_learning_rate_multiplier", .help = "scales the base learning rate 1e-4",
               .min = 0, .max = 1e6, .open_min = true, .ref = REF(learning_rate_multiplier)});
  r.push_back({.name = "warmup_ratio", .flag = "--warmup-ratio", .spec_key = "advanced.reward_model_warmup_ratio",
               .help = "fraction of the steps with linear warmup", .min = 0, .max = 1, .ref = REF(warmup_ratio)});
  r.push_back({.name = "weight_decay", .flag = "--weight-decay", .spec_key = "advanced.reward_model_weight_decay",
               .help = "AdamW decoupled weight decay", .min = 0, .max = 1e6, .ref = REF(weight_decay)});
  r.push_back({.name = "adam_epsilon", .flag = "--adam-epsilon", .spec_key = "advanced.reward_model_adam_epsilon",
               .help = "AdamW epsilon", .min = 0, .max = 1, .open_min = true, .ref = REF(adam_epsilon)});
  r.push_back({.name = "max_grad_norm", .flag = "--max-grad-norm", .spec_key = "advanced.reward_model_max_grad_norm",
               .help = "gradient clipping norm (0 = off)", .min = 0, .max = 1e6, .ref = REF(max_grad_norm)});
  r.push_back({.name = "margin", .flag = "--margin", .spec_key = "advanced.reward_model_margin",
               .help = "margin subtracted from r_chosen - r_rejected in the loss", .min = -1e6, .max = 1e6,
               .ref = REF(margin)});
  r.push_back({.name = "center_rewards_coefficient", .flag = "--center-rewards-coefficient",
               .spec_key = "advanced.reward_model_center_rewards_coefficient",
               .help = "coefficient of the reward-centering term (0 = off)", .min = 0, .max = 1e6,
               .shortcut_flag = "--center-rewards", .shortcut_value = "0.01",
               .shortcut_help = "add the reward-centering term with coefficient 0.01",
               .ref = REF(center_rewards_coefficient)});
  // Run.
  r.push_back({.name = "validation_every", .flag = "--validation-every", .spec_key = "advanced.reward_model_validation_every",
               .help = "validate every N steps (and at the end; 0 = only at the end)", .min = 0, .max = kUnbounded,
               .result = false, .ref = REF(validation_every)});
  r.push_back({.name = "centering_pairs", .flag = "--centering-pairs", .spec_key = "advanced.reward_model_centering_pairs",
               .help = "training pairs the final mean reward is measured on, to centre the head's bias", .min = 1,
               .max = 1 << 30, .ref = REF(centering_pairs)});
  return t;
}

}  // namespace

int64_t RewardTrainConfig::steps_for(int64_t pairs) const {
  if (epochs <= 0) return train_steps;
  const double per_epoch = std::ceil(static_cast<double>(std::max<int64_t>(pairs, 0)) / static_cast<double>(batch_size));
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(per_epoch * epochs)));
}

const SettingsTable<RewardTrainConfig>& reward_settings() {
  static const SettingsTable<RewardTrainConfig> t = make_table();
  return t;
}

void check_reward_config(const RewardTrainConfig& c, const SettingNames& given) {
  check_settings(reward_settings(), c);
  check_shared(c, given);
}

}  // namespace rlhf
