#include "rlhf/model/transformer.h"

#include <sys/mman.h>

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>

#include "rlhf/model/cpu_kernels.h"
#include "rlhf/util/error.h"

namespace rlhf {

namespace {

torch::ScalarType scalar_type(DType t) {
  switch (t) {
    case DType::F32: return torch::kFloat32;
    case DType::F16: return torch::kFloat16;
    case DType::BF16: return torch::kBFloat16;
  }
  return torch::kFloat32;
}

// Rotary inverse frequencies, with the model's scaling applied (float32, as HF computes them).
torch::Tensor rope_inv_freq(const ModelConfig& c) {
  const int64_t half = c.head_dim / 2;
  std::vector<float> f(half);
  for (int64_t i = 0; i < half; ++i) {
    // In float32, as the reference computes 1 / base ** (arange(0, dim, 2).float() / dim).
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(c.head_dim);
    double inv = 1.0f / std::pow(static_cast<float>(c.rope_theta), exponent);
    const auto& s = c.rope_scaling;
    if (s.type == "linear") {
      inv /= s.factor;
    } else if (s.type == "llama3") {
      const double low_wavelen = s.original_max_position / s.low_freq_factor;
      const double high_wavelen = s.original_max_position / s.high_freq_factor;
      const double wavelen = 2 * M_PI / inv;
      if (wavelen > low_wavelen) {
        inv /= s.factor;
      } else if (wavelen >= high_wavelen) {
        double smooth = (s.original_max_position / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        inv = (1 - smooth) * inv / s.factor + smooth * inv;
      }
    }
    f[i] = static_cast<float>(inv);
  }
  return torch::tensor(f, torch::kFloat32);
}

// x: [B, H, T, hd]; cos/sin: [B, 1, T, hd]. Rotates the two halves of each head (HF layout).
// rotate_half(x) = cat(-x2, x1) and its transpose cat(x2, -x1).
torch::Tensor rotate_half(const torch::Tensor& x, bool transpose) {
  const int64_t half = x.size(-1) / 2;
  auto x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  return transpose ? torch::cat({x2, -x1}, -1) : torch::cat({-x2, x1}, -1);
}

torch::Tensor rotary_forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  return x * cos + rotate_half(x, false) * sin;
}

// Training saves only what each backward needs. These three functions compute exactly what
// the plain ops do, but keep fewer activations alive than autograd would:
//  - rotary: a rotation; its backward needs cos and sin only (autograd keeps x and its half-rotation);
//  - RMSNorm: keeps x and 1/rms (autograd keeps x, the normalised x and its cast);
//  - SwiGLU: keeps gate and up (autograd also keeps silu(gate)).
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct RotaryFn : torch::autograd::Function<RotaryFn> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& cos,
                               const torch::Tensor& sin) {
    ctx->save_for_backward({cos, sin});
    return rotary_forward(x, cos, sin);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    auto saved = ctx->get_saved_variables();
    const auto& g = grad[0];
    return {g * saved[0] + rotate_half(g * saved[1], true), torch::Tensor(), torch::Tensor()};
  }
};

struct RmsNormFn : torch::autograd::Function<RmsNormFn> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w, double eps) {
    auto xf = x.to(torch::kFloat32);
    auto rstd = torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
    ctx->save_for_backward({x, rstd, w});
    return w * (xf * rstd).to(x.scalar_type());
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &rstd = saved[1], &w = saved[2];
    auto xhat = x.to(torch::kFloat32) * rstd;
    auto gxhat = (grad[0] * w).to(torch::kFloat32);
    // d/dx of x·rstd(x): rstd · (g − x̂ · mean(g · x̂)); the norm weight is frozen.
    auto gx = rstd * (gxhat - xhat * (gxhat * xhat).mean(-1, /*keepdim=*/true));
    return {gx.to(x.scalar_type()), torch::Tensor(), torch::Tensor()};
  }
};

struct SwiGluFn : torch::autograd::Function<SwiGluFn> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& gate, const torch::Tensor& up) {
    ctx->save_for_backward({gate, up});
    return torch::silu(gate) * up;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    auto saved = ctx->get_saved_variables();
    const auto &gate = saved[0], &up = saved[1];
    auto sig = torch::sigmoid(gate);
    auto silu = gate * sig;
    auto dsilu = sig * (1 + gate * (1 - sig));
    return {grad[0] * up * dsilu, grad[0] * silu};
  }
};

torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  return at::GradMode::is_enabled() ? RotaryFn::apply(x, cos, sin) : rotary_forward(x, cos, sin);
}

