#include "rlhf/train/dpo_config.h"

// Rows name only the fields they use; the others keep their defaults.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include "rlhf/train/config_rows.h"

namespace rlhf {
namespace {

using namespace config_rows;
#define REF(member) RLHF_SETTING_REF(DpoTrainConfig, member)

SettingsTable<DpoTrainConfig> make_table() {
  SettingsTable<DpoTrainConfig> t;
  t.command = "train-dpo";
  auto& r = t.rows;
  add_preference_data_rows<DpoTrainConfig>(r, "dpo_");
  add_lora_rows<DpoTrainConfig>(r, "dpo_", "policy");
  // Loss.
  r.push_back({.name = "beta", .flag = "--beta", .spec_key = "advanced.dpo_beta",
               .help = "strength of the tie to the reference (the implicit reward is beta x the log-ratio)", .min = 0,
               .max = 1e6, .open_min = true, .ref = REF(beta)});
  r.push_back({.name = "loss_type", .flag = "--loss-type", .spec_key = "advanced.dpo_loss_type",
               .help = "sigmoid (DPO), ipo (squared distance of the log-ratio margin from 1/(2 beta)), hinge (SLiC)",
               .choices = {"sigmoid", "ipo", "hinge"}, .ref = REF(loss_type)});
  r.push_back({.name = "label_smoothing", .flag = "--label-smoothing", .spec_key = "advanced.dpo_label_smoothing",
               .help = "conservative DPO: the assumed share of flipped preferences, in [0, 0.5) (sigmoid loss only)",
               .min = 0, .max = 0.5, .ref = REF(label_smoothing)});
  add_pair_optimizer_rows<DpoTrainConfig>(r, "dpo_", "--");
  add_validation_every_row<DpoTrainConfig>(r, "dpo_");
  return t;
}

}  // namespace

int64_t DpoTrainConfig::steps_for(int64_t pairs) const { return config_rows::pair_steps(*this, pairs); }

const SettingsTable<DpoTrainConfig>& dpo_settings() {
  static const SettingsTable<DpoTrainConfig> t = make_table();
  return t;
}

void check_dpo_config(const DpoTrainConfig& c, const SettingNames& given) {
  check_settings(dpo_settings(), c);
  check_shared(c, given);
  if (c.label_smoothing >= 0.5)
    throw SettingError("label_smoothing", fmt::format("is {}; it must be below 0.5", c.label_smoothing));
  if (c.label_smoothing > 0 && c.loss_type != "sigmoid")
    throw SettingError("label_smoothing", fmt::format("applies to the sigmoid loss only, not {}", c.loss_type));
}

}  // namespace rlhf
