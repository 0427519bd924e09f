// rlhf train-policy: prompts + a reward model -> a tuned policy (PPO with a KL penalty, LoRA).
#include <cstdlib>
#include <memory>

#include "commands.h"
#include "rlhf/train/policy_trainer.h"
#include "rlhf/util/error.h"

namespace rlhf::cli {
namespace {

struct TrainPolicyFlags {
  PolicyTrainConfig config;
  int threads = 0;
  bool no_progress = false;
  bool no_eos_penalty = false;
  CLI::Option* steps = nullptr;
  CLI::Option* epochs = nullptr;
  CLI::Option* instruction = nullptr;
};

int run_train_policy(TrainPolicyFlags& f) {
  if (f.steps->count() && f.epochs->count())
    fail("give --reinforcement-learning-train-steps or --reinforcement-learning-epochs, not both");
  f.config.instruction_set = f.instruction->count() > 0;
  f.config.eos_penalty = !f.no_eos_penalty;
  f.config.progress = !f.no_progress;
  apply_threads(f.threads);
  // Blocks of 1 MiB and up are mapped (returned to the system when freed); smaller ones are
  // reused from the heap. Mapping from 128 KiB as train-reward does costs a PPO step about a
  // third of its time in page faults, the step's many mid-sized tensors being fresh each time.
  use_mapped_allocations(1 << 20);
  train_policy(f.config);
  return 0;
}

}  // namespace

Command add_train_policy(CLI::App& app) {
  auto f = std::make_shared<TrainPolicyFlags>();
  PolicyTrainConfig& c = f->config;
  auto* s = app.add_subcommand("train-policy", "tune a policy with PPO against a reward model (KL penalty, LoRA)");
  s->add_option("--prompt-dataset", c.prompt_dataset, "prompt JSONL: file, folder or glob")->required();
  s->add_option("--reward-model", c.reward_model, "folder written by train-reward")->required();
  s->add_option("--output,-o", c.output, "folder for the policy, logs and checkpoints")->required();
  s->add_option("--large-model-reference,--model,-m", c.large_model_reference,
                "the policy's base model (default: the reward model's base)");
  s->add_option("--eval-dataset", c.eval_dataset, "prompts completed greedily and scored before and after training");
  f->steps = s->add_option("--reinforcement-learning-train-steps", c.train_steps, "PPO steps (one batch of rollouts each)")
                 ->capture_default_str()
                 ->check(CLI::PositiveNumber);
  f->epochs = s->add_option("--reinforcement-learning-epochs", c.epochs,
                            "epochs instead of steps: steps = ceil(prompts / batch) x epochs");
  s->add_option("--reinforcement-learning-rate-multiplier", c.learning_rate_multiplier,
                "multiplies the base learning rate 1e-4")
      ->capture_default_str();
  s->add_option("--kl-coeff", c.kl_coeff, "weight of the KL penalty against the untuned model (0 = no reference)")
      ->capture_default_str();
  f->instruction = s->add_option("--instruction", c.instruction, "text prepended to every prompt (default: the reward model's)");
  s->add_option("--prompt-format", c.prompt_format, "raw, chat or auto (default: as the reward model was trained)");
  s->add_option("--prompt-sequence-length", c.prompt_sequence_length, "prompt tokens kept (the last ones)")
      ->capture_default_str();
  s->add_option("--target-sequence-length", c.target_sequence_length, "completion tokens at most, EOS included")
      ->capture_default_str();
  s->add_option("--batch-size", c.batch_size, "prompts per PPO step")->capture_default_str()->check(CLI::PositiveNumber);
  s->add_option("--micro-batch-size", c.micro_batch_size, "sequences per forward/backward (gradient accumulation)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  s->add_option("--generation-batch-size", c.generation_batch_size, "sequences generated together (0 = the batch)")
      ->capture_default_str();
  s->add_option("--lora-rank", c.lora.rank, "LoRA rank of the policy adapter")->capture_default_str()->check(CLI::PositiveNumber);
  s->add_option("--lora-alpha", c.lora.alpha, "LoRA alpha (0 = the rank: scale 1)")->capture_default_str();
  s->add_option("--lora-targets", c.lora.targets, "LoRA target modules (q_proj ... down_proj, all-linear)")
      ->capture_default_str();
  s->add_option("--seed", c.seed, "seed of the prompt order, sampling and initialisation")->capture_default_str();
  s->add_option("--dtype", c.dtype, "base weights and activations: fp32 or bf16")->capture_default_str();
  s->add_option("--device", c.device, "cpu, cuda, cuda:N")->capture_default_str();
  s->add_option("--threads", f->threads, "CPU threads (0 = all cores)");
  s->add_flag("--resume", c.resume, "continue the run in --output from its latest checkpoint");
  s->add_flag("--skip-invalid", c.skip_invalid, "leave out invalid lines (counted) instead of stopping");
  // Advanced PPO knobs.
  s->add_option("--ppo-epochs", c.ppo_epochs, "passes over each batch of rollouts")->capture_default_str();
  s->add_option("--num-mini-batches", c.num_mini_batches, "optimizer updates per PPO epoch")->capture_default_str();
  s->add_option("--cliprange", c.cliprange, "policy ratio clip")->capture_default_str();
  s->add_option("--cliprange-value", c.cliprange_value, "value clip")->capture_default_str();
  s->add_option("--vf-coef", c.vf_coef, "weight of the value loss")->capture_default_str();
  s->add_option("--gamma", c.gamma, "discount")->capture_default_str();
  s->add_option("--lam", c.lam, "GAE lambda")->capture_default_str();
  s->add_option("--temperature", c.temperature, "rollout sampling temperature")->capture_default_str();
  s->add_option("--missing-eos-penalty", c.missing_eos_penalty, "score of a completion with no EOS within the length")
      ->capture_default_str();
  s->add_flag("--no-eos-penalty", f->no_eos_penalty, "score completions without EOS as they are");
  s->add_flag("--adaptive-kl", c.adaptive_kl, "adapt kl_coeff towards --target-kl");
  s->add_option("--target-kl", c.target_kl, "target KL per sequence (adaptive KL)")->capture_default_str();
  s->add_option("--kl-horizon", c.kl_horizon, "horizon of the adaptive KL controller")->capture_default_str();
  s->add_option("--max-grad-norm", c.max_grad_norm, "gradient clipping norm (0 = off)")->capture_default_str();
  s->add_option("--weight-decay", c.weight_decay, "AdamW decoupled weight decay")->capture_default_str();
  s->add_option("--checkpoint-every", c.checkpoint_every, "checkpoint every N steps (and at the end)")->capture_default_str();
  s->add_option("--keep-checkpoints", c.keep_checkpoints, "checkpoints kept")->capture_default_str()->check(CLI::PositiveNumber);
  s->add_option("--eval-every", c.eval_every, "evaluate every N steps (0 = before and after only)")->capture_default_str();
  s->add_option("--max-eval-prompts", c.max_eval_prompts, "evaluation prompts used at most")->capture_default_str();
  s->add_flag("--no-progress", f->no_progress, "no progress bar");
  return {s, [f] { return run_train_policy(*f); }};
}

}  // namespace rlhf::cli
