// rlhf train-reward: preference pairs -> a reward model (LoRA adapter + scalar head).
// The inputs and outputs are declared here; every setting comes from reward_settings().
#include <memory>

#include "commands.h"
#include "rlhf/model/registry.h"
#include "rlhf/train/reward_trainer.h"
#include "settings_flags.h"

namespace rlhf::cli {

Command add_train_reward(CLI::App& app) {
  struct Flags {
    RewardTrainConfig config;
    bool no_progress = false;
    std::unique_ptr<SettingFlags> settings;
  };
  auto f = std::make_shared<Flags>();
  RewardTrainConfig& c = f->config;
  c.large_model_reference = kDefaultModel;
  auto* s = app.add_subcommand("train-reward", "train a reward model on preference pairs (Bradley-Terry loss, LoRA)");
  s->add_option("--preference-dataset", c.preference_dataset, "preference JSONL: file, folder or glob")->required();
  s->add_option("--output,-o", c.output, "folder for the model, logs and checkpoints")->required();
  s->add_option("--large-model-reference,--model,-m", c.large_model_reference,
                "base model: registered name, GGUF file or Hugging Face folder")->capture_default_str();
  s->add_option("--eval-dataset", c.eval_dataset, "validation pairs (first 5000 rows) when it has preference fields");
  s->add_flag("--resume", c.resume, "continue the run in --output from its latest checkpoint");
  s->add_flag("--no-progress", f->no_progress, "no progress bar");
  f->settings = std::make_unique<SettingFlags>(s, reward_settings(), c);
  return {s, [f] {
            const SettingNames given = f->settings->apply();
            check_naming_flags(reward_settings(), f->config, given, check_reward_config);
            f->config.progress = !f->no_progress;
            use_mapped_allocations();
            train_reward_model(f->config);
            return 0;
          }};
}

}  // namespace rlhf::cli
