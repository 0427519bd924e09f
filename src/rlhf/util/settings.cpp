#include "rlhf/util/settings.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>

#include <fmt/format.h>

#include "rlhf/util/error.h"

namespace rlhf {
namespace {

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t\r\n") - a + 1);
}

// A number as people write it: 2, 1e6, 0.25. Never the 300-digit form of a limit.
std::string num(double x) {
  if (x == std::numeric_limits<double>::max() || x >= 9.2e18) return "inf";
  if (x == std::floor(x) && std::fabs(x) < 1e15) return fmt::format("{}", static_cast<int64_t>(x));
  return fmt::format("{}", x);
}

bool unbounded(double max) { return max >= 9.2e18; }

std::string range_words(const SettingRow& r, bool integer) {
  const std::string kind = integer ? "an integer" : "a number";
  if (unbounded(r.max)) return fmt::format("{} {} {}", kind, r.open_min ? "greater than" : "at least", num(r.min));
  return fmt::format("{} in {}{}, {}]", kind, r.open_min ? "(" : "[", num(r.min), num(r.max));
}

void check_number(const SettingRow& r, double x, bool integer) {
  if (!std::isfinite(x)) throw SettingError(r.name, fmt::format("must be {}, not {}", range_words(r, integer), x));
  if (x < r.min || (!unbounded(r.max) && x > r.max) || (r.open_min && x == r.min))
    throw SettingError(r.name, fmt::format("must be {} (it is {})", range_words(r, integer), num(x)));
}

void check_choice(const SettingRow& r, const std::string& v) {
  if (r.choices.empty()) return;
  for (const auto& c : r.choices)
    if (v == c) return;
  std::string list;
  for (const auto& c : r.choices) list += (list.empty() ? "" : ", ") + c;
  throw SettingError(r.name, fmt::format("is \"{}\"; it must be one of {}", v, list));
}

int64_t parse_int(const SettingRow& r, const std::string& text) {
  const std::string t = trim(text);
  if (t.empty()) throw SettingError(r.name, "needs a value: " + range_words(r, true));
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(t.c_str(), &end, 10);
  if (*end != '\0') {
    // 1e3 and 64.0 are whole numbers too.
    char* end2 = nullptr;
    const double d = std::strtod(t.c_str(), &end2);
    if (*end2 == '\0' && std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) return static_cast<int64_t>(d);
    throw SettingError(r.name, fmt::format("must be {}, not \"{}\"", range_words(r, true), t));
  }
  if (errno == ERANGE) throw SettingError(r.name, fmt::format("must be {}, not \"{}\"", range_words(r, true), t));
  return v;
}

// "a, b,c" -> {"a", "b", "c"}.
std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  size_t a = 0;
  while (a <= text.size()) {
    const size_t b = std::min(text.find(',', a), text.size());
    out.push_back(trim(text.substr(a, b - a)));
    a = b + 1;
  }
  return out;
}

}  // namespace

void check_setting(const SettingRow& r, SettingRef ref) {
  std::visit(
      [&](auto* p) {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, int64_t>) check_number(r, static_cast<double>(*p), true);
        else if constexpr (std::is_same_v<T, uint64_t>) (void)p;  // every whole number from 0 (seeds)
        else if constexpr (std::is_same_v<T, double>) check_number(r, *p, false);
        else if constexpr (std::is_same_v<T, std::string>) check_choice(r, *p);
        else if constexpr (std::is_same_v<T, std::optional<std::string>>) {
          if (p->has_value()) check_choice(r, **p);
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          // A pick from a set (lora.targets) needs one; free text (weights, rules) may be none.
          if (p->empty() && !r.choices.empty() && !r.repeatable)
            throw SettingError(r.name, "needs at least one value");
          for (const auto& v : *p) {
            if (v.empty()) throw SettingError(r.name, "holds an empty value");
            check_choice(r, v);
          }
        }
      },
      ref);
}

