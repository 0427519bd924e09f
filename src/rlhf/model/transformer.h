// Transformer: a Llama-family decoder (Llama 2/3, Mistral, Qwen2, SmolLM) in libtorch:
// embedding, RMSNorm, rotary embedding, grouped-query attention (SDPA), SwiGLU MLP, final
// norm, tied or untied head. The base weights are frozen; named LoRA adapters sit beside them
// and each forward call chooses which are active, so the policy, the reference (no adapter),
// the reward and the value model share one copy of the base.
#pragma once
#include <torch/torch.h>

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "rlhf/model/config.h"
#include "rlhf/model/host_tensor.h"
#include "rlhf/model/lora_config.h"

namespace rlhf {

// The linear layers of a block, in a fixed order; LoRA targets use the HF module names.
enum Proj : int { kQ, kK, kV, kO, kGate, kUp, kDown, kNumProj };
const char* proj_name(int p);  // "q_proj", ..., "down_proj"


struct LoraAdapter {
  std::string name;
  LoraConfig config;
  double scale = 1.0;
  std::array<bool, kNumProj> on{};  // which projections carry this adapter
  // Per layer and projection: a [rank, in] (random init), b [out, rank] (zeros), so a new
  // adapter changes nothing until trained.
  std::vector<std::array<torch::Tensor, kNumProj>> a, b;

  std::vector<torch::Tensor> parameters() const;
  std::map<std::string, torch::Tensor> named_parameters() const;  // peft-style names
};

// Keys and values of the tokens seen so far, per layer: [B, n_kv_heads, capacity, head_dim].
struct KVCache {
  std::vector<torch::Tensor> k, v;
  int64_t length = 0;
  int64_t capacity() const { return k.empty() ? 0 : k[0].size(2); }
};

struct ForwardArgs {
  torch::Tensor tokens;     // [B, T] int64
  torch::Tensor positions;  // [B, T] int64: rotary position of each token
  torch::Tensor attn_mask;  // [B, 1, T, S] bool, true = may attend; S = (cache ? cache->length : 0) + T
  KVCache* cache = nullptr; // when given, K/V of these tokens are appended at cache->length
  std::vector<const LoraAdapter*> adapters;  // active for this call
  // [B] one adapter per row (null = none), each applied to its own rows only (a batch that
  // mixes adapters of one base); when non-empty it replaces `adapters`.
  std::vector<const LoraAdapter*> row_adapters;
  bool train = false;       // LoRA dropout on
};

// [B, 1, T, S] mask for T new tokens after `past` cached ones: token t may see key j when
// key_mask[b, j] and j <= past + t. A token always sees itself, so padding rows stay finite.
torch::Tensor make_attention_mask(const torch::Tensor& key_mask /*[B,S] bool*/, int64_t past, int64_t T);
// Rotary positions for a padded batch: running count of real tokens minus one (0 on padding).
torch::Tensor positions_from_mask(const torch::Tensor& key_mask /*[B,S] bool*/);

// How the framework path hands a pass's mask to scaled_dot_product_attention.
enum class AttentionMaskForm {
  // Built once per pass in the form the fused kernels take: no mask and is_causal when the
  // boolean mask is plain causal (no padding, no packed pairs, no cached keys: the flash
  // kernels apply, and skip the hidden blocks), otherwise an additive mask (0 / -inf) in the
  // query's dtype (the memory-efficient kernel on CUDA, flash on the CPU).
  kFastKernels,
  // The boolean mask to every layer's call, which converts it again per layer (and on CUDA
  // may fall back to the math kernel): the form before, kept for comparison.
  kBoolean,
};

// A pass's mask in the form chosen: `causal` with no mask, or `mask` [B, 1, T, S] (additive in
// the query's dtype, or the boolean mask itself for kBoolean).
struct AttentionBias {
  bool causal = false;
  torch::Tensor mask;
};
// From the boolean mask [B, 1, T, S] of T queries after `past` cached keys.
AttentionBias attention_bias(const torch::Tensor& attn_mask, int64_t past, torch::Dtype dtype, AttentionMaskForm form);
// Attention of q [B, nh, T, hd] over k, v [B, nkv, S, hd] (grouped when nkv < nh) under `bias`,
// through at::scaled_dot_product_attention: [B, nh, T, hd].
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const AttentionBias& bias);
// The formula itself, for checks: softmax(q kᵀ / sqrt(hd) + (mask ? 0 : -inf)) v, with k and v
// repeated over each group of query heads.
torch::Tensor reference_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                  const torch::Tensor& attn_mask /*[B,1,T,S] bool*/);

