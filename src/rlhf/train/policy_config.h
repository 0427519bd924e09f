// PolicyTrainConfig: every setting of `rlhf train-policy` and the pipeline's train_policy
// stage. The member initialisers are the only defaults; the settings table in
// policy_config.cpp gives each setting its flag, spec key, allowed range and help, and from
// it come the CLI flags, the spec's keys, the checks, the cache key and the resume
// fingerprint (docs/settings.md lists it). Torch-free.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "rlhf/model/lora_config.h"
#include "rlhf/util/settings.h"

namespace rlhf {

struct PolicyTrainConfig {
  // Inputs and outputs (arguments of the command, not settings).
  std::string prompt_dataset;           // JSONL file, folder or glob (input_text / messages)
  std::string eval_dataset;             // prompts completed greedily before and after training
  std::string reward_model;             // folder written by train-reward; optional with reward rules
  std::string large_model_reference;    // the policy's base; "" = the reward model's base (with no
                                        // reward model: the default model)
  std::string output;
  bool resume = false;
  bool progress = true;

  // Data.
  bool skip_invalid = false;
  std::optional<std::string> prompt_format;  // raw, chat, auto; unset or auto = as the reward model was trained
  std::optional<std::string> instruction;    // prepended to every prompt; unset = the reward model's
  int64_t prompt_sequence_length = 512;
  int64_t target_sequence_length = 64;

  // Models.
  std::string dtype = "auto";           // auto (model.h resolve_dtype), fp32, or bf16 base (adapters and heads stay fp32)
  std::string device = "cpu";
  LoraConfig lora{.rank = 1, .alpha = 0.0, .dropout = 0.0, .targets = {"q_proj", "v_proj"}};
  std::string value_model = "separate";  // separate: an adapter of its own; shared: a head on the policy's trunk

  // Method (docs/online-methods.md): ppo (GAE on a value model), grpo (group-relative
  // advantages, no value model) or rloo (leave-one-out baseline, no value model).
  std::string method = "ppo";
  int64_t num_generations = 0;          // completions per prompt; 0 = the method's (ppo 1, grpo 8, rloo 2)
  std::string scale_rewards = "group";  // grpo: group, batch or none (divisor of the centred rewards)
  std::string loss_type = "dapo";       // grpo: grpo, dapo or dr_grpo (how token losses are averaged)
  double epsilon_high = 0;              // upper clip of the ratio (1 + epsilon_high); 0 = cliprange
  int64_t num_iterations = 1;           // grpo/rloo: updates per batch of rollouts (GRPO's mu)
  // Rule rewards (data/reward_rules.h) and the weights of every reward: the reward model's
  // first when there is one, then each rule in order (empty = all 1).
  std::vector<std::string> reward_rule;
  std::vector<std::string> reward_weights;

  // RL.
  int64_t train_steps = 1000;           // reinforcement_learning_train_steps (one step = one batch of rollouts)
  double epochs = 0;                    // when > 0: steps = ceil(prompts / batch) × epochs
  int64_t batch_size = 64;              // prompts per step
  int64_t micro_batch_size = 8;         // sequences per forward/backward
  int64_t generation_batch_size = 0;    // sequences generated together (0 = the whole batch)
  int64_t num_mini_batches = 1;         // optimizer updates per PPO epoch
  int64_t ppo_epochs = 4;
  double learning_rate_multiplier = 1.0;
  static constexpr double kBaseLearningRate = 1e-4;  // the lr the multiplier scales (LoRA)
  double weight_decay = 0.0;
  double adam_epsilon = 1e-8;
  double max_grad_norm = 1.0;
  int64_t max_skipped_steps = 5;        // consecutive optimizer steps with a non-finite gradient before the run stops
  double kl_coeff = 0.1;                // beta; the method's default unless given (ppo 0.1, grpo 0, rloo 0.05);
                                        // 0: the reference is not computed (unless measure_kl)
  bool measure_kl = false;              // with kl_coeff 0: still compute the reference and log objective/kl
  bool adaptive_kl = false;             // adjust kl_coeff towards target_kl
  double target_kl = 6.0;               // summed over the response, per sequence
  double kl_horizon = 10000;
  double gamma = 1.0;
  double lam = 0.95;
  double cliprange = 0.2;               // epsilon
  double cliprange_value = 0.2;
  double vf_coef = 0.1;
  double temperature = 0.7;
  // Before the first step the reward model scores this many completions of the training
  // prompts sampled from the untuned policy; every score is then (score - their mean) / their
  // std, so kl_coeff and the EOS penalty mean the same whatever the reward model's scale
  // (0 = raw scores).
  int64_t reward_normalization_samples = 64;
  bool eos_penalty = true;
  double missing_eos_penalty = -1.0;    // see eos_penalty_mode; in reference stds when normalised
  std::string eos_penalty_mode = "subtract";  // subtract: score - |penalty|; replace: the score becomes the penalty
  uint64_t seed = 0;

  // Run.
  int64_t checkpoint_every = 10;        // steps (and at the end)
  int64_t keep_checkpoints = 2;
  int64_t eval_every = 0;               // steps; 0 = before and after training only
  int64_t max_eval_prompts = 500;
  bool gradient_checkpointing = false;  // recompute layer activations in the backward pass
  int64_t threads = 0;                  // CPU threads; 0 = all cores

  // The steps this configuration trains for `prompts` prompts (epochs or train_steps).
  int64_t steps_for(int64_t prompts) const;
  // Whether the reference model's log-probs are computed.
  bool uses_reference() const { return kl_coeff > 0 || measure_kl; }
  // Completions per prompt (num_generations, or the method's default).
  int64_t generations() const;
  // The upper clip epsilon (epsilon_high, or cliprange when 0).
  double clip_high() const { return epsilon_high > 0 ? epsilon_high : cliprange; }
  // The weight of each reward (the reward model's first when given, then each rule): parsed
  // from reward_weights, or all 1. Throws SettingError("reward_weights") on a bad list.
  std::vector<double> weights() const;
  bool has_value_model() const { return method == "ppo"; }
};

// The method's default kl_coeff (ppo 0.1, grpo 0, rloo 0.05) and num_generations.
double method_default_kl_coeff(const std::string& method);
int64_t method_default_generations(const std::string& method);
// Sets kl_coeff to the method's default unless "kl_coeff" is in `given` (the settings given
// explicitly): call it after reading flags or a spec, before check_policy_config.
void apply_method_defaults(PolicyTrainConfig& config, const SettingNames& given);

// One row per setting above (inputs and outputs excluded).
const SettingsTable<PolicyTrainConfig>& policy_settings();

// Every check of the settings; throws SettingError naming the setting at fault (see
// check_reward_config).
void check_policy_config(const PolicyTrainConfig& config, const SettingNames& given = {});

}  // namespace rlhf
