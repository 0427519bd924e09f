#include "rlhf/train/reward_config.h"

// Rows name only the fields they use; the others keep their defaults.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include "rlhf/train/config_rows.h"

namespace rlhf {
namespace {

using namespace config_rows;
#define REF(member) RLHF_SETTING_REF(RewardTrainConfig, member)

SettingsTable<RewardTrainConfig> make_table() {
  SettingsTable<RewardTrainConfig> t;
  t.command = "train-reward";
  auto& r = t.rows;
  add_preference_data_rows<RewardTrainConfig>(r, "reward_model_");
  add_lora_rows<RewardTrainConfig>(r, "reward_model_", "reward");
  add_pair_optimizer_rows<RewardTrainConfig>(r, "reward_model_", "--reward-model-");
  r.push_back({.name = "margin", .flag = "--margin", .spec_key = "advanced.reward_model_margin",
               .help = "margin subtracted from r_chosen - r_rejected in the loss", .min = -1e6, .max = 1e6,
               .ref = REF(margin)});
  r.push_back({.name = "center_rewards_coefficient", .flag = "--center-rewards-coefficient",
               .spec_key = "advanced.reward_model_center_rewards_coefficient",
               .help = "coefficient of the reward-centering term (0 = off)", .min = 0, .max = 1e6,
               .shortcut_flag = "--center-rewards", .shortcut_value = "0.01",
               .shortcut_help = "add the reward-centering term with coefficient 0.01",
               .ref = REF(center_rewards_coefficient)});
  add_validation_every_row<RewardTrainConfig>(r, "reward_model_");
  r.push_back({.name = "centering_pairs", .flag = "--centering-pairs", .spec_key = "advanced.reward_model_centering_pairs",
               .help = "training pairs the final mean reward is measured on, to centre the head's bias", .min = 1,
               .max = 1 << 30, .ref = REF(centering_pairs)});
  return t;
}

}  // namespace

int64_t RewardTrainConfig::steps_for(int64_t pairs) const { return config_rows::pair_steps(*this, pairs); }

const SettingsTable<RewardTrainConfig>& reward_settings() {
  static const SettingsTable<RewardTrainConfig> t = make_table();
  return t;
}

void check_reward_config(const RewardTrainConfig& c, const SettingNames& given) {
  check_settings(reward_settings(), c);
  check_shared(c, given);
}

}  // namespace rlhf