class Transformer {
 public:
  // Copies the weights (HF names) to `device` in `dtype`; throws rlhf::Error on a missing or
  // misshapen weight.
  Transformer(const ModelConfig& config, const std::map<std::string, HostTensor>& weights,
              torch::Dtype dtype, torch::Device device);

  // Final-norm hidden states [B, T, hidden] in the model's dtype. A pass without a KV cache
  // runs framework ops only: the same numbers with or without gradients (old log-probs and
  // the update's agree exactly). A pass with a cache (generation) may take the CPU decode
  // kernels, which round differently in the last bits.
  torch::Tensor hidden(const ForwardArgs& args) const;
  // Next-token logits [..., vocab] in float32 (the head runs in the model's dtype), on the
  // framework path: what scoring and training use.
  torch::Tensor logits(const torch::Tensor& hidden) const;
  // The same for generation: on the CPU without gradients, few rows take the decode kernel
  // (faster; in bf16 the logits are not rounded to bf16 first).
  torch::Tensor decode_logits(const torch::Tensor& hidden) const;

  LoraAdapter& add_adapter(const std::string& name, const LoraConfig& config, uint64_t seed);
  const LoraAdapter& adapter(const std::string& name) const;
  bool has_adapter(const std::string& name) const { return adapters_.count(name) != 0; }

  KVCache new_cache(int64_t batch, int64_t capacity) const;

  // The mask form of the framework path (kFastKernels unless set; kBoolean for comparisons).
  void set_attention_mask_form(AttentionMaskForm form) { mask_form_ = form; }
  // Activation checkpointing: in a pass with gradients, each decoder layer keeps only its input
  // and is run again in the backward pass (less memory for about one more forward).
  void set_gradient_checkpointing(bool on) { gradient_checkpointing_ = on; }
  bool gradient_checkpointing() const { return gradient_checkpointing_; }

  const ModelConfig& config() const { return config_; }
  // Data pointers of the frozen base weights (embedding, head, norms, projections): the
  // roles built on one transformer share exactly these.
  std::vector<const void*> base_storage() const;
  torch::Dtype dtype() const { return dtype_; }
  torch::Device device() const { return device_; }

 private:
  struct Layer {
    torch::Tensor attn_norm, mlp_norm;  // [hidden]
    // Projections that read the same input are stacked, so one product computes them all:
    torch::Tensor w_qkv;                // [(n_heads + 2 n_kv_heads) * head_dim, hidden]
    torch::Tensor b_qkv;                // [(n_heads + 2 n_kv_heads) * head_dim] or undefined
    torch::Tensor w_gate_up;            // [2 * intermediate, hidden]
    std::array<torch::Tensor, kNumProj> w;  // per projection [out, in]; q/k/v, gate/up are views
  };
  // The active adapters' LoRA terms of projection p (input `in`) of layer `layer`, summed;
  // undefined when no active adapter has that projection. With row_adapters, each row's term
  // comes from its own adapter (rows grouped by adapter).
  torch::Tensor lora_delta(int layer, int p, const torch::Tensor& in, const ForwardArgs& args) const;
  // x plus lora_delta(...).
  torch::Tensor add_lora(torch::Tensor x, int layer, int p, const torch::Tensor& in, const ForwardArgs& args) const;
  torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& w) const;
  // One block with framework ops (training, GPUs, prefill): x -> x + attention + MLP.
  torch::Tensor layer(int64_t l, torch::Tensor x, const ForwardArgs& args, const torch::Tensor& cos,
                      const torch::Tensor& sin, const AttentionBias& bias) const;
  // The same block, its activations recomputed in the backward pass (gradient checkpointing).
  torch::Tensor checkpointed_layer(int64_t l, const torch::Tensor& x, const ForwardArgs& args, const torch::Tensor& cos,
                                   const torch::Tensor& sin, const AttentionBias& bias) const;
  // The same block for decoding on the CPU, in place on x, with single-pass kernels.
  bool use_decode_kernels(const ForwardArgs& args) const;
  void decode_layer_cpu(int64_t l, torch::Tensor& x, const ForwardArgs& args, const torch::Tensor& positions,
                        const torch::Tensor& mask) const;

  ModelConfig config_;
  torch::Dtype dtype_;
  torch::Device device_;
  torch::Tensor embed_;    // [vocab, hidden]
  torch::Tensor head_;     // [vocab, hidden] (the embedding when tied)
  torch::Tensor norm_;     // [hidden]
  torch::Tensor inv_freq_; // [head_dim / 2] float32
  std::vector<Layer> layers_;
  std::map<std::string, std::unique_ptr<LoraAdapter>> adapters_;
  AttentionMaskForm mask_form_ = AttentionMaskForm::kFastKernels;
  bool gradient_checkpointing_ = false;
};

}  // namespace rlhf