// Rows of x up to which the CPU kernels beat the BLAS (decoding; prefill goes to the BLAS).
constexpr int64_t kKernelMaxRows = 32;

// Which arithmetic a product may use. kFramework: torch::linear only, so a pass gives the same
// numbers with or without gradients and whatever the number of rows (scoring, log-probs,
// values, training). kDecode: on the CPU without gradients, few rows take our kernels (one
// pass over w, straight from bf16; they round differently), for generation only.
enum class Path { kFramework, kDecode };

// y = x · wᵀ (+ bias), along `path`. The result is in x's dtype, or float32 when f32_out.
torch::Tensor dense(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias, Path path,
                    bool f32_out = false) {
  const int64_t K = x.size(-1), N = w.size(0);
  const int64_t M = K > 0 ? x.numel() / K : 0;
  const auto wt = w.scalar_type();
  if (path == Path::kDecode && x.device().is_cpu() && M > 0 && M <= kKernelMaxRows && !at::GradMode::is_enabled() &&
      (wt == torch::kFloat32 || wt == torch::kBFloat16) && w.is_contiguous() && cpu::linear_kernels_available()) {
    auto y = torch::empty({M, N}, torch::kFloat32);
    float* yp = y.data_ptr<float>();
    const int64_t tiles = (N + 3) / 4;
    if (wt == torch::kBFloat16 && x.scalar_type() == torch::kBFloat16 && cpu::bf16_dot_available()) {
      auto xb = x.reshape({M, K}).contiguous();
      const auto* xp = reinterpret_cast<const uint16_t*>(xb.data_ptr<at::BFloat16>());
      const auto* wp = reinterpret_cast<const uint16_t*>(w.data_ptr<at::BFloat16>());
      at::parallel_for(0, tiles, 16, [&](int64_t b, int64_t e) {
        cpu::linear_rows_bf16_dot(xp, M, K, wp, yp, N, b * 4, std::min(e * 4, N));
      });
    } else {
      auto xf = x.reshape({M, K}).to(torch::kFloat32).contiguous();
      const float* xp = xf.data_ptr<float>();
      at::parallel_for(0, tiles, 16, [&](int64_t b, int64_t e) {
        const int64_t n0 = b * 4, n1 = std::min(e * 4, N);
        if (wt == torch::kFloat32)
          cpu::linear_rows_f32(xp, M, K, w.data_ptr<float>(), yp, N, n0, n1);
        else
          cpu::linear_rows_bf16(xp, M, K, reinterpret_cast<const uint16_t*>(w.data_ptr<at::BFloat16>()), yp, N, n0, n1);
      });
    }
    if (bias.defined()) y.add_(bias.to(torch::kFloat32));
    auto shape = x.sizes().vec();
    shape.back() = N;
    y = y.view(shape);
    return f32_out ? y : y.to(x.scalar_type());
  }
  auto y = torch::linear(x, w, bias);
  return f32_out ? y.to(torch::kFloat32) : y;
}

// Up to this many new tokens per sequence, a forward pass with a KV cache on the CPU takes
// the single-pass decode kernels (Transformer::decode_layer_cpu).
constexpr int64_t kDecodeMaxTokens = 8;

// Weight matrices on the CPU live in transparent huge pages where the kernel allows it:
// decoding streams every weight once per token, and 2 MiB pages spare the TLB misses of 4 KiB
// ones (about 15% more bandwidth measured on the reference machine).
torch::Tensor in_huge_pages(const torch::Tensor& t) {
  constexpr size_t kHuge = size_t(2) << 20;
  const size_t bytes = static_cast<size_t>(t.numel()) * t.element_size();
  if (!t.device().is_cpu() || bytes < kHuge / 2) return t;
  const size_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
  void* p = std::aligned_alloc(kHuge, rounded);
  if (!p) return t;
  ::madvise(p, rounded, MADV_HUGEPAGE);  // advice only: without THP this is plain memory
  auto out = torch::from_blob(p, t.sizes(), [](void* q) { std::free(q); }, t.options());
  out.copy_(t);
  return out;
}

cpu::Elem elem_of(torch::Dtype t) { return t == torch::kBFloat16 ? cpu::Elem::BF16 : cpu::Elem::F32; }

constexpr double kMinusInf = -std::numeric_limits<double>::infinity();

