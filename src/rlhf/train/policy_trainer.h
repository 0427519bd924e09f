// PolicyTrainer: prompts + a reward model -> a tuned policy adapter (`rlhf train-policy`),
// PPO with a KL penalty against the untuned model. Per step it:
//   1. rollouts   samples completions of B prompts with the policy (KV-cache generator,
//                 temperature 0.7, up to target_sequence_length tokens);
//   2. scoring    reward-model score at the completion's EOS (no EOS -> the penalty), the
//                 reference's and the policy's log-probs and the values (no gradients);
//   3. advantage  per-token reward -kl_coeff·(logp - logp_ref) + score at the last token, GAE,
//                 whitened advantages;
//   4. update     ppo_epochs passes over minibatches: clipped policy loss + vf_coef · clipped
//                 value loss, gradient accumulation over micro-batches, clipping, AdamW.
// Metrics go to TensorBoard/CSV/JSONL; checkpoints are atomic and a resumed run repeats an
// uninterrupted one (CPU, same threads). The output folder holds policy.json (written last),
// the policy adapter in peft layout, the value model, summary.json and logs/.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "rlhf/model/model.h"
#include "rlhf/train/policy_model.h"
#include "rlhf/train/reward_artifact.h"

namespace rlhf {

struct PolicyTrainConfig {
  // Data.
  std::string prompt_dataset;           // JSONL file, folder or glob (input_text / messages)
  std::string eval_dataset;             // prompts completed greedily before and after training
  bool skip_invalid = false;
  std::string prompt_format;            // raw, chat, auto; "" = as the reward model was trained
  std::string instruction;              // prepended to every prompt; "" = the reward model's
  bool instruction_set = false;         // instruction given explicitly (may be "")
  int64_t prompt_sequence_length = 512;
  int64_t target_sequence_length = 64;

  // Models.
  std::string reward_model;             // folder written by train-reward
  std::string large_model_reference;    // the policy's base; "" = the reward model's base
  std::string dtype = "fp32";           // fp32, or bf16 base (adapters and heads stay fp32)
  std::string device = "cpu";
  LoraConfig lora{.rank = 1, .alpha = 0.0, .dropout = 0.0, .targets = {"q_proj", "v_proj"}};

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
  double max_grad_norm = 1.0;
  double kl_coeff = 0.1;                // 0: the reference is never computed
  bool adaptive_kl = false;             // adjust kl_coeff towards target_kl
  double target_kl = 6.0;               // summed over the response, per sequence
  double kl_horizon = 10000;
  double gamma = 1.0;
  double lam = 0.95;
  double cliprange = 0.2;
  double cliprange_value = 0.2;
  double vf_coef = 0.1;
  double temperature = 0.7;
  bool eos_penalty = true;
  double missing_eos_penalty = -1.0;    // score of a completion without EOS within the length
  uint64_t seed = 0;

  // Run.
  std::string output;
  bool resume = false;
  int64_t checkpoint_every = 10;        // steps (and at the end)
  int64_t keep_checkpoints = 2;
  int64_t eval_every = 0;               // steps; 0 = before and after training only
  int64_t max_eval_prompts = 500;
  bool progress = true;
};

struct PolicyTrainSummary {
  int64_t steps = 0;
  double step_seconds_median = 0;
  double final_reward = 0, final_kl = 0;
};

// The models of a run: the reward model (with its base) and the policy's roles, on the reward
// model's base when the policy's base is the same model (by content hash), else on a second one.
struct PolicyRoles {
  std::unique_ptr<LoadedRewardModel> rm;
  std::unique_ptr<Model> second;   // the policy's base when it differs from the reward model's
  Model* policy_base = nullptr;    // rm->base or second
  std::string policy_base_sha256;
  std::unique_ptr<PolicyModels> models;
  bool shared_base() const { return second == nullptr; }
};
PolicyRoles load_policy_roles(const PolicyTrainConfig& config);

// Runs the training; throws rlhf::Error on bad input or settings (before any training).
PolicyTrainSummary train_policy(const PolicyTrainConfig& config);

}  // namespace rlhf
