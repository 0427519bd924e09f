#include "rlhf/model/peft_config.h"

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"
#include "rlhf/util/json_file.h"

namespace rlhf {

PeftLoraConfig read_peft_lora_config(const std::string& path) {
  const nlohmann::json j = read_json_file(path, size_t(16) << 20);
  if (!j.is_object()) fail("{}: not a JSON object", path);
  auto bad = [&](const char* field, const std::string& what) { fail("{}: field '{}' {}", path, field, what); };
  auto str = [&](const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  if (auto t = str("peft_type"); !t.empty() && t != "LORA") bad("peft_type", fmt::format("is \"{}\"; only LORA adapters are supported", t));
  PeftLoraConfig c;
  auto r = j.find("r");
  if (r == j.end() || !r->is_number_integer() || r->get<int64_t>() <= 0) bad("r", "must be a positive integer");
  c.rank = r->get<int64_t>();
  c.alpha = static_cast<double>(c.rank);
  if (auto a = j.find("lora_alpha"); a != j.end() && !a->is_null()) {
    if (!a->is_number() || !(a->get<double>() > 0)) bad("lora_alpha", "must be a positive number");
    c.alpha = a->get<double>();
  }
  for (const char* flag : {"use_rslora", "use_dora", "fan_in_fan_out"}) {
    auto it = j.find(flag);
    if (it != j.end() && it->is_boolean() && it->get<bool>()) bad(flag, "is true, which is not supported (plain LoRA only)");
  }
  for (const char* pat : {"rank_pattern", "alpha_pattern"}) {
    auto it = j.find(pat);
    if (it != j.end() && !it->is_null() && !it->empty()) bad(pat, "is set, which is not supported (one rank and alpha for all layers)");
  }
  if (auto b = str("bias"); !b.empty() && b != "none") bad("bias", fmt::format("is \"{}\"; only \"none\" is supported", b));
  if (auto d = j.find("lora_dropout"); d != j.end() && !d->is_null()) {
    if (!d->is_number() || d->get<double>() < 0 || d->get<double>() >= 1) bad("lora_dropout", "must be a number in [0, 1)");
    c.dropout = d->get<double>();
  }
  if (auto t = j.find("target_modules"); t != j.end() && !t->is_null()) {
    if (t->is_string()) {
      c.targets.push_back(t->get<std::string>());
    } else if (t->is_array()) {
      for (const auto& x : *t) {
        if (!x.is_string()) bad("target_modules", "must hold strings");
        c.targets.push_back(x.get<std::string>());
      }
    } else {
      bad("target_modules", "must be a string or a list of strings");
    }
  }
  c.base_model = str("base_model_name_or_path");
  c.task_type = str("task_type");
  if (auto m = j.find("modules_to_save"); m != j.end() && m->is_array())
    for (const auto& x : *m)
      if (x.is_string()) c.modules_to_save.push_back(x.get<std::string>());
  return c;
}

void write_peft_lora_config(const std::string& path, const PeftLoraConfig& c) {
  nlohmann::json j = {
      {"peft_type", "LORA"},
      {"task_type", c.task_type},
      {"r", c.rank},
      {"lora_alpha", c.alpha > 0 ? c.alpha : static_cast<double>(c.rank)},
      {"lora_dropout", c.dropout},
      {"target_modules", c.targets},
      {"bias", "none"},
      {"base_model_name_or_path", c.base_model},
  };
  if (!c.modules_to_save.empty()) j["modules_to_save"] = c.modules_to_save;
  write_file_atomic(path, j.dump(2) + "\n");
}

}  // namespace rlhf