// The backward of a checkpointed layer: runs the layer again from its saved input with
// gradients on and backpropagates the incoming gradient through that copy, to the input and
// to the trainable tensors the layer reads. The RNG is rewound first, so LoRA dropout draws
// the masks of the forward pass.
struct CheckpointBackward : torch::autograd::Node {
  std::function<torch::Tensor(const torch::Tensor&)> run;  // the layer
  torch::Tensor input;                 // the layer's input, detached
  bool input_needs_grad = false;
  std::vector<torch::Tensor> params;   // LoRA tensors that require gradients
  std::optional<at::Generator> generator;  // set when the layer draws random numbers
  torch::Tensor rng_state;             // generator's state before the forward pass

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    torch::autograd::variable_list out(1 + params.size());
    if (!grads[0].defined()) return out;
    at::AutoGradMode grad_on(true);
    auto x = input_needs_grad ? input.detach().requires_grad_(true) : input;
    torch::Tensor y;
    if (generator) {
      torch::Tensor now;
      {
        std::lock_guard<std::mutex> lock(generator->mutex());
        now = generator->get_state();
        generator->set_state(rng_state);
      }
      y = run(x);
      std::lock_guard<std::mutex> lock(generator->mutex());
      generator->set_state(now);
    } else {
      y = run(x);
    }
    std::vector<torch::Tensor> wrt = params;
    if (input_needs_grad) wrt.insert(wrt.begin(), x);
    auto g = torch::autograd::grad({y}, wrt, {grads[0]}, /*retain_graph=*/false, /*create_graph=*/false,
                                   /*allow_unused=*/true);
    const size_t first = input_needs_grad ? 1 : 0;
    if (input_needs_grad) out[0] = g[0];
    for (size_t i = 0; i < params.size(); ++i) out[1 + i] = g[first + i];
    return out;
  }
};

}  // namespace

AttentionBias attention_bias(const torch::Tensor& attn_mask, int64_t past, torch::Dtype dtype, AttentionMaskForm form) {
  AttentionBias out;
  if (form == AttentionMaskForm::kBoolean) {
    out.mask = attn_mask;
    return out;
  }
  const int64_t T = attn_mask.size(2), S = attn_mask.size(3);
  const auto bools = torch::TensorOptions().dtype(torch::kBool).device(attn_mask.device());
  // is_causal aligns query i with key i (top left), so it stands for the mask only without cached keys.
  if (past == 0 && T == S && attn_mask.scalar_type() == torch::kBool &&
      (attn_mask == torch::ones({T, T}, bools).tril().view({1, 1, T, T})).all().item<bool>()) {
    out.causal = true;
    return out;
  }
  out.mask = torch::zeros(attn_mask.sizes(), torch::TensorOptions().dtype(dtype).device(attn_mask.device()))
                 .masked_fill_(attn_mask.logical_not(), kMinusInf);
  return out;
}

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const AttentionBias& bias) {
  const bool grouped = q.size(1) != k.size(1);
  if (bias.causal)
    return at::scaled_dot_product_attention(q, k, v, std::nullopt, 0.0, /*is_causal=*/true, std::nullopt, grouped);
  return at::scaled_dot_product_attention(q, k, v, bias.mask, 0.0, /*is_causal=*/false, std::nullopt, grouped);
}

torch::Tensor reference_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                  const torch::Tensor& attn_mask) {
  const int64_t groups = q.size(1) / k.size(1);
  auto keys = k.repeat_interleave(groups, 1), values = v.repeat_interleave(groups, 1);  // [B, nh, S, hd]
  auto scores = torch::matmul(q, keys.transpose(-2, -1)) / std::sqrt(static_cast<double>(q.size(-1)));
  scores = scores.masked_fill(attn_mask.logical_not(), kMinusInf);  // [B, nh, T, S]
  return torch::matmul(torch::softmax(scores, -1), values);
}

const char* proj_name(int p) {
  static const char* names[kNumProj] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  return names[p];
}

std::vector<torch::Tensor> LoraAdapter::parameters() const {
  std::vector<torch::Tensor> out;
  for (size_t l = 0; l < a.size(); ++l)
    for (int p = 0; p < kNumProj; ++p)
      if (on[p]) {
        out.push_back(a[l][p]);
        out.push_back(b[l][p]);
      }
  return out;
}

std::map<std::string, torch::Tensor> LoraAdapter::named_parameters() const {
  std::map<std::string, torch::Tensor> out;
  for (size_t l = 0; l < a.size(); ++l)
    for (int p = 0; p < kNumProj; ++p)
      if (on[p]) {
        std::string base = "model.layers." + std::to_string(l) + (p <= kO ? ".self_attn." : ".mlp.") + proj_name(p);
        out[base + ".lora_A.weight"] = a[l][p];
        out[base + ".lora_B.weight"] = b[l][p];
      }
  return out;
}

