#include "rlhf/train/tensor_file.h"

#include "rlhf/model/safetensors.h"
#include "rlhf/util/error.h"

namespace rlhf {

void save_tensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                  const std::map<std::string, std::string>& metadata) {
  std::map<std::string, HostTensor> host;
  for (const auto& [name, t] : tensors) {
    auto cpu = std::make_shared<torch::Tensor>(t.detach().to(torch::kCPU, torch::kFloat32).contiguous());
    HostTensor h;
    h.shape = cpu->sizes().vec();
    h.dtype = DType::F32;
    h.data = static_cast<const uint8_t*>(cpu->data_ptr());
    h.nbytes = cpu->numel() * sizeof(float);
    h.owner = cpu;
    host[name] = std::move(h);
  }
  safetensors::write(path, host, metadata);
}

std::map<std::string, torch::Tensor> load_tensors(const std::string& path, torch::Device device) {
  auto archive = safetensors::Archive::open(path);
  std::map<std::string, torch::Tensor> out;
  for (const auto& name : archive.names()) {
    const HostTensor& h = archive.get(name);
    torch::Dtype dt = h.dtype == DType::F32 ? torch::kFloat32 : h.dtype == DType::F16 ? torch::kFloat16 : torch::kBFloat16;
    auto t = torch::from_blob(const_cast<uint8_t*>(h.data), h.shape, torch::TensorOptions().dtype(dt));
    out[name] = t.to(device, torch::kFloat32, /*non_blocking=*/false, /*copy=*/true);
  }
  return out;
}

void copy_checked(torch::Tensor& to, const torch::Tensor& from, const std::string& what) {
  if (to.sizes() != from.sizes())
    fail("{}: shape [{}] does not match the model's [{}]", what, fmt::join(from.sizes().vec(), ", "),
         fmt::join(to.sizes().vec(), ", "));
  torch::NoGradGuard no_grad;
  to.copy_(from);
}

}  // namespace rlhf
