// rlhf train-reward: preference pairs -> a reward model (LoRA adapter + scalar head).
#include <memory>

#include "commands.h"
#include "rlhf/model/registry.h"
#include "rlhf/train/reward_trainer.h"
#include "rlhf/util/error.h"

namespace rlhf::cli {
namespace {

struct TrainRewardFlags {
  RewardTrainConfig config;
  int threads = 0;
  bool center_rewards = false;
  bool no_progress = false;
  CLI::Option* steps = nullptr;
  CLI::Option* epochs = nullptr;
};

int run_train_reward(TrainRewardFlags& f) {
  if (f.steps->count() && f.epochs->count())
    fail("give --reward-model-train-steps or --reward-model-epochs, not both");
  if (f.center_rewards && f.config.center_rewards_coefficient == 0) f.config.center_rewards_coefficient = 0.01;
  f.config.progress = !f.no_progress;
  apply_threads(f.threads);
  use_mapped_allocations();
  train_reward_model(f.config);
  return 0;
}

}  // namespace

Command add_train_reward(CLI::App& app) {
  auto f = std::make_shared<TrainRewardFlags>();
  RewardTrainConfig& c = f->config;
  c.large_model_reference = kDefaultModel;
  auto* s = app.add_subcommand("train-reward", "train a reward model on preference pairs (Bradley-Terry loss, LoRA)");
  s->add_option("--preference-dataset", c.preference_dataset, "preference JSONL: file, folder or glob")->required();
  s->add_option("--output,-o", c.output, "folder for the model, logs and checkpoints")->required();
  s->add_option("--large-model-reference,--model,-m", c.large_model_reference,
                "base model: registered name, GGUF file or Hugging Face folder")->capture_default_str();
  s->add_option("--eval-dataset", c.eval_dataset, "validation pairs (first 5000 rows) when it has preference fields");
  f->steps = s->add_option("--reward-model-train-steps", c.train_steps, "optimizer steps")->capture_default_str()
                 ->check(CLI::PositiveNumber);
  f->epochs = s->add_option("--reward-model-epochs", c.epochs, "epochs instead of steps: steps = ceil(pairs / batch) x epochs")
                  ->check(CLI::PositiveNumber);
  s->add_option("--reward-model-learning-rate-multiplier", c.learning_rate_multiplier,
                "scales the base learning rate 1e-4")->capture_default_str()->check(CLI::PositiveNumber);
  s->add_option("--instruction", c.instruction, "text prepended to every prompt");
  s->add_option("--prompt-format", c.prompt_format, "raw (the seed's text prompts), chat (the model's template), auto")
      ->capture_default_str()->check(CLI::IsMember({"raw", "chat", "auto"}));
  s->add_option("--prompt-sequence-length", c.prompt_sequence_length, "prompt tokens kept (the last ones)")
      ->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  s->add_option("--target-sequence-length", c.target_sequence_length, "completion tokens kept, EOS included")
      ->capture_default_str()->check(CLI::Range(int64_t(2), int64_t(1) << 20));
  s->add_option("--batch-size", c.batch_size, "pairs per optimizer step")->capture_default_str()->check(CLI::PositiveNumber);
  s->add_option("--micro-batch-size", c.micro_batch_size, "pairs per forward/backward (gradient accumulation)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  s->add_option("--lora-rank", c.lora.rank, "LoRA rank of the reward adapter")->capture_default_str()->check(CLI::PositiveNumber);
  s->add_option("--lora-alpha", c.lora.alpha, "LoRA alpha (0 = the rank: scale 1)")->capture_default_str();
  s->add_option("--lora-targets", c.lora.targets, "LoRA target modules (q_proj ... down_proj, all-linear)")
      ->capture_default_str();
  s->add_option("--seed", c.seed, "seed of the data order, split and initialisation")->capture_default_str();
  s->add_option("--dtype", c.dtype, "base weights and activations: fp32 or bf16")->capture_default_str()
      ->check(CLI::IsMember({"fp32", "float32", "bf16", "bfloat16"}));
  s->add_option("--device", c.device, "cpu, cuda, cuda:N")->capture_default_str();
  s->add_option("--threads", f->threads, "CPU threads (0 = all cores)");
  s->add_flag("--resume", c.resume, "continue the run in --output from its latest checkpoint");
  s->add_flag("--skip-invalid", c.skip_invalid, "leave out invalid lines (counted) instead of stopping");
  s->add_option("--validation-fraction", c.validation_fraction, "pairs held out for validation when no --eval-dataset")
      ->capture_default_str();
  s->add_option("--validation-every", c.validation_every, "validate every N steps (and at the end; 0 = only at the end)")
      ->capture_default_str();
  s->add_option("--checkpoint-every", c.checkpoint_every, "checkpoint every N steps (and at the end)")->capture_default_str()
      ->check(CLI::PositiveNumber);
  s->add_option("--keep-checkpoints", c.keep_checkpoints, "checkpoints kept")->capture_default_str()->check(CLI::PositiveNumber);
  s->add_option("--warmup-ratio", c.warmup_ratio, "fraction of steps of linear warmup")->capture_default_str();
  s->add_option("--weight-decay", c.weight_decay, "AdamW decoupled weight decay")->capture_default_str();
  s->add_option("--max-grad-norm", c.max_grad_norm, "gradient clipping norm (0 = off)")->capture_default_str();
  s->add_option("--margin", c.margin, "margin subtracted from r_chosen - r_rejected in the loss")->capture_default_str();
  s->add_flag("--center-rewards", f->center_rewards, "add the reward-centering term (coefficient 0.01)");
  s->add_option("--center-rewards-coefficient", c.center_rewards_coefficient, "coefficient of the centering term");
  s->add_flag("--no-progress", f->no_progress, "no progress bar");
  return {s, [f] { return run_train_reward(*f); }};
}

}  // namespace rlhf::cli