torch::Tensor make_attention_mask(const torch::Tensor& key_mask, int64_t past, int64_t T) {
  const int64_t S = key_mask.size(1);
  auto opts = torch::TensorOptions().dtype(torch::kInt64).device(key_mask.device());
  auto q_pos = torch::arange(past, past + T, opts).view({T, 1});   // [T, 1]
  auto k_pos = torch::arange(0, S, opts).view({1, S});             // [1, S]
  auto causal = k_pos <= q_pos;                                    // [T, S]
  auto self = k_pos == q_pos;                                      // [T, S]
  auto m = causal.unsqueeze(0) & key_mask.to(torch::kBool).unsqueeze(1);  // [B, T, S]
  return (m | self.unsqueeze(0)).unsqueeze(1);                     // [B, 1, T, S]
}

torch::Tensor positions_from_mask(const torch::Tensor& key_mask) {
  auto m = key_mask.to(torch::kInt64);
  return (m.cumsum(1) - 1).clamp_min(0);
}

Transformer::Transformer(const ModelConfig& config, const std::map<std::string, HostTensor>& weights,
                         torch::Dtype dtype, torch::Device device)
    : config_(config), dtype_(dtype), device_(device) {
  torch::NoGradGuard no_grad;
  auto load = [&](const std::string& name, std::vector<int64_t> shape) -> torch::Tensor {
    auto it = weights.find(name);
    if (it == weights.end()) fail("weight '{}' is missing", name);
    const HostTensor& h = it->second;
    if (h.shape != shape)
      fail("weight '{}' has shape [{}], expected [{}]", name, fmt::join(h.shape, ", "), fmt::join(shape, ", "));
    if (h.nbytes != static_cast<size_t>(h.numel()) * dtype_size(h.dtype))
      fail("weight '{}' holds {} bytes, expected {}", name, h.nbytes, h.numel() * dtype_size(h.dtype));
    auto view = torch::from_blob(const_cast<uint8_t*>(h.data), h.shape,
                                 torch::TensorOptions().dtype(scalar_type(h.dtype)));
    // Own the data: the mapping may go away; convert on the CPU, then move.
    return view.to(dtype_, /*non_blocking=*/false, /*copy=*/true).to(device_).contiguous();
  };
  const auto& c = config_;
  const int64_t H = c.hidden_size, qdim = c.num_heads * c.head_dim, kvdim = c.num_kv_heads * c.head_dim;
  embed_ = in_huge_pages(load("model.embed_tokens.weight", {c.vocab_size, H}));
  norm_ = load("model.norm.weight", {H});
  head_ = c.tie_word_embeddings ? embed_ : in_huge_pages(load("lm_head.weight", {c.vocab_size, H}));
  inv_freq_ = rope_inv_freq(c).to(device_);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    Layer L;
    L.attn_norm = load(p + "input_layernorm.weight", {H});
    L.mlp_norm = load(p + "post_attention_layernorm.weight", {H});
    L.w_qkv = in_huge_pages(torch::cat({load(p + "self_attn.q_proj.weight", {qdim, H}), load(p + "self_attn.k_proj.weight", {kvdim, H}),
                          load(p + "self_attn.v_proj.weight", {kvdim, H})}));
    L.w[kQ] = L.w_qkv.narrow(0, 0, qdim);
    L.w[kK] = L.w_qkv.narrow(0, qdim, kvdim);
    L.w[kV] = L.w_qkv.narrow(0, qdim + kvdim, kvdim);
    L.w[kO] = in_huge_pages(load(p + "self_attn.o_proj.weight", {H, qdim}));
    const int64_t I = c.intermediate_size;
    L.w_gate_up = in_huge_pages(torch::cat({load(p + "mlp.gate_proj.weight", {I, H}), load(p + "mlp.up_proj.weight", {I, H})}));
    L.w[kGate] = L.w_gate_up.narrow(0, 0, I);
    L.w[kUp] = L.w_gate_up.narrow(0, I, I);
    L.w[kDown] = in_huge_pages(load(p + "mlp.down_proj.weight", {H, I}));
    if (c.attention_bias) {
      L.b_qkv = torch::cat({load(p + "self_attn.q_proj.bias", {qdim}), load(p + "self_attn.k_proj.bias", {kvdim}),
                            load(p + "self_attn.v_proj.bias", {kvdim})});
    }
    layers_.push_back(std::move(L));
  }
}

