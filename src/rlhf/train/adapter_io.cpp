#include "rlhf/train/adapter_io.h"

#include <nlohmann/json.hpp>

#include "rlhf/train/tensor_file.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"

namespace rlhf {

void save_adapter(const std::string& dir, const LoraAdapter& adapter, const AdapterFileOptions& options) {
  std::map<std::string, torch::Tensor> lora;
  for (const auto& [name, t] : adapter.named_parameters()) lora["base_model.model." + name] = t;
  save_tensors(dir + "/adapter_model.safetensors", lora, {{"format", "pt"}});
  const LoraConfig& c = adapter.config;
  nlohmann::json peft = {
      {"peft_type", "LORA"},
      {"task_type", options.task_type},
      {"r", c.rank},
      {"lora_alpha", c.alpha > 0 ? c.alpha : static_cast<double>(c.rank)},
      {"lora_dropout", c.dropout},
      {"target_modules", c.targets},
      {"bias", "none"},
      {"base_model_name_or_path", options.base_reference},
  };
  if (!options.modules_to_save.empty()) peft["modules_to_save"] = options.modules_to_save;
  write_file_atomic(dir + "/adapter_config.json", peft.dump(2) + "\n");
}

void load_adapter(const std::string& dir, LoraAdapter& adapter) {
  const std::string path = dir + "/adapter_model.safetensors";
  auto mine = adapter.named_parameters();
  auto device = mine.empty() ? torch::Device(torch::kCPU) : mine.begin()->second.device();
  auto lora = load_tensors(path, device);
  if (lora.size() != mine.size())
    fail("{}: holds {} tensors, the adapter has {} (different LoRA settings?)", path, lora.size(), mine.size());
  for (auto& [name, t] : mine) {
    auto it = lora.find("base_model.model." + name);
    if (it == lora.end()) fail("{}: tensor 'base_model.model.{}' is missing", path, name);
    copy_checked(t, it->second, path + ": tensor '" + it->first + "'");
  }
}

void copy_adapter(const LoraAdapter& from, LoraAdapter& to) {
  auto src = from.named_parameters();
  auto dst = to.named_parameters();
  if (src.size() != dst.size()) fail("adapter '{}' and '{}' differ in their LoRA settings", from.name, to.name);
  for (auto& [name, t] : dst) {
    auto it = src.find(name);
    if (it == src.end()) fail("adapter '{}' has no tensor '{}'", from.name, name);
    copy_checked(t, it->second, "adapter '" + from.name + "': tensor '" + name + "'");
  }
}

}  // namespace rlhf
