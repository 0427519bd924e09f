// safetensors reader: one file (u64 header length, JSON header, data) or a sharded model
// (model.safetensors.index.json). Tensors are zero-copy views into the mapped files (copied
// only when not element-aligned). The header length, every dtype/shape/offset are checked
// against the file before use. Only F32, F16 and BF16 are read.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "rlhf/model/host_tensor.h"
#include "rlhf/util/mapped_file.h"

namespace rlhf::safetensors {

class Archive {
 public:
  // path: a .safetensors file, a model.safetensors.index.json, or a folder holding either
  // (index preferred, else every *.safetensors in it).
  static Archive open(const std::string& path);

  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  // Throws rlhf::Error naming the tensor (and the files searched) when absent.
  const HostTensor& get(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }  // __metadata__ merged

 private:
  std::map<std::string, HostTensor> tensors_;
  std::map<std::string, std::string> metadata_;
  std::vector<std::string> files_;
};

// Writes tensors (F32/F16/BF16) to one .safetensors file atomically, names sorted in the
// header; the data holds F32 tensors first so that every tensor is element-aligned.
void write(const std::string& path, const std::map<std::string, HostTensor>& tensors,
           const std::map<std::string, std::string>& metadata = {});

}  // namespace rlhf::safetensors