// Inference on the CPU in fp32/bf16 with a KV cache and few new tokens (decoding): each layer
// runs as a handful of single-pass kernels instead of dozens of small framework ops.
bool Transformer::use_decode_kernels(const ForwardArgs& args) const {
  return device_.is_cpu() && !at::GradMode::is_enabled() && (dtype_ == torch::kFloat32 || dtype_ == torch::kBFloat16) &&
         args.cache && args.tokens.size(1) <= kDecodeMaxTokens && cpu::attention_kernel_supports(config_.head_dim);
}

torch::Tensor Transformer::rms_norm(const torch::Tensor& x, const torch::Tensor& w) const {
  // In float32, then back to the model's dtype before the scale (as HF's LlamaRMSNorm).
  if (at::GradMode::is_enabled()) return RmsNormFn::apply(x, w, config_.rms_norm_eps);
  auto xf = x.to(torch::kFloat32);
  auto var = xf.pow(2).mean(-1, /*keepdim=*/true);
  return w * (xf * torch::rsqrt(var + config_.rms_norm_eps)).to(x.scalar_type());
}

namespace {

// One adapter's LoRA term of projection p of layer `layer` on input `in`: scale · B A x.
torch::Tensor lora_term(const LoraAdapter& ad, int layer, int p, const torch::Tensor& in, bool train) {
  auto x = (train && ad.config.dropout > 0) ? torch::dropout(in, ad.config.dropout, true) : in;
  const auto& a = ad.a[layer][p];
  const auto& b = ad.b[layer][p];
  auto d = x.scalar_type() == a.scalar_type()
               ? torch::linear(torch::linear(x, a), b)
               : torch::linear(torch::linear(x, a.to(x.scalar_type())), b.to(x.scalar_type()));
  return d * ad.scale;
}

}  // namespace

torch::Tensor Transformer::lora_delta(int layer, int p, const torch::Tensor& in, const ForwardArgs& args) const {
  if (!args.row_adapters.empty()) {
    const int64_t B = in.size(0);
    if (static_cast<int64_t>(args.row_adapters.size()) != B)
      fail("{} row adapters for a batch of {} rows", args.row_adapters.size(), B);
    // Rows grouped by adapter, in order of first appearance.
    std::vector<std::pair<const LoraAdapter*, std::vector<int64_t>>> groups;
    for (int64_t r = 0; r < B; ++r) {
      const LoraAdapter* ad = args.row_adapters[r];
      if (!ad || !ad->on[p]) continue;
      auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == ad; });
      if (it == groups.end()) groups.push_back({ad, {r}});
      else it->second.push_back(r);
    }
    if (groups.empty()) return {};
    if (groups.size() == 1 && static_cast<int64_t>(groups[0].second.size()) == B)
      return lora_term(*groups[0].first, layer, p, in, args.train);
    torch::Tensor delta;
    for (const auto& [ad, rows] : groups) {
      auto index = torch::tensor(rows, torch::kInt64).to(in.device());
      auto d = lora_term(*ad, layer, p, in.index_select(0, index), args.train);
      if (!delta.defined()) {
        auto shape = in.sizes().vec();
        shape.back() = d.size(-1);
        delta = torch::zeros(shape, d.options());
      }
      delta = delta.index_add(0, index, d);
    }
    return delta;
  }
  torch::Tensor delta;
  for (const LoraAdapter* ad : args.adapters) {
    if (!ad->on[p]) continue;
    auto d = lora_term(*ad, layer, p, in, args.train);
    delta = delta.defined() ? delta + d : d;
  }
  return delta;
}

torch::Tensor Transformer::add_lora(torch::Tensor y, int layer, int p, const torch::Tensor& in,
                                    const ForwardArgs& args) const {
  auto d = lora_delta(layer, p, in, args);
  return d.defined() ? y + d : y;
}

