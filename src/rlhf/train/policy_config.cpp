#include "rlhf/train/policy_config.h"

// Rows name only the fields they use; the others keep their defaults.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include <cmath>

#include "rlhf/train/config_rows.h"

namespace rlhf {
namespace {

using namespace config_rows;
#define REF(member) RLHF_SETTING_REF(PolicyTrainConfig, member)

SettingsTable<PolicyTrainConfig> make_table() {
  SettingsTable<PolicyTrainConfig> t;
  t.command = "train-policy";
  auto& r = t.rows;
  // Data and encoding.
  r.push_back({.name = "instruction", .flag = "--instruction", .spec_key = "instruction",
               .help = "text prepended to every prompt (unset: the reward model's)", .ref = REF(instruction)});
  r.push_back({.name = "prompt_format", .flag = "--prompt-format", .spec_key = "advanced.prompt_format",
               .help = "raw, chat or auto (unset or auto: as the reward model was trained)", .choices = {"raw", "chat", "auto"},
               .ref = REF(prompt_format)});
  add_shared_rows<PolicyTrainConfig>(r);
  // Model.
  r.push_back({.name = "lora.rank", .flag = "--lora-rank", .spec_key = "advanced.policy_lora_rank",
               .help = "LoRA rank of the policy adapter", .min = 1, .max = 4096, .ref = REF(lora.rank)});
  r.push_back({.name = "lora.alpha", .flag = "--lora-alpha", .spec_key = "advanced.policy_lora_alpha",
               .help = "LoRA alpha (0 = the rank: scale 1)", .min = 0, .max = 1e6, .ref = REF(lora.alpha)});
  r.push_back({.name = "lora.targets", .flag = "--lora-targets", .spec_key = "advanced.policy_lora_targets",
               .help = "LoRA target modules", .choices = kLoraTargets, .ref = REF(lora.targets)});
  r.push_back({.name = "value_model", .flag = "--value-model", .spec_key = "advanced.value_model",
               .help = "separate: the value has an adapter of its own (TRL's layout); shared: a value head on the "
                       "policy's trunk, one forward/backward for both (about half the update's work)",
               .choices = {"separate", "shared"}, .ref = REF(value_model)});
  // RL.
  r.push_back({.name = "train_steps", .flag = "--reinforcement-learning-train-steps",
               .spec_key = "reinforcement_learning_train_steps", .help = "PPO steps (one batch of rollouts each)", .min = 1,
               .max = kUnbounded, .ref = REF(train_steps)});
  r.push_back({.name = "epochs", .flag = "--reinforcement-learning-epochs", .spec_key = "reinforcement_learning_epochs",
               .help = "epochs instead of steps: steps = ceil(prompts / batch) x epochs (0 = use the steps)", .min = 0,
               .max = 1e6, .ref = REF(epochs)});
  r.push_back({.name = "batch_size", .flag = "--batch-size", .spec_key = "advanced.reinforcement_learning_batch_size",
               .help = "prompts per PPO step", .min = 1, .max = kMaxLength, .ref = REF(batch_size)});
  r.push_back({.name = "micro_batch_size", .flag = "--micro-batch-size",
               .spec_key = "advanced.reinforcement_learning_micro_batch_size",
               .help = "sequences per forward/backward (gradient accumulation; at most the batch size)", .min = 1,
               .max = kMaxLength, .ref = REF(micro_batch_size)});
  r.push_back({.name = "generation_batch_size", .flag = "--generation-batch-size", .spec_key = "advanced.generation_batch_size",
               .help = "sequences generated together (0 = the whole batch)", .min = 0, .max = kMaxLength,
               .ref = REF(generation_batch_size)});
  r.push_back({.name = "num_mini_batches", .flag = "--num-mini-batches", .spec_key = "advanced.num_mini_batches",
               .help = "optimizer updates per PPO epoch (divides the batch size)", .min = 1, .max = kMaxLength,
               .ref = REF(num_mini_batches)});
  r.push_back({.name = "ppo_epochs", .flag = "--ppo-epochs", .spec_key = "advanced.ppo_epochs",
               .help = "passes over each batch of rollouts", .min = 1, .max = 1000, .ref = REF(ppo_epochs)});
  r.push_back({.name = "learning_rate_multiplier", .flag = "--reinforcement-learning-rate-multiplier",
               .spec_key = "reinforcement_learning_rate_multiplier", .help = "scales the base learning rate 1e-4",
               .min = 0, .max = 1e6, .open_min = true, .ref = REF(learning_rate_multiplier)});
  r.push_back({.name = "weight_decay", .flag = "--weight-decay", .spec_key = "advanced.reinforcement_learning_weight_decay",
               .help = "AdamW decoupled weight decay", .min = 0, .max = 1e6, .ref = REF(weight_decay)});
  r.push_back({.name = "adam_epsilon", .flag = "--adam-epsilon", .spec_key = "advanced.reinforcement_learning_adam_epsilon",
               .help = "AdamW epsilon", .min = 0, .max = 1, .open_min = true, .ref = REF(adam_epsilon)});
  r.push_back({.name = "max_grad_norm", .flag = "--max-grad-norm", .spec_key = "advanced.reinforcement_learning_max_grad_norm",
               .help = "gradient clipping norm (0 = off)", .min = 0, .max = 1e6, .ref = REF(max_grad_norm)});
  r.push_back({.name = "kl_coeff", .flag = "--kl-coeff", .spec_key = "kl_coeff",
               .help = "weight of the KL penalty against the untuned model (0 = no reference model)", .min = 0, .max = 1e6,
               .ref = REF(kl_coeff)});
  r.push_back({.name = "measure_kl", .flag = "--measure-kl", .spec_key = "advanced.measure_kl",
               .help = "with --kl-coeff 0, still run the reference and log objective/kl (costs a forward pass)",
               .result = false, .ref = REF(measure_kl)});
  r.push_back({.name = "adaptive_kl", .flag = "--adaptive-kl", .spec_key = "advanced.adaptive_kl",
               .help = "adapt kl_coeff towards --target-kl", .ref = REF(adaptive_kl)});
  r.push_back({.name = "target_kl", .flag = "--target-kl", .spec_key = "advanced.target_kl",
               .help = "target KL per sequence (adaptive KL)", .min = 0, .max = 1e6, .open_min = true, .ref = REF(target_kl)});
  r.push_back({.name = "kl_horizon", .flag = "--kl-horizon", .spec_key = "advanced.kl_horizon",
               .help = "horizon of the adaptive KL controller", .min = 0, .max = 1e12, .open_min = true,
               .ref = REF(kl_horizon)});
  r.push_back({.name = "gamma", .flag = "--gamma", .spec_key = "advanced.gamma", .help = "discount", .min = 0, .max = 1,
               .ref = REF(gamma)});
  r.push_back({.name = "lam", .flag = "--lam", .spec_key = "advanced.lam", .help = "GAE lambda", .min = 0, .max = 1,
               .ref = REF(lam)});
  r.push_back({.name = "cliprange", .flag = "--cliprange", .spec_key = "advanced.cliprange", .help = "policy ratio clip",
               .min = 0, .max = 10, .open_min = true, .ref = REF(cliprange)});
  r.push_back({.name = "cliprange_value", .flag = "--cliprange-value", .spec_key = "advanced.cliprange_value",
               .help = "value clip", .min = 0, .max = 1e6, .open_min = true, .ref = REF(cliprange_value)});
  r.push_back({.name = "vf_coef", .flag = "--vf-coef", .spec_key = "advanced.vf_coef", .help = "weight of the value loss",
               .min = 0, .max = 1e6, .ref = REF(vf_coef)});
  r.push_back({.name = "temperature", .flag = "--temperature", .spec_key = "advanced.temperature",
               .help = "rollout sampling temperature", .min = 0, .max = 100, .open_min = true, .ref = REF(temperature)});
  r.push_back({.name = "reward_normalization_samples", .flag = "--reward-normalization-samples",
               .spec_key = "advanced.reward_normalization_samples",
               .help = "completions of the untuned policy scored before training; scores are then standardised by "
                       "their mean and std (0 = raw scores)",
               .min = 0, .max = 1 << 20, .ref = REF(reward_normalization_samples)});
  r.push_back({.name = "eos_penalty", .flag = "--no-eos-penalty", .spec_key = "advanced.eos_penalty",
               .help = "penalise completions without EOS within the length (the flag turns it off)",
               .negated_flag = true, .ref = REF(eos_penalty)});
  r.push_back({.name = "missing_eos_penalty", .flag = "--missing-eos-penalty", .spec_key = "advanced.missing_eos_penalty",
               .help = "the penalty of a completion with no EOS within the length (see --eos-penalty-mode)", .min = -1e6,
               .max = 1e6, .ref = REF(missing_eos_penalty)});
  r.push_back({.name = "eos_penalty_mode", .flag = "--eos-penalty-mode", .spec_key = "advanced.eos_penalty_mode",
               .help = "subtract: |penalty| is subtracted from the score (keeps the reward model's ranking of "
                       "unfinished completions); replace: the score becomes the penalty",
               .choices = {"subtract", "replace"}, .ref = REF(eos_penalty_mode)});
  // Run.
  r.push_back({.name = "eval_every", .flag = "--eval-every", .spec_key = "advanced.eval_every",
               .help = "evaluate on --eval-dataset every N steps (0 = before and after only)", .min = 0, .max = kUnbounded,
               .result = false, .ref = REF(eval_every)});
  r.push_back({.name = "max_eval_prompts", .flag = "--max-eval-prompts", .spec_key = "advanced.max_eval_prompts",
               .help = "evaluation prompts used at most (the first ones)", .min = 1, .max = 1 << 30,
               .ref = REF(max_eval_prompts)});
  return t;
}

}  // namespace

int64_t PolicyTrainConfig::steps_for(int64_t prompts) const {
  if (epochs <= 0) return train_steps;
  const double per_epoch = std::ceil(static_cast<double>(std::max<int64_t>(prompts, 0)) / static_cast<double>(batch_size));
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(per_epoch * epochs)));
}

const SettingsTable<PolicyTrainConfig>& policy_settings() {
  static const SettingsTable<PolicyTrainConfig> t = make_table();
  return t;
}

void check_policy_config(const PolicyTrainConfig& c, const SettingNames& given) {
  check_settings(policy_settings(), c);
  check_shared(c, given);
  if (c.batch_size % c.num_mini_batches != 0)
    throw SettingError("num_mini_batches", fmt::format("must divide the batch size ({} does not divide {})",
                                                       c.num_mini_batches, c.batch_size));
  if (c.reward_normalization_samples == 1)
    throw SettingError("reward_normalization_samples", "needs at least 2 completions for a standard deviation (0 = off)");
  if (c.adaptive_kl && c.kl_coeff == 0) throw SettingError("adaptive_kl", "needs a positive kl_coeff to start from");
}

}  // namespace rlhf