void parse_setting(const SettingRow& r, SettingRef ref, const std::string& text) {
  std::visit(
      [&](auto* p) {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, int64_t>) {
          *p = parse_int(r, text);
        } else if constexpr (std::is_same_v<T, uint64_t>) {
          const std::string t = trim(text);
          if (t.empty() || t[0] == '-' || t[0] == '+' || t.find_first_not_of("0123456789") != std::string::npos)
            throw SettingError(r.name, fmt::format("must be a whole number from 0 to 18446744073709551615, not \"{}\"", t));
          errno = 0;
          const unsigned long long v = std::strtoull(t.c_str(), nullptr, 10);
          if (errno == ERANGE)
            throw SettingError(r.name, fmt::format("must be a whole number from 0 to 18446744073709551615, not \"{}\"", t));
          *p = v;
        } else if constexpr (std::is_same_v<T, double>) {
          const std::string t = trim(text);
          char* end = nullptr;
          const double v = t.empty() ? NAN : std::strtod(t.c_str(), &end);
          if (t.empty() || *end != '\0' || !std::isfinite(v))
            throw SettingError(r.name, fmt::format("must be {}, not \"{}\"", range_words(r, false), t));
          *p = v;
        } else if constexpr (std::is_same_v<T, bool>) {
          const std::string t = trim(text);
          if (t == "true" || t == "True" || t == "TRUE" || t == "1" || t == "yes" || t == "on") *p = true;
          else if (t == "false" || t == "False" || t == "FALSE" || t == "0" || t == "no" || t == "off") *p = false;
          else throw SettingError(r.name, fmt::format("must be true or false, not \"{}\"", t));
        } else if constexpr (std::is_same_v<T, std::string>) {
          *p = text;
        } else if constexpr (std::is_same_v<T, std::optional<std::string>>) {
          *p = text;
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          *p = r.repeatable ? std::vector<std::string>{text} : split_list(text);
        }
      },
      ref);
  check_setting(r, ref);
}

void parse_setting_list(const SettingRow& r, SettingRef ref, const std::vector<std::string>& values) {
  auto* p = std::get_if<std::vector<std::string>*>(&ref);
  if (!p) throw SettingError(r.name, "must be one value, not a list");
  std::vector<std::string> out;
  for (const auto& v : values) {
    if (r.repeatable) {
      out.push_back(v);
    } else {
      for (auto& item : split_list(v)) out.push_back(std::move(item));
    }
  }
  **p = std::move(out);
  check_setting(r, ref);
}

nlohmann::json setting_json(SettingRef ref) {
  return std::visit(
      [](auto* p) -> nlohmann::json {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, std::optional<std::string>>) return p->has_value() ? nlohmann::json(**p) : nlohmann::json();
        else return nlohmann::json(*p);
      },
      ref);
}

std::string setting_text(SettingRef ref) {
  return std::visit(
      [](auto* p) -> std::string {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, double>) return fmt::format("{}", *p);
        else if constexpr (std::is_same_v<T, bool>) return *p ? "true" : "false";
        else if constexpr (std::is_same_v<T, std::string>) return *p;
        else if constexpr (std::is_same_v<T, std::optional<std::string>>) return p->value_or("");
        else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          std::string s;
          for (const auto& v : *p) s += (s.empty() ? "" : ",") + v;
          return s;
        } else return std::to_string(*p);
      },
      ref);
}

std::string setting_range_text(const SettingRow& r, SettingRef ref) {
  return std::visit(
      [&](auto* p) -> std::string {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, int64_t>) return range_words(r, true);
        else if constexpr (std::is_same_v<T, uint64_t>) return "a whole number from 0";
        else if constexpr (std::is_same_v<T, double>) return range_words(r, false);
        else if constexpr (std::is_same_v<T, bool>) return "true or false";
        else {
          constexpr bool is_vec = std::is_same_v<T, std::vector<std::string>>;
          const std::string list_kind =
              r.repeatable ? "text, repeatable: one value per flag, a YAML list in the spec" : "comma-separated text";
          if (r.choices.empty()) return is_vec ? list_kind : "text";
          std::string list;
          for (const auto& c : r.choices) list += (list.empty() ? "" : ", ") + c;
          return (is_vec ? (r.repeatable ? "repeatable (one value per flag, a YAML list in the spec), each one of "
                                         : "comma-separated, each one of ")
                         : "one of ") +
                 list;
        }
      },
      ref);
}

std::string setting_flag(const SettingRow& row) { return row.flag.substr(0, row.flag.find(',')); }

void fail_with_flag(const std::string& flag, const std::string& problem) { fail("{}: {}", flag, problem); }

bool is_bool(SettingRef ref) { return std::holds_alternative<bool*>(ref); }
bool is_list(SettingRef ref) { return std::holds_alternative<std::vector<std::string>*>(ref); }

}  // namespace rlhf