torch::Tensor Transformer::hidden(const ForwardArgs& args) const {
  const int64_t T = args.tokens.size(1);
  KVCache* cache = args.cache;
  const int64_t past = cache ? cache->length : 0;
  if (cache && past + T > cache->capacity())
    fail("KV cache overflow: {} + {} tokens > capacity {}", past, T, cache->capacity());

  auto x = torch::embedding(embed_, args.tokens);  // [B, T, hidden]
  if (use_decode_kernels(args)) {
    const auto positions = args.positions.contiguous();
    const auto mask = args.attn_mask.contiguous();
    for (int64_t l = 0; l < config_.num_layers; ++l) decode_layer_cpu(l, x, args, positions, mask);
    cache->length = past + T;
    auto out = torch::empty_like(x);
    cpu::rms_norm(elem_of(dtype_), x.data_ptr(), norm_.data_ptr(), out.data_ptr(), x.numel() / x.size(-1), x.size(-1),
                  config_.rms_norm_eps);
    return out;
  }
  // Rotary tables for these positions: [B, 1, T, hd], in the model's dtype.
  auto freqs = args.positions.to(torch::kFloat32).unsqueeze(-1) * inv_freq_;  // [B, T, hd/2]
  auto emb = torch::cat({freqs, freqs}, -1).unsqueeze(1);
  auto cos = emb.cos().to(dtype_), sin = emb.sin().to(dtype_);
  const AttentionBias bias = attention_bias(args.attn_mask, past, dtype_, mask_form_);
  const bool checkpoint = gradient_checkpointing_ && at::GradMode::is_enabled() && !cache;
  for (int64_t l = 0; l < config_.num_layers; ++l)
    x = checkpoint ? checkpointed_layer(l, x, args, cos, sin, bias) : layer(l, x, args, cos, sin, bias);
  if (cache) cache->length = past + T;
  return rms_norm(x, norm_);
}

torch::Tensor Transformer::checkpointed_layer(int64_t l, const torch::Tensor& x, const ForwardArgs& args,
                                              const torch::Tensor& cos, const torch::Tensor& sin,
                                              const AttentionBias& bias) const {
  std::vector<torch::Tensor> params;  // the trainable tensors this layer reads
  bool dropout = false;
  std::vector<const LoraAdapter*> active = args.adapters;
  if (!args.row_adapters.empty()) {
    active.clear();
    for (const LoraAdapter* ad : args.row_adapters)
      if (ad && std::find(active.begin(), active.end(), ad) == active.end()) active.push_back(ad);
  }
  for (const LoraAdapter* ad : active)
    for (int p = 0; p < kNumProj; ++p) {
      if (!ad->on[p]) continue;
      for (const auto& t : {ad->a[l][p], ad->b[l][p]})
        if (t.requires_grad()) params.push_back(t);
      dropout = dropout || (args.train && ad->config.dropout > 0);
    }
  if (!x.requires_grad() && params.empty()) return layer(l, x, args, cos, sin, bias);
  auto node = std::make_shared<CheckpointBackward>();
  if (dropout) {
    node->generator = at::globalContext().defaultGenerator(x.device());
    std::lock_guard<std::mutex> lock(node->generator->mutex());
    node->rng_state = node->generator->get_state();
  }
  torch::Tensor y;
  {
    torch::NoGradGuard no_grad;  // nothing inside the layer is kept for the backward
    y = layer(l, x, args, cos, sin, bias);
  }
  // A copy of the arguments: the backward runs after the caller's are gone.
  node->run = [this, l, saved = args, cos, sin, bias](const torch::Tensor& in) {
    return layer(l, in, saved, cos, sin, bias);
  };
  node->input = x.detach();
  node->input_needs_grad = x.requires_grad();
  node->params = params;
  std::vector<torch::Tensor> inputs = {x};
  inputs.insert(inputs.end(), params.begin(), params.end());
  node->set_next_edges(torch::autograd::collect_next_edges(inputs));
  torch::autograd::set_history(y, node);
  return y;
}

