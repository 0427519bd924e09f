// CPU kernels for y = x · Wᵀ when x has few rows (decoding: one row per sequence). Such a
// product streams the whole weight matrix once and is bound by memory bandwidth; these
// kernels read each weight row once for all rows of x, in fp32 or straight from bf16 (half
// the bytes), with AVX-512 or AVX2 chosen at run time. The caller splits [n_begin, n_end)
// across threads.
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

}  // namespace rlhf::cpu
