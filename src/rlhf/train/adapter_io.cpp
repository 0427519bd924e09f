#include "rlhf/train/adapter_io.h"

#include "rlhf/model/peft_config.h"
#include "rlhf/train/tensor_file.h"
#include "rlhf/train/trained_folder.h"
#include "rlhf/util/error.h"

namespace rlhf {

void save_adapter(const std::string& dir, const LoraAdapter& adapter, const AdapterFileOptions& options) {
  std::map<std::string, torch::Tensor> lora;
  for (const auto& [name, t] : adapter.named_parameters()) lora["base_model.model." + name] = t;
  save_tensors(dir + "/" + kAdapterWeightsFile, lora, {{"format", "pt"}});
  const LoraConfig& c = adapter.config;
  PeftLoraConfig peft;
  peft.rank = c.rank;
  peft.alpha = c.alpha > 0 ? c.alpha : static_cast<double>(c.rank);
  peft.dropout = c.dropout;
  peft.targets = c.targets;
  peft.base_model = options.base_reference;
  peft.task_type = options.task_type;
  peft.modules_to_save = options.modules_to_save;
  write_peft_lora_config(dir + "/" + kAdapterConfigFile, peft);
}

void load_adapter(const std::string& dir, LoraAdapter& adapter) {
  const std::string path = dir + "/" + kAdapterWeightsFile;
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