torch::Tensor Transformer::layer(int64_t l, torch::Tensor x, const ForwardArgs& args, const torch::Tensor& cos,
                                 const torch::Tensor& sin, const AttentionBias& bias) const {
  const auto& c = config_;
  const Layer& L = layers_[l];
  const int64_t B = x.size(0), T = x.size(1), hd = c.head_dim;
  const int64_t qdim = c.num_heads * hd, kvdim = c.num_kv_heads * hd, I = c.intermediate_size;
  // Passes with a KV cache generate; every other pass takes one path, gradients or not.
  const Path path = args.cache ? Path::kDecode : Path::kFramework;
  // --- attention ---
  auto h = rms_norm(x, L.attn_norm);
  auto qkv = dense(h, L.w_qkv, L.b_qkv, path);  // [B, T, qdim + 2 kvdim]
  auto q = add_lora(qkv.narrow(-1, 0, qdim), l, kQ, h, args).view({B, T, c.num_heads, hd}).transpose(1, 2);
  auto k = add_lora(qkv.narrow(-1, qdim, kvdim), l, kK, h, args).view({B, T, c.num_kv_heads, hd}).transpose(1, 2);
  auto v = add_lora(qkv.narrow(-1, qdim + kvdim, kvdim), l, kV, h, args).view({B, T, c.num_kv_heads, hd}).transpose(1, 2);
  q = apply_rotary(q, cos, sin);  // q: [B, nh, T, hd]; k, v: [B, nkv, T, hd]
  k = apply_rotary(k, cos, sin);
  if (KVCache* cache = args.cache) {
    const int64_t past = cache->length;
    cache->k[l].narrow(2, past, T).copy_(k);
    cache->v[l].narrow(2, past, T).copy_(v);
    k = cache->k[l].narrow(2, 0, past + T);
    v = cache->v[l].narrow(2, 0, past + T);
  }
  auto att = attention(q, k, v, bias);  // [B, nh, T, hd]
  att = att.transpose(1, 2).reshape({B, T, qdim});
  x = x + add_lora(dense(att, L.w[kO], {}, path), l, kO, att, args);
  // --- SwiGLU MLP ---
  h = rms_norm(x, L.mlp_norm);
  auto gate_up = dense(h, L.w_gate_up, {}, path);  // [B, T, 2 * intermediate]
  auto gate = add_lora(gate_up.narrow(-1, 0, I), l, kGate, h, args);
  auto up = add_lora(gate_up.narrow(-1, I, I), l, kUp, h, args);
  auto act = at::GradMode::is_enabled() ? SwiGluFn::apply(gate, up) : torch::silu(gate) * up;
  return x + add_lora(dense(act, L.w[kDown], {}, path), l, kDown, act, args);
}

void Transformer::decode_layer_cpu(int64_t l, torch::Tensor& x, const ForwardArgs& args, const torch::Tensor& positions,
                                   const torch::Tensor& mask) const {
  const auto& c = config_;
  const Layer& L = layers_[l];
  const auto elem = elem_of(dtype_);
  KVCache& cache = *args.cache;
  const int64_t B = x.size(0), T = x.size(1), H = c.hidden_size, hd = c.head_dim;
  const int64_t qdim = c.num_heads * hd, kvdim = c.num_kv_heads * hd, I = c.intermediate_size;
  const int64_t rows = B * T, past = cache.length;
  auto norm = [&](const torch::Tensor& w) {
    auto out = torch::empty_like(x);
    cpu::rms_norm(elem, x.data_ptr(), w.data_ptr(), out.data_ptr(), rows, H, c.rms_norm_eps);
    return out;
  };
  // LoRA terms go straight into the columns of the stacked projection they belong to.
  auto add_lora_into = [&](torch::Tensor& stacked, int p, int64_t col, int64_t width, const torch::Tensor& in) {
    if (auto d = lora_delta(l, p, in, args); d.defined()) stacked.narrow(-1, col, width).add_(d);
  };

  // --- attention: q/k/v, rotary in place, K/V appended to the cache, attention over it ---
  auto h = norm(L.attn_norm);
  auto qkv = dense(h, L.w_qkv, L.b_qkv, Path::kDecode).contiguous();  // [B, T, qdim + 2 kvdim]
  add_lora_into(qkv, kQ, 0, qdim, h);
  add_lora_into(qkv, kK, qdim, kvdim, h);
  add_lora_into(qkv, kV, qdim + kvdim, kvdim, h);
  auto* base = static_cast<char*>(qkv.data_ptr());
  const int64_t stride = qkv.size(-1), es = qkv.element_size();
  const int64_t* pos = positions.data_ptr<int64_t>();
  cpu::rotary(elem, base, rows, stride, c.num_heads, hd, pos, inv_freq_.data_ptr<float>());
  cpu::rotary(elem, base + qdim * es, rows, stride, c.num_kv_heads, hd, pos, inv_freq_.data_ptr<float>());
  cpu::append_kv(elem, base + qdim * es, base + (qdim + kvdim) * es, stride, B, T, c.num_kv_heads, hd,
                 cache.k[l].data_ptr(), cache.v[l].data_ptr(), cache.capacity(), past);
  auto att = torch::empty({B, T, qdim}, x.options());
  const cpu::AttentionShape shape{B, T, past + T, cache.capacity(), c.num_heads, c.num_kv_heads, hd, stride};
  const auto* m = reinterpret_cast<const uint8_t*>(mask.data_ptr<bool>());
  at::parallel_for(0, B * c.num_heads, 1, [&](int64_t b, int64_t e) {
    cpu::attention(elem, shape, qkv.data_ptr(), cache.k[l].data_ptr(), cache.v[l].data_ptr(), m, att.data_ptr(), b, e);
  });
  x.add_(add_lora(dense(att, L.w[kO], {}, Path::kDecode), l, kO, att, args));

  // --- SwiGLU MLP ---
  h = norm(L.mlp_norm);
  auto gate_up = dense(h, L.w_gate_up, {}, Path::kDecode).contiguous();  // [B, T, 2 * intermediate]
  add_lora_into(gate_up, kGate, 0, I, h);
  add_lora_into(gate_up, kUp, I, I, h);
  auto act = torch::empty({B, T, I}, x.options());
  cpu::swiglu(elem, gate_up.data_ptr(), act.data_ptr(), rows, I);
  x.add_(add_lora(dense(act, L.w[kDown], {}, Path::kDecode), l, kDown, act, args));
}

