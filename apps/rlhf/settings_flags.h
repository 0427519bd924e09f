// The CLI flags of a settings table: one option per row (its flag, its help with the allowed
// values and the default), read after parsing through the table's own parser and checks, so
// a flag and a spec key given the same text set the same value.
#pragma once
#include <CLI/CLI.hpp>

#include <deque>
#include <string>
#include <vector>

#include "rlhf/util/settings.h"

namespace rlhf::cli {

class SettingFlags {
 public:
  template <class Config>
  SettingFlags(CLI::App* app, const SettingsTable<Config>& table, Config& config)
      : rows_(&table.rows), config_(&config) {
    add(app);
  }

  // Writes the given flags into the config and returns their names; throws rlhf::Error naming
  // the flag when a value is not allowed. The whole config is not checked here: the caller
  // runs check_naming_flags(table, config, names, check_*_config).
  SettingNames apply();

 private:
  void add(CLI::App* app);

  const std::vector<SettingRow>* rows_;
  void* config_;
  std::vector<CLI::Option*> options_, shortcuts_;
  std::deque<std::string> text_;
  std::deque<std::vector<std::string>> lists_;
  std::deque<bool> flags_;
};

}  // namespace rlhf::cli
