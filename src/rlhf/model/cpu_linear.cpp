#include "rlhf/model/cpu_linear.h"

#include <immintrin.h>

#include <cstring>

namespace rlhf::cpu {

namespace {

// Vector types by lane count (GCC vector extensions; the target attribute of the calling
// kernel decides the instructions).
template <int V> struct Vec;
template <> struct Vec<16> {
  typedef float f __attribute__((vector_size(64)));
  typedef uint16_t h __attribute__((vector_size(32)));
  typedef uint32_t u __attribute__((vector_size(64)));
};
template <> struct Vec<8> {
  typedef float f __attribute__((vector_size(32)));
  typedef uint16_t h __attribute__((vector_size(16)));
  typedef uint32_t u __attribute__((vector_size(32)));
};
typedef float f4 __attribute__((vector_size(16)));

// Sum of the lanes, by halving.
[[gnu::always_inline]] inline float hsum(Vec<8>::f v) {
  f4 a = __builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7);
  return (a[0] + a[2]) + (a[1] + a[3]);
}
[[gnu::always_inline]] inline float hsum(Vec<16>::f v) {
  Vec<8>::f a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  return hsum(a);
}

// One register tile: NT weight rows by MT rows of x, V lanes wide, accumulated over K.
// Everything vector-typed stays local so that the code is generated for the caller's target.
template <int V, int MT, bool BF16, class WT>
[[gnu::always_inline]] inline void tile(const float* x, int64_t K, const WT* w, int64_t n, int64_t n_rows,
                                        float* y, int64_t ldy) {
  using vf = typename Vec<V>::f;
  using vh = typename Vec<V>::h;
  using vu = typename Vec<V>::u;
  constexpr int NT = 4;
  vf acc[MT][NT];
#pragma GCC unroll 4
  for (int m = 0; m < MT; ++m)
#pragma GCC unroll 4
    for (int j = 0; j < NT; ++j) acc[m][j] = vf{};
  const WT* wr[NT];
#pragma GCC unroll 4
  for (int j = 0; j < NT; ++j) wr[j] = w + (n + (j < n_rows ? j : 0)) * K;  // short tile: repeat row n

  int64_t k = 0;
  for (; k + V <= K; k += V) {
    vf wv[NT];
#pragma GCC unroll 4
    for (int j = 0; j < NT; ++j) {
      if constexpr (BF16) {
        vh h;
        std::memcpy(&h, wr[j] + k, sizeof h);
        vu u = __builtin_convertvector(h, vu) << 16;  // bf16 bits are the top half of an fp32
        std::memcpy(&wv[j], &u, sizeof u);
      } else {
        std::memcpy(&wv[j], wr[j] + k, sizeof(vf));
      }
    }
#pragma GCC unroll 4
    for (int m = 0; m < MT; ++m) {
      vf xv;
      std::memcpy(&xv, x + m * K + k, sizeof xv);
#pragma GCC unroll 4
      for (int j = 0; j < NT; ++j) acc[m][j] += xv * wv[j];
    }
  }
#pragma GCC unroll 4
  for (int m = 0; m < MT; ++m) {
#pragma GCC unroll 4
    for (int j = 0; j < NT; ++j) {
      if (j >= n_rows) break;
      float s = hsum(acc[m][j]);
      for (int64_t kk = k; kk < K; ++kk) {  // tail of K not a multiple of V
        float wk;
        if constexpr (BF16) {
          uint32_t u = static_cast<uint32_t>(wr[j][kk]) << 16;
          std::memcpy(&wk, &u, 4);
        } else {
          wk = wr[j][kk];
        }
        s += x[m * K + kk] * wk;
      }
      y[m * ldy + n + j] = s;
    }
  }
}

template <int V, bool BF16, class WT>
[[gnu::always_inline]] inline void rows(const float* x, int64_t M, int64_t K, const WT* w, float* y, int64_t ldy,
                                        int64_t n_begin, int64_t n_end) {
  for (int64_t n = n_begin; n < n_end; n += 4) {
    const int64_t nr = n_end - n < 4 ? n_end - n : 4;
    int64_t m = 0;
    for (; m + 4 <= M; m += 4) tile<V, 4, BF16>(x + m * K, K, w, n, nr, y + m * ldy, ldy);
    switch (M - m) {
      case 3: tile<V, 3, BF16>(x + m * K, K, w, n, nr, y + m * ldy, ldy); break;
      case 2: tile<V, 2, BF16>(x + m * K, K, w, n, nr, y + m * ldy, ldy); break;
      case 1: tile<V, 1, BF16>(x + m * K, K, w, n, nr, y + m * ldy, ldy); break;
      default: break;
    }
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,fma")))
void f32_avx512(const float* x, int64_t M, int64_t K, const float* w, float* y, int64_t ldy, int64_t b, int64_t e) {
  rows<16, false>(x, M, K, w, y, ldy, b, e);
}
__attribute__((target("avx2,fma")))
void f32_avx2(const float* x, int64_t M, int64_t K, const float* w, float* y, int64_t ldy, int64_t b, int64_t e) {
  rows<8, false>(x, M, K, w, y, ldy, b, e);
}
__attribute__((target("avx512f,avx512bw,avx512vl,fma")))
void bf16_avx512(const float* x, int64_t M, int64_t K, const uint16_t* w, float* y, int64_t ldy, int64_t b, int64_t e) {
  rows<16, true>(x, M, K, w, y, ldy, b, e);
}
__attribute__((target("avx2,fma")))
void bf16_avx2(const float* x, int64_t M, int64_t K, const uint16_t* w, float* y, int64_t ldy, int64_t b, int64_t e) {
  rows<8, true>(x, M, K, w, y, ldy, b, e);
}

// Tile of NT weight rows by MT x rows, 32 bf16 pairs per instruction; the K tail is loaded
// masked (zeros contribute nothing).
template <int MT>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma")))
[[gnu::always_inline]] inline void tile_dot(const uint16_t* x, int64_t K, const uint16_t* w, int64_t n,
                                            int64_t n_rows, float* y, int64_t ldy) {
  constexpr int NT = 4;
  __m512 acc[MT][NT];
#pragma GCC unroll 4
  for (int m = 0; m < MT; ++m)
#pragma GCC unroll 4
    for (int j = 0; j < NT; ++j) acc[m][j] = _mm512_setzero_ps();
  const uint16_t* wr[NT];
#pragma GCC unroll 4
  for (int j = 0; j < NT; ++j) wr[j] = w + (n + (j < n_rows ? j : 0)) * K;
  for (int64_t k = 0; k < K; k += 32) {
    const __mmask32 mask = K - k >= 32 ? ~__mmask32(0) : (__mmask32(1) << (K - k)) - 1;
    __m512bh wv[NT];
#pragma GCC unroll 4
    for (int j = 0; j < NT; ++j) wv[j] = (__m512bh)_mm512_maskz_loadu_epi16(mask, wr[j] + k);
#pragma GCC unroll 4
    for (int m = 0; m < MT; ++m) {
      const __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(mask, x + m * K + k);
#pragma GCC unroll 4
      for (int j = 0; j < NT; ++j) acc[m][j] = _mm512_dpbf16_ps(acc[m][j], xv, wv[j]);
    }
  }
#pragma GCC unroll 4
  for (int m = 0; m < MT; ++m)
#pragma GCC unroll 4
    for (int j = 0; j < NT; ++j)
      if (j < n_rows) y[m * ldy + n + j] = _mm512_reduce_add_ps(acc[m][j]);
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma")))
void bf16_dot_avx512(const uint16_t* x, int64_t M, int64_t K, const uint16_t* w, float* y, int64_t ldy,
                     int64_t b, int64_t e) {
  for (int64_t n = b; n < e; n += 4) {
    const int64_t nr = e - n < 4 ? e - n : 4;
    int64_t m = 0;
    for (; m + 4 <= M; m += 4) tile_dot<4>(x + m * K, K, w, n, nr, y + m * ldy, ldy);
    switch (M - m) {
      case 3: tile_dot<3>(x + m * K, K, w, n, nr, y + m * ldy, ldy); break;
      case 2: tile_dot<2>(x + m * K, K, w, n, nr, y + m * ldy, ldy); break;
      case 1: tile_dot<1>(x + m * K, K, w, n, nr, y + m * ldy, ldy); break;
      default: break;
    }
  }
}

bool has_avx512() {
  static const bool v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
  return v;
}

}  // namespace

bool linear_kernels_available() {
  static const bool v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return v;
}

bool bf16_dot_available() {
  static const bool v = has_avx512() && __builtin_cpu_supports("avx512bf16");
  return v;
}

void linear_rows_bf16_dot(const uint16_t* x, int64_t M, int64_t K, const uint16_t* w, float* y, int64_t ldy,
                          int64_t n_begin, int64_t n_end) {
  bf16_dot_avx512(x, M, K, w, y, ldy, n_begin, n_end);
}

void linear_rows_f32(const float* x, int64_t M, int64_t K, const float* w, float* y, int64_t ldy,
                     int64_t n_begin, int64_t n_end) {
  if (has_avx512()) f32_avx512(x, M, K, w, y, ldy, n_begin, n_end);
  else f32_avx2(x, M, K, w, y, ldy, n_begin, n_end);
}

void linear_rows_bf16(const float* x, int64_t M, int64_t K, const uint16_t* w, float* y, int64_t ldy,
                      int64_t n_begin, int64_t n_end) {
  if (has_avx512()) bf16_avx512(x, M, K, w, y, ldy, n_begin, n_end);
  else bf16_avx2(x, M, K, w, y, ldy, n_begin, n_end);
}

}  // namespace rlhf::cpu
