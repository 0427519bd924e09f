// rlhf train-dpo: preference pairs -> a policy adapter by direct preference optimisation
// (DPO, IPO or hinge loss against the base as the reference). The inputs and outputs are
// declared here; every setting comes from dpo_settings().
#include <memory>

#include "commands.h"
#include "rlhf/model/registry.h"
#include "rlhf/train/dpo_trainer.h"
#include "settings_flags.h"

namespace rlhf::cli {

Command add_train_dpo(CLI::App& app) {
  struct Flags {
    DpoTrainConfig config;
    bool no_progress = false;
    std::unique_ptr<SettingFlags> settings;
  };
  auto f = std::make_shared<Flags>();
  DpoTrainConfig& c = f->config;
  c.large_model_reference = kDefaultModel;
  auto* s = app.add_subcommand("train-dpo",
                               "train a policy adapter on preference pairs by direct preference optimisation (DPO, IPO, "
                               "hinge; LoRA, the base as the reference)");
  s->add_option("--preference-dataset", c.preference_dataset, "preference JSONL: file, folder or glob")->required();
  s->add_option("--output,-o", c.output, "folder for the policy, logs and checkpoints")->required();
  s->add_option("--large-model-reference,--model,-m", c.large_model_reference,
                "base model: registered name, GGUF file or Hugging Face folder")->capture_default_str();
  s->add_option("--eval-dataset,--validation-dataset", c.eval_dataset,
                "validation pairs (first rows, up to --max-validation-pairs) when it has preference fields");
  s->add_flag("--resume", c.resume, "continue the run in --output from its latest checkpoint");
  s->add_flag("--no-progress", f->no_progress, "no progress bar");
  f->settings = std::make_unique<SettingFlags>(s, dpo_settings(), c);
  return {s, [f] {
            const SettingNames given = f->settings->apply();
            check_naming_flags(dpo_settings(), f->config, given, check_dpo_config);
            f->config.progress = !f->no_progress;
            use_mapped_allocations();
            train_dpo(f->config);
            return 0;
          }};
}

}  // namespace rlhf::cli
