// What one export writes, decided before anything is written: the base model's files, the
// trained folder merged into them, and the output's float type. Shared by the Hugging Face
// and GGUF writers.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "rlhf/export/export.h"
#include "rlhf/export/merge.h"
#include "rlhf/model/loader.h"
#include "rlhf/train/trained_folder.h"

namespace rlhf::exporter {

struct ExportPlan {
  ExportOptions options;
  std::optional<TrainedFolder> folder;        // none: the base alone
  ModelFiles base;
  bool seq_cls = false;                       // a reward model: <Arch>ForSequenceClassification
  RewardHead head;                            // seq_cls only
  DType dtype = DType::F32;                   // of the written weights (norms stay F32 in GGUF)
  std::map<std::string, HostTensor> weights;  // HF names, merged, float types as read
  int64_t merged = 0;                         // weights that received a LoRA delta
};

// "Llama", "Qwen2", "Mistral": the transformers class prefix of an architecture.
std::string arch_class(const std::string& arch);

}  // namespace rlhf::exporter
