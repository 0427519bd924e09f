// The merge of an export: a trained folder's LoRA tensors read and checked against the base
// weights, merged into them (W + alpha/r · B·A, on host float32), a reward model's head read,
// and the float conversions the writers need. Torch-free.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "rlhf/model/host_tensor.h"
#include "rlhf/model/loader.h"

namespace rlhf::exporter {

// One adapted weight's LoRA factors as stored (any float type).
struct LoraPair {
  HostTensor a, b;  // a [r, in], b [out, r]
  std::string a_name, b_name;
};

// The LoRA tensors of `path` (adapter_model.safetensors, peft names) by the base weight they
// adapt ("model.layers.0.self_attn.q_proj.weight"): every tensor a LoRA A or B of a
// projection the base has, in pairs, of rank `rank` and the weight's shape. Throws
// rlhf::Error naming the file and the tensor.
std::map<std::string, LoraPair> read_lora_pairs(const std::string& path, int64_t rank, const ModelFiles& base);

// A reward model's head (reward_head.safetensors): score.weight [1, hidden] as float32 and
// score.bias.
struct RewardHead {
  HostTensor weight;
  double bias = 0;
};
RewardHead read_reward_head(const std::string& path, int64_t hidden_size);

// W + scale · B·A in float32 (HF layout [out, in]).
HostTensor merge_lora(const HostTensor& w, const LoraPair& pair, double scale);

// An owned float32 copy of any float host tensor.
HostTensor to_f32(const HostTensor& t);
// `t` in dtype d: itself when it already is, else converted through float32 (round to
// nearest even).
HostTensor convert(const HostTensor& t, DType d);

std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace rlhf::exporter
