#include "settings_flags.h"

#include "rlhf/util/error.h"

namespace rlhf::cli {

void SettingFlags::add(CLI::App* app) {
  for (const auto& row : *rows_) {
    SettingRef ref = row.ref(config_);
    std::string def = setting_text(ref);
    if (std::holds_alternative<std::optional<std::string>*>(ref) && !std::get<std::optional<std::string>*>(ref)->has_value())
      def = "unset";
    else if (def.empty())
      def = row.repeatable ? "none" : "\"\"";
    const std::string range = setting_range_text(row, ref);
    CLI::Option* o = nullptr;
    if (is_bool(ref)) {
      flags_.push_back(false);
      o = app->add_flag(row.flag, flags_.back(), row.help);
    } else if (is_list(ref)) {
      lists_.emplace_back();
      o = app->add_option(row.flag, lists_.back(), fmt::format("{} ({}; default {})", row.help, range, def));
      // One value per occurrence, kept whole: --reward-rule A --reward-rule B.
      if (row.repeatable) o->allow_extra_args(false);
    } else {
      text_.emplace_back();
      o = app->add_option(row.flag, text_.back(), fmt::format("{} ({}; default {})", row.help, range, def));
    }
    options_.push_back(o);
    shortcuts_.push_back(row.shortcut_flag.empty() ? nullptr : app->add_flag(row.shortcut_flag, row.shortcut_help));
  }
}

SettingNames SettingFlags::apply() {
  SettingNames given;
  size_t t = 0, l = 0;
  for (size_t i = 0; i < rows_->size(); ++i) {
    const SettingRow& row = (*rows_)[i];
    SettingRef ref = row.ref(config_);
    const bool list = is_list(ref), flag = is_bool(ref);
    const std::string* text = (!list && !flag) ? &text_[t++] : nullptr;
    const std::vector<std::string>* items = list ? &lists_[l++] : nullptr;
    try {
      if (shortcuts_[i] && shortcuts_[i]->count()) {
        if (options_[i]->count())
          fail("give {} or {}, not both", row.shortcut_flag, setting_flag(row));
        parse_setting(row, ref, row.shortcut_value);
        given.insert(row.name);
      }
      if (!options_[i]->count()) continue;
      if (flag) {
        parse_setting(row, ref, row.negated_flag ? "false" : "true");
      } else if (list) {
        parse_setting_list(row, ref, *items);
      } else {
        parse_setting(row, ref, *text);
      }
      given.insert(row.name);
    } catch (const SettingError& e) {
      fail_with_flag(setting_flag(row), e.what());
    }
  }
  return given;
}

}  // namespace rlhf::cli
