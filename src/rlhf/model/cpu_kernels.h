// CPU inference kernels for decoding, where a step is a few rows of work per layer and the
// cost of many small framework ops adds up:
//  - y = x · Wᵀ for few rows of x: the product streams the whole weight matrix once and is
//    bound by memory bandwidth; each weight row is read once for all rows of x, in fp32 or
//    straight from bf16 (half the bytes), with AVX-512 or AVX2 chosen at run time. The caller
//    splits [n_begin, n_end) across threads.
//  - RMSNorm, rotary embedding, KV-cache append, attention over the cache and SwiGLU, one
//    pass each, rounding as the reference does (Transformer::decode_layer_cpu uses them).
#pragma once
#include <cstdint>

namespace rlhf::cpu {

// Whether this CPU has a kernel (AVX2+FMA at least). When false, callers use a BLAS.
bool linear_kernels_available();

// y[m * ldy + n] = sum_k x[m * K + k] * w[n * K + k], for m < M and n_begin <= n < n_end.
// x: [M, K] float32; w: [N, K] float32 or bfloat16 bits; y: float32.
void linear_rows_f32(const float* x, int64_t M, int64_t K, const float* w, float* y, int64_t ldy,
                     int64_t n_begin, int64_t n_end);
void linear_rows_bf16(const float* x, int64_t M, int64_t K, const uint16_t* w, float* y, int64_t ldy,
                      int64_t n_begin, int64_t n_end);

// With AVX512-BF16 (dot products of bf16 pairs into fp32), x itself in bf16: half the
// instructions of converting w. Only call when bf16_dot_available().
bool bf16_dot_available();
void linear_rows_bf16_dot(const uint16_t* x, int64_t M, int64_t K, const uint16_t* w, float* y, int64_t ldy,
                          int64_t n_begin, int64_t n_end);

// Element types of the row kernels below.
enum class Elem { F32, BF16 };

// out[m] = w * (x[m] / rms(x[m])), rms over H in float32; for BF16 the normalised row is
// rounded to bf16 before the scale, as the reference does. x, out: [M, H]; w: [H].
void rms_norm(Elem t, const void* x, const void* w, void* out, int64_t M, int64_t H, double eps);

// Rotary embedding in place on `heads` heads of size hd that start at `data + row * row_stride`
// (elements) for each of `rows` rows, at rotary position pos[row]: the halves (a, b) of each
// head become (a cos - b sin, b cos + a sin), with angles pos * inv_freq[i] (float32).
void rotary(Elem t, void* data, int64_t rows, int64_t row_stride, int64_t heads, int64_t hd, const int64_t* pos,
            const float* inv_freq);

// Attention of T new query rows per sequence against a KV cache, in one pass (scores, softmax
// in float32, weighted sum of values), for heads [h_begin, h_end) of the flattened (b, head)
// range. q: row (b, t) at q + (b * T + t) * q_row_stride, heads of hd contiguous; k, v:
// [B, nkv, cap, hd]; mask: [B, T, S] bytes, nonzero = may attend (S = keys in the cache);
// out: [B, T, nh * hd]. Query head h reads K/V head h / (nh / nkv).
// Copies the K and V heads of rows (b, t) (at src + (b * T + t) * row_stride, K heads then
// V heads, nkv * hd elements each) into caches [B, nkv, cap, hd] at position past + t.
void append_kv(Elem t, const void* k_src, const void* v_src, int64_t row_stride, int64_t B, int64_t T, int64_t nkv,
               int64_t hd, void* k_cache, void* v_cache, int64_t cap, int64_t past);

// out[r, i] = silu(gate_up[r, i]) * gate_up[r, I + i] for rows r < M, i < I, each op rounded
// to the element type as the reference does. gate_up: [M, 2I]; out: [M, I].
void swiglu(Elem t, const void* gate_up, void* out, int64_t M, int64_t I);

bool attention_kernel_supports(int64_t hd);  // AVX2 at least, hd a multiple of 8 up to 256
struct AttentionShape {
  int64_t B, T, S, cap, nh, nkv, hd, q_row_stride;
};
void attention(Elem t, const AttentionShape& s, const void* q, const void* k, const void* v, const uint8_t* mask,
               void* out, int64_t h_begin, int64_t h_end);

}  // namespace rlhf::cpu
