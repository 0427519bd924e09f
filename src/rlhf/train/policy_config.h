// PolicyTrainConfig: every setting of `rlhf train-policy` and the pipeline's train_policy
// stage. The member initialisers are the only defaults; the settings table in
// policy_config.cpp gives each setting its flag, spec key, allowed range and help, and from
// it come the CLI flags, the spec's keys, the checks, the cache key and the resume
// fingerprint (docs/settings.md lists it). Torch-free.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "rlhf/model/lora_config.h"
#include "rlhf/util/settings.h"

namespace rlhf {

struct PolicyTrainConfig {
  // Inputs and outputs (arguments of the command, not settings).
  std::string prompt_dataset;           // JSONL file, folder or glob (input_text / messages)
  std::string eval_dataset;             // prompts completed greedily before and after training
  std::string reward_model;             // folder written by train-reward
  std::string large_model_reference;    // the policy's base; "" = the reward model's base
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
  double kl_coeff = 0.1;                // 0: the reference is not computed (unless measure_kl)
  bool measure_kl = false;              // with kl_coeff 0: still compute the reference and log objective/kl
  bool adaptive_kl = false;             // adjust kl_coeff towards target_kl
  double target_kl = 6.0;               // summed over the response, per sequence
  double kl_horizon = 10000;
  double gamma = 1.0;
  double lam = 0.95;
  double cliprange = 0.2;
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
};

// One row per setting above (inputs and outputs excluded).
const SettingsTable<PolicyTrainConfig>& policy_settings();

// Every check of the settings; throws SettingError naming the setting at fault (see
// check_reward_config).
void check_policy_config(const PolicyTrainConfig& config, const SettingNames& given = {});

}  // namespace rlhf
