// rlhf train-policy: prompts + a reward model and/or rule rewards -> a tuned policy (PPO, GRPO
// or RLOO with a KL penalty, LoRA; docs/online-methods.md).
// The inputs and outputs are declared here; every setting comes from policy_settings().
#include <memory>

#include "commands.h"
#include "rlhf/train/policy_trainer.h"
#include "settings_flags.h"

namespace rlhf::cli {

Command add_train_policy(CLI::App& app) {
  struct Flags {
    PolicyTrainConfig config;
    bool no_progress = false;
    std::unique_ptr<SettingFlags> settings;
  };
  auto f = std::make_shared<Flags>();
  PolicyTrainConfig& c = f->config;
  auto* s = app.add_subcommand("train-policy", "tune a policy with PPO, GRPO or RLOO against a reward model and/or rule rewards (KL penalty, LoRA)");
  s->add_option("--prompt-dataset", c.prompt_dataset, "prompt JSONL: file, folder or glob")->required();
  s->add_option("--reward-model", c.reward_model,
                "folder written by train-reward (optional when --reward-rule is given)");
  s->add_option("--output,-o", c.output, "folder for the policy, logs and checkpoints")->required();
  s->add_option("--large-model-reference,--model,-m", c.large_model_reference,
                "the policy's base model (default: the reward model's base; with rule rewards only, the default model)");
  s->add_option("--eval-dataset", c.eval_dataset, "prompts completed greedily and scored before and after training");
  s->add_flag("--resume", c.resume, "continue the run in --output from its latest checkpoint");
  s->add_flag("--no-progress", f->no_progress, "no progress bar");
  f->settings = std::make_unique<SettingFlags>(s, policy_settings(), c);
  return {s, [f] {
            const SettingNames given = f->settings->apply();
            apply_method_defaults(f->config, given);
            check_naming_flags(policy_settings(), f->config, given, check_policy_config);
            f->config.progress = !f->no_progress;
            // Blocks of 16 MiB and up (the logits, the KV cache) are mapped, returned to the system
            // when freed; smaller ones (a layer's activations) are reused from the heap. Mapped from
            // 1 MiB, every activation of the default model was a fresh mapping: B 8, P 64, T 32 on 2
            // threads, a step took 29.8 s (separate value model, peak RSS 2.35 GB) against 23.0 s
            // (3.68 GB) from 16 MiB; shared 14.2 s (2.40 GB). bench/README.md, "PPO step".
            use_mapped_allocations(16 << 20);
            train_policy(f->config);
            return 0;
          }};
}

}  // namespace rlhf::cli
