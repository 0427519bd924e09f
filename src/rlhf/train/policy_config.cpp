#include "rlhf/train/policy_config.h"

// Rows name only the fields they use; the others keep their defaults.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include <cmath>
#include <exception>
#include <string>

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
  // Method.
  r.push_back({.name = "method", .flag = "--method", .spec_key = "method",
               .help = "ppo: GAE advantages on a value model; grpo: each completion against its prompt's group, no "
                       "value model; rloo: each completion against the mean of the other completions of its prompt, no "
                       "value model (docs/online-methods.md)",
               .choices = {"ppo", "grpo", "rloo"}, .ref = REF(method)});
  r.push_back({.name = "num_generations", .flag = "--num-generations", .spec_key = "advanced.num_generations",
               .help = "completions per prompt: a step has batch size x this many rollouts (0 = the method's: ppo 1, "
                       "grpo 8, rloo 2)",
               .min = 0, .max = kMaxLength, .ref = REF(num_generations)});
  r.push_back({.name = "scale_rewards", .flag = "--scale-rewards", .spec_key = "advanced.scale_rewards",
               .help = "grpo: the centred rewards are divided by the std of their group, of the whole batch, or not",
               .choices = {"group", "batch", "none"}, .ref = REF(scale_rewards)});
  r.push_back({.name = "loss_type", .flag = "--loss-type", .spec_key = "advanced.loss_type",
               .help = "grpo: token losses averaged per sequence then over sequences (grpo), over all tokens of the "
                       "batch (dapo), or summed / (rollouts x target length) (dr_grpo)",
               .choices = {"grpo", "dapo", "dr_grpo"}, .ref = REF(loss_type)});
  r.push_back({.name = "epsilon_high", .flag = "--epsilon-high", .spec_key = "advanced.epsilon_high",
               .help = "grpo/rloo: upper clip of the ratio, 1 + this (0 = --cliprange)", .min = 0, .max = 10,
               .ref = REF(epsilon_high)});
  r.push_back({.name = "num_iterations", .flag = "--num-iterations", .spec_key = "advanced.num_iterations",
               .help = "grpo/rloo: optimizer passes over each batch of rollouts (ppo's are --ppo-epochs)", .min = 1,
               .max = 1000, .ref = REF(num_iterations)});
  r.push_back({.name = "reward_rule", .flag = "--reward-rule", .spec_key = "reward_rules",
               .help = "rule rewards: max-words=N, regex=PATTERN, prefer-shorter, exact-match=FIELD, contains=FIELD "
                       "(one per flag; with rules --reward-model is optional)",
               .repeatable = true, .ref = REF(reward_rule)});
  r.push_back({.name = "reward_weights", .flag = "--reward-weights", .spec_key = "advanced.reward_weights",
               .help = "one weight per reward, the reward model's first when given, then each rule (empty = all 1)",
               .ref = REF(reward_weights)});
  // RL.
  r.push_back({.name = "train_steps", .flag = "--reinforcement-learning-train-steps",
               .spec_key = "reinforcement_learning_train_steps", .help = "steps (one batch of rollouts each)", .min = 1,
               .max = kUnbounded, .ref = REF(train_steps)});
  r.push_back({.name = "epochs", .flag = "--reinforcement-learning-epochs", .spec_key = "reinforcement_learning_epochs",
               .help = "epochs instead of steps: steps = ceil(prompts / batch) x epochs (0 = use the steps)", .min = 0,
               .max = 1e6, .ref = REF(epochs)});
  r.push_back({.name = "batch_size", .flag = "--batch-size", .spec_key = "advanced.reinforcement_learning_batch_size",
               .help = "prompts per step (each completed --num-generations times)", .min = 1, .max = kMaxLength, .ref = REF(batch_size)});
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
               .help = "beta: weight of the KL penalty against the untuned model (0 = no reference model); unless given, "
                       "the method's: ppo 0.1, grpo 0, rloo 0.05", .min = 0, .max = 1e6,
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
  r.push_back({.name = "cliprange", .flag = "--cliprange,--epsilon", .spec_key = "advanced.cliprange",
               .help = "epsilon: the policy ratio is clipped to [1 - this, 1 + this]",
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

int64_t PolicyTrainConfig::generations() const {
  return num_generations > 0 ? num_generations : method_default_generations(method);
}

namespace {
std::vector<double> parse_weights(const std::vector<std::string>& reward_weights) {
  std::vector<double> out;
  for (const auto& w : reward_weights) {
    size_t used = 0;
    double x = 0;
    try {
      x = std::stod(w, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != w.size() || !std::isfinite(x))
      throw SettingError("reward_weights", fmt::format("\"{}\" is not a number", w));
    out.push_back(x);
  }
  return out;
}
}  // namespace

std::vector<double> PolicyTrainConfig::weights() const {
  const size_t n = (reward_model.empty() ? 0 : 1) + reward_rule.size();
  if (reward_weights.empty()) return std::vector<double>(n, 1.0);
  const std::vector<double> out = parse_weights(reward_weights);
  if (out.size() != n)
    throw SettingError("reward_weights",
                       fmt::format("gives {} weight(s) for {} reward(s) ({}{} rule(s))", out.size(), n,
                                   reward_model.empty() ? "" : "the reward model and ", reward_rule.size()));
  return out;
}

double method_default_kl_coeff(const std::string& method) {
  return method == "grpo" ? 0.0 : method == "rloo" ? 0.05 : 0.1;
}

int64_t method_default_generations(const std::string& method) {
  return method == "grpo" ? 8 : method == "rloo" ? 2 : 1;
}

void apply_method_defaults(PolicyTrainConfig& c, const SettingNames& given) {
  if (!given.count("kl_coeff")) c.kl_coeff = method_default_kl_coeff(c.method);
}

const SettingsTable<PolicyTrainConfig>& policy_settings() {
  static const SettingsTable<PolicyTrainConfig> t = make_table();
  return t;
}

void check_policy_config(const PolicyTrainConfig& c, const SettingNames& given) {
  check_settings(policy_settings(), c);
  PolicyTrainConfig rollouts = c;  // the shared checks hold the micro-batch against the rollouts of a step
  rollouts.batch_size = c.batch_size * c.generations();
  check_shared(rollouts, given);
  if (c.batch_size % c.num_mini_batches != 0)
    throw SettingError("num_mini_batches", fmt::format("must divide the batch size ({} does not divide {})",
                                                       c.num_mini_batches, c.batch_size));
  if (c.method != "ppo" && c.generations() < 2)
    throw SettingError("num_generations", fmt::format("{} compares the completions of a prompt: it needs at least 2 "
                                                      "(is {})", c.method, c.generations()));
  if (c.method != "ppo" && given.count("value_model"))
    throw SettingError("value_model", fmt::format("{} has no value model", c.method));
  if (c.method != "ppo" && c.adaptive_kl) throw SettingError("adaptive_kl", "is ppo's (grpo and rloo keep beta fixed)");
  for (const auto& rule : c.reward_rule)
    if (rule.empty()) throw SettingError("reward_rule", "an empty rule");
  // reward_weights is read against the inputs when the run starts (weights()).
  if (c.reward_normalization_samples == 1)
    throw SettingError("reward_normalization_samples", "needs at least 2 completions for a standard deviation (0 = off)");
  if (c.adaptive_kl && c.kl_coeff == 0) throw SettingError("adaptive_kl", "needs a positive kl_coeff to start from");
}

}  // namespace rlhf
