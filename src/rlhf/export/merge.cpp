#include "rlhf/export/merge.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "rlhf/model/gguf.h"
#include "rlhf/model/safetensors.h"
#include "rlhf/util/error.h"

namespace rlhf::exporter {
namespace {

constexpr const char* kProjNames[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

uint16_t float_to_half(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t a = x & 0x7fffffff;
  if (a >= 0x7f800000) return sign | 0x7c00 | (a > 0x7f800000 ? 0x200 : 0);  // inf, nan
  if (a >= 0x477ff000) return sign | 0x7c00;  // 65520 and above round to infinity
  if (a < 0x38800000) {  // below 2^-14: a subnormal half, round(|f| · 2^24) (exact product)
    const float scaled = std::bit_cast<float>(a) * 16777216.0f;
    return sign | static_cast<uint16_t>(std::nearbyint(scaled));
  }
  uint32_t h = ((((a >> 23) - 127 + 15) << 10) | ((a & 0x7fffff) >> 13));
  const uint32_t rest = a & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) ++h;  // to nearest, ties to even
  return sign | static_cast<uint16_t>(h);
}

uint16_t float_to_bf16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((x >> 16) | 0x40);  // quiet nan
  return static_cast<uint16_t>((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

}  // namespace

HostTensor to_f32(const HostTensor& t) {
  HostTensor out = make_f32_tensor(t.shape);
  const gguf::TensorType type = t.dtype == DType::F32   ? gguf::TensorType::F32
                                : t.dtype == DType::F16 ? gguf::TensorType::F16
                                                        : gguf::TensorType::BF16;
  if (out.numel() > 0) gguf::dequantize(type, t.data, mutable_f32(out), out.numel());
  return out;
}

HostTensor convert(const HostTensor& t, DType d) {
  if (t.dtype == d) return t;
  HostTensor f = t.dtype == DType::F32 ? t : to_f32(t);
  if (d == DType::F32) return f;
  auto buf = std::make_shared<std::vector<uint16_t>>(static_cast<size_t>(f.numel()));
  const float* src = reinterpret_cast<const float*>(f.data);
  for (size_t i = 0; i < buf->size(); ++i) (*buf)[i] = d == DType::F16 ? float_to_half(src[i]) : float_to_bf16(src[i]);
  HostTensor out;
  out.shape = t.shape;
  out.dtype = d;
  out.data = reinterpret_cast<const uint8_t*>(buf->data());
  out.nbytes = buf->size() * 2;
  out.owner = buf;
  return out;
}

std::string shape_str(const std::vector<int64_t>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

std::map<std::string, LoraPair> read_lora_pairs(const std::string& path, int64_t rank, const ModelFiles& base) {
  auto archive = std::make_shared<safetensors::Archive>(safetensors::Archive::open(path));
  std::map<std::string, LoraPair> pairs;
  for (const std::string& full : archive->names()) {
    const std::string prefix = "base_model.model.";
    std::string name = full.starts_with(prefix) ? full.substr(prefix.size()) : "";
    // model.layers.N.(self_attn|mlp).PROJ.lora_(A|B).weight
    std::string target;
    char which = 0;
    for (const char* ab : {".lora_A.weight", ".lora_B.weight"}) {
      if (name.ends_with(ab)) {
        target = name.substr(0, name.size() - std::strlen(ab)) + ".weight";
        which = ab[6];
      }
    }
    bool known = false;
    if (which && target.starts_with("model.layers.")) {
      size_t p = std::strlen("model.layers.");
      size_t q = target.find('.', p);
      const std::string layer = q == std::string::npos ? "" : target.substr(p, q - p);
      const bool digits = !layer.empty() && std::all_of(layer.begin(), layer.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
      for (int k = 0; digits && k < 7; ++k) {
        const std::string want = std::string(k <= 3 ? ".self_attn." : ".mlp.") + kProjNames[k] + ".weight";
        if (target.substr(q) == want) known = true;
      }
    }
    if (!known)
      fail("{}: tensor '{}' is not a LoRA weight of a projection (base_model.model.model.layers.N.self_attn|mlp.<proj>.lora_A|lora_B.weight)",
           path, full);
    auto wit = base.weights.find(target);
    if (wit == base.weights.end())
      fail("{}: tensor '{}' adapts '{}', which the base model {} does not have", path, full, target, base.path);
    HostTensor t = archive->get(full);
    t.owner = std::shared_ptr<const void>(archive, t.owner.get());
    LoraPair& pr = pairs[target];
    (which == 'A' ? pr.a : pr.b) = t;
    (which == 'A' ? pr.a_name : pr.b_name) = full;
  }
  if (pairs.empty()) fail("{}: holds no LoRA tensors", path);
  for (auto& [target, pr] : pairs) {
    const auto& w = base.weights.at(target).shape;
    if (pr.a_name.empty()) fail("{}: the LoRA A of '{}' is missing (there is only '{}')", path, target, pr.b_name);
    if (pr.b_name.empty()) fail("{}: the LoRA B of '{}' is missing (there is only '{}')", path, target, pr.a_name);
    const int64_t out = w.at(0), in = w.at(1);
    if (pr.a.shape != std::vector<int64_t>{rank, in})
      fail("{}: tensor '{}' has shape {}; the base weight {} and rank {} need [{}, {}]", path, pr.a_name,
           shape_str(pr.a.shape), shape_str(w), rank, rank, in);
    if (pr.b.shape != std::vector<int64_t>{out, rank})
      fail("{}: tensor '{}' has shape {}; the base weight {} and rank {} need [{}, {}]", path, pr.b_name,
           shape_str(pr.b.shape), shape_str(w), rank, out, rank);
  }
  return pairs;
}

RewardHead read_reward_head(const std::string& path, int64_t hidden_size) {
  auto archive = safetensors::Archive::open(path);
  const int64_t H = hidden_size;
  for (const char* n : {"score.weight", "score.bias"})
    if (!archive.contains(n)) fail("{}: tensor '{}' is missing", path, n);
  HostTensor w = to_f32(archive.get("score.weight"));
  HostTensor b = to_f32(archive.get("score.bias"));
  if (w.shape != std::vector<int64_t>{1, H})
    fail("{}: tensor 'score.weight' has shape {}; the base model's hidden size {} needs [1, {}]", path, shape_str(w.shape), H, H);
  if (b.shape != std::vector<int64_t>{1}) fail("{}: tensor 'score.bias' has shape {}, not [1]", path, shape_str(b.shape));
  return {w, reinterpret_cast<const float*>(b.data)[0]};
}

HostTensor merge_lora(const HostTensor& w, const LoraPair& pr, double scale) {
  HostTensor out = to_f32(w);
  HostTensor a = to_f32(pr.a), b = to_f32(pr.b);
  const int64_t O = w.shape[0], I = w.shape[1], R = a.shape[0];
  float* W = mutable_f32(out);
  const float* A = reinterpret_cast<const float*>(a.data);
  const float* B = reinterpret_cast<const float*>(b.data);
  std::vector<double> row(static_cast<size_t>(I));
  for (int64_t o = 0; o < O; ++o) {
    std::fill(row.begin(), row.end(), 0.0);
    for (int64_t r = 0; r < R; ++r) {
      const double c = B[o * R + r];
      if (c == 0) continue;
      const float* ar = A + r * I;
      for (int64_t i = 0; i < I; ++i) row[i] += c * ar[i];
    }
    float* wr = W + o * I;
    for (int64_t i = 0; i < I; ++i) wr[i] = static_cast<float>(wr[i] + scale * row[i]);
  }
  return out;
}

}  // namespace rlhf::exporter
