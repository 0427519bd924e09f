// Trained state on disk: named float32 torch tensors to and from one safetensors file
// (written atomically). Adapters, heads and optimizer moments all go through here.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>

namespace rlhf {

void save_tensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                  const std::map<std::string, std::string>& metadata = {});
// Every tensor of the file as float32 on `device`. Throws rlhf::Error naming the file.
std::map<std::string, torch::Tensor> load_tensors(const std::string& path, torch::Device device = torch::kCPU);

// Copies `from` into `to` (no grad), checking that the shapes agree; `what` names the source
// in the error ("adapter_model.safetensors: tensor 'x'").
void copy_checked(torch::Tensor& to, const torch::Tensor& from, const std::string& what);

}  // namespace rlhf
