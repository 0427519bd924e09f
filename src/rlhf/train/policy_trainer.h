// PolicyTrainer: prompts + rewards -> a tuned policy adapter (`rlhf train-policy`). One online
// loop for three methods (--method; docs/online-methods.md): PPO with a value model and GAE,
// GRPO (group-relative advantages, no value model) and RLOO (leave-one-out baseline, no value
// model). The rewards are a reward model's score and/or rule rewards (data/reward_rules.h),
// summed with --reward-weights. Before the first step, the reward model (when there is one)
// scores reward_normalization_samples completions of the untuned policy; their mean and std
// standardise every score after (so kl_coeff, the EOS penalty and the rule weights are in
// units of the reference's spread, as in the N+ implementation details). Per step it:
//   1. rollouts   samples N completions of each of P prompts with the policy (KV-cache
//                 generator, temperature 0.7, up to target_sequence_length tokens): B = P·N
//                 rollouts, a prompt's N consecutive;
//   2. scoring    Σ w_i r_i over the reward model's standardised score at the completion's
//                 EOS and each rule, then the missing-EOS penalty (ppo::apply_eos_penalty);
//   3. log-probs  the reference's (when the KL is used or measured), and the policy's log-probs
//                 and values, no gradients — except where the first update's own forward can
//                 give them exactly (one minibatch of one micro-batch per rank, no dropout):
//                 then that forward, kept with its graph, gives them (ratio exactly 1); and
//                 GRPO with one pass over one minibatch, whose advantages need no log-probs:
//                 each micro-batch's update forward gives its own (logp.detach(), as TRL);
//   4. advantage  ppo: per-token reward -kl_coeff·(logp - logp_ref) + score at the last token,
//                 GAE, whitened; grpo: (r - group mean) / (group or batch std + 1e-4); rloo:
//                 r - kl_coeff·Σ KL against the mean of the group's others (grpo.h);
//   5. update     passes over minibatches (ppo_epochs, or num_iterations for grpo/rloo): ppo's
//                 clipped policy loss + vf_coef · clipped value loss, grpo's clipped token loss
//                 + beta·k3 averaged per --loss-type, or rloo's clipped sequence loss; gradient
//                 accumulation over micro-batches, clipping, AdamW (a non-finite gradient norm
//                 skips the update). With value_model shared, one forward/backward of the policy
//                 serves the value too.
// Data-parallel under a distributed launcher (dist/group.h): each rank completes a contiguous
// share of the rollouts (sample i samples with the seed (seed, step, i), so its completion does
// not depend on the rank); scoring, log-prob and update micro-batches are shared out by size (balance_ranks)
// and the batch's tensors and gradients are summed, so every rank holds the whole batch and
// whitening, the KL and the metrics are the global batch's, as in one process.
// The loop is PolicyTrainer::train() in policy_trainer.cpp, one named call per part; the run
// around it (output folder, resume, metrics, checkpoints) is trainer_run.h. Checkpoints are
// atomic and a resumed run repeats an uninterrupted one (CPU, same threads). The output
// folder holds policy.json (written last), the policy adapter in peft layout, the value model
// (ppo), summary.json, logs/ and eval/.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "rlhf/model/model.h"
#include "rlhf/train/policy_config.h"
#include "rlhf/train/policy_model.h"
#include "rlhf/train/reward_artifact.h"

namespace rlhf {

struct PolicyTrainSummary {
  int64_t steps = 0;
  double step_seconds_median = 0;
  double final_reward = 0;
  // The last step's KL to the reference, summed over a completion, mean over the batch: k3
  // (never negative) and k1 (can be). NaN when not measured (kl_coeff 0 without measure_kl).
  double final_kl_k3 = 0, final_kl_k1 = 0;
};

// The models of a run: the reward model (with its base) and the policy's roles, on the reward
// model's base when the policy's base is the same model (by content hash), else on a second one.
// With rule rewards only, no reward model: the policy's base (--model, else the default model)
// is `second`. grpo and rloo have no value model (ValueModel::kNone).
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