torch::Tensor Transformer::logits(const torch::Tensor& hidden) const {
  return dense(hidden, head_, {}, Path::kFramework, /*f32_out=*/true);
}

torch::Tensor Transformer::decode_logits(const torch::Tensor& hidden) const {
  return dense(hidden, head_, {}, Path::kDecode, /*f32_out=*/true);
}

std::vector<const void*> Transformer::base_storage() const {
  std::vector<const void*> out = {embed_.data_ptr(), head_.data_ptr(), norm_.data_ptr()};
  for (const Layer& l : layers_) {
    out.push_back(l.attn_norm.data_ptr());
    out.push_back(l.mlp_norm.data_ptr());
    for (const auto& w : l.w) out.push_back(w.data_ptr());
  }
  return out;
}

LoraAdapter& Transformer::add_adapter(const std::string& name, const LoraConfig& config, uint64_t seed) {
  if (adapters_.count(name)) fail("adapter '{}' exists already", name);
  if (config.rank <= 0) fail("LoRA rank must be positive (got {})", config.rank);
  if (config.dropout < 0 || config.dropout >= 1) fail("LoRA dropout must be in [0, 1) (got {})", config.dropout);
  auto ad = std::make_unique<LoraAdapter>();
  ad->name = name;
  ad->config = config;
  ad->scale = (config.alpha > 0 ? config.alpha : static_cast<double>(config.rank)) / static_cast<double>(config.rank);
  for (const std::string& t : config.targets) {
    bool found = false;
    for (int p = 0; p < kNumProj; ++p)
      if (t == "all-linear" || t == proj_name(p)) ad->on[p] = found = true;
    if (!found) fail("unknown LoRA target module '{}' (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, all-linear)", t);
  }
  auto gen = at::detail::createCPUGenerator(seed);
  torch::NoGradGuard no_grad;
  ad->a.resize(layers_.size());
  ad->b.resize(layers_.size());
  for (size_t l = 0; l < layers_.size(); ++l) {
    for (int p = 0; p < kNumProj; ++p) {
      if (!ad->on[p]) continue;
      const int64_t out = layers_[l].w[p].size(0), in = layers_[l].w[p].size(1);
      // Kaiming-uniform with a = sqrt(5), as torch.nn.Linear and peft initialise lora_A.
      const double bound = 1.0 / std::sqrt(static_cast<double>(in));
      auto a = torch::empty({config.rank, in}, torch::kFloat32).uniform_(-bound, bound, gen);
      // Adapters are kept in float32 whatever the base dtype (the optimizer updates these
      // master copies); each forward casts them to the activations' dtype.
      ad->a[l][p] = a.to(device_).set_requires_grad(true);
      ad->b[l][p] = torch::zeros({out, config.rank}, torch::TensorOptions().dtype(torch::kFloat32).device(device_)).set_requires_grad(true);
    }
  }
  auto& ref = *ad;
  adapters_[name] = std::move(ad);
  return ref;
}

const LoraAdapter& Transformer::adapter(const std::string& name) const {
  auto it = adapters_.find(name);
  if (it == adapters_.end()) fail("no adapter named '{}'", name);
  return *it->second;
}

KVCache Transformer::new_cache(int64_t batch, int64_t capacity) const {
  KVCache c;
  auto opts = torch::TensorOptions().dtype(dtype_).device(device_);
  for (int64_t l = 0; l < config_.num_layers; ++l) {
    c.k.push_back(torch::zeros({batch, config_.num_kv_heads, capacity, config_.head_dim}, opts));
    c.v.push_back(torch::zeros({batch, config_.num_kv_heads, capacity, config_.head_dim}, opts));
  }
  return c;
}

}  // namespace rlhf
