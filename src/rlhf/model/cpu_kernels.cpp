#include "rlhf/model/cpu_kernels.h"

#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

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

namespace {

float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t f32_to_bf16(float f) {  // round to nearest even; NaN stays NaN
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
// A value as the element type holds it (rounds for BF16).
float as_elem(Elem t, float v) { return t == Elem::BF16 ? bf16_to_f32(f32_to_bf16(v)) : v; }
float load(Elem t, const void* p, int64_t i) {
  return t == Elem::BF16 ? bf16_to_f32(static_cast<const uint16_t*>(p)[i]) : static_cast<const float*>(p)[i];
}
void store(Elem t, void* p, int64_t i, float v) {
  if (t == Elem::BF16) static_cast<uint16_t*>(p)[i] = f32_to_bf16(v);
  else static_cast<float*>(p)[i] = v;
}

}  // namespace

void rms_norm(Elem t, const void* x, const void* w, void* out, int64_t M, int64_t H, double eps) {
  for (int64_t m = 0; m < M; ++m) {
    float ss = 0;
    for (int64_t i = 0; i < H; ++i) {
      const float v = load(t, x, m * H + i);
      ss += v * v;
    }
    const float r = 1.0f / std::sqrt(ss / static_cast<float>(H) + static_cast<float>(eps));
    for (int64_t i = 0; i < H; ++i)
      store(t, out, m * H + i, load(t, w, i) * as_elem(t, load(t, x, m * H + i) * r));
  }
}

void rotary(Elem t, void* data, int64_t rows, int64_t row_stride, int64_t heads, int64_t hd, const int64_t* pos,
            const float* inv_freq) {
  const int64_t half = hd / 2;
  std::vector<float> cos(half), sin(half);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(pos[r]) * inv_freq[i];
      cos[i] = as_elem(t, std::cos(angle));
      sin[i] = as_elem(t, std::sin(angle));
    }
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t base = r * row_stride + h * hd;
      for (int64_t i = 0; i < half; ++i) {
        const float a = load(t, data, base + i), b = load(t, data, base + half + i);
        // x * cos + rotate_half(x) * sin, each product rounded to the element type first
        store(t, data, base + i, as_elem(t, a * cos[i]) + as_elem(t, -b * sin[i]));
        store(t, data, base + half + i, as_elem(t, b * cos[i]) + as_elem(t, a * sin[i]));
      }
    }
  }
}

namespace {

constexpr int64_t kMaxHeadDim = 256;

// dot(q, row) and acc += p * row over hd elements, V lanes at a time (hd % V == 0).
template <int V, bool BF16>
[[gnu::always_inline]] inline void attention_rows(const AttentionShape& s, const void* qv, const void* kv,
                                                  const void* vv, const uint8_t* mask, void* outv, int64_t h_begin,
                                                  int64_t h_end) {
  using vf = typename Vec<V>::f;
  using vh = typename Vec<V>::h;
  using vu = typename Vec<V>::u;
  using E = std::conditional_t<BF16, uint16_t, float>;
  const E* q = static_cast<const E*>(qv);
  const E* k = static_cast<const E*>(kv);
  const E* v = static_cast<const E*>(vv);
  E* out = static_cast<E*>(outv);
  auto load_v = [](const E* p) {
    vf r;
    if constexpr (BF16) {
      vh h;
      std::memcpy(&h, p, sizeof h);
      vu u = __builtin_convertvector(h, vu) << 16;
      std::memcpy(&r, &u, sizeof r);
    } else {
      std::memcpy(&r, p, sizeof r);
    }
    return r;
  };
  const int64_t group = s.nh / s.nkv, nvec = s.hd / V;
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.hd));
  std::vector<float> scores(s.S);
  vf qreg[kMaxHeadDim / V], acc[kMaxHeadDim / V];  // stack arrays keep the vector alignment
  for (int64_t bh = h_begin; bh < h_end; ++bh) {
    const int64_t b = bh / s.nh, h = bh % s.nh, kvh = h / group;
    const E* kb = k + (b * s.nkv + kvh) * s.cap * s.hd;
    const E* vb = v + (b * s.nkv + kvh) * s.cap * s.hd;
    for (int64_t t = 0; t < s.T; ++t) {
      const E* qr = q + (b * s.T + t) * s.q_row_stride + h * s.hd;
      for (int64_t i = 0; i < nvec; ++i) qreg[i] = load_v(qr + i * V);
      const uint8_t* mrow = mask + (b * s.T + t) * s.S;
      float mx = -INFINITY;
      for (int64_t j = 0; j < s.S; ++j) {
        if (!mrow[j]) {
          scores[j] = -INFINITY;
          continue;
        }
        vf d{};
        for (int64_t i = 0; i < nvec; ++i) d += qreg[i] * load_v(kb + j * s.hd + i * V);
        float sc = 0;
        for (int l = 0; l < V; ++l) sc += d[l];
        scores[j] = sc * scale;
        mx = sc * scale > mx ? sc * scale : mx;
      }
      float sum = 0;
      for (int64_t i = 0; i < nvec; ++i) acc[i] = vf{};
      for (int64_t j = 0; j < s.S; ++j) {
        if (scores[j] == -INFINITY) continue;
        const float p = std::exp(scores[j] - mx);
        sum += p;
        for (int64_t i = 0; i < nvec; ++i) acc[i] += p * load_v(vb + j * s.hd + i * V);
      }
      E* o = out + (b * s.T + t) * s.nh * s.hd + h * s.hd;
      const float inv = sum > 0 ? 1.0f / sum : 0.0f;
      for (int64_t i = 0; i < nvec; ++i) {
        vf r = acc[i] * inv;
        for (int l = 0; l < V; ++l) {
          if constexpr (BF16) o[i * V + l] = f32_to_bf16(r[l]);
          else o[i * V + l] = r[l];
        }
      }
    }
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,fma")))
void attention_avx512(bool bf16, const AttentionShape& s, const void* q, const void* k, const void* v,
                      const uint8_t* mask, void* out, int64_t b, int64_t e) {
  if (bf16) attention_rows<16, true>(s, q, k, v, mask, out, b, e);
  else attention_rows<16, false>(s, q, k, v, mask, out, b, e);
}
__attribute__((target("avx2,fma")))
void attention_avx2(bool bf16, const AttentionShape& s, const void* q, const void* k, const void* v,
                    const uint8_t* mask, void* out, int64_t b, int64_t e) {
  if (bf16) attention_rows<8, true>(s, q, k, v, mask, out, b, e);
  else attention_rows<8, false>(s, q, k, v, mask, out, b, e);
}

}  // namespace

void append_kv(Elem t, const void* k_src, const void* v_src, int64_t row_stride, int64_t B, int64_t T, int64_t nkv,
               int64_t hd, void* k_cache, void* v_cache, int64_t cap, int64_t past) {
  const size_t es = t == Elem::BF16 ? 2 : 4, head_bytes = static_cast<size_t>(hd) * es;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < T; ++i) {
      const int64_t row = (b * T + i) * row_stride;
      for (int64_t h = 0; h < nkv; ++h) {
        const int64_t dst = ((b * nkv + h) * cap + past + i) * hd;
        std::memcpy(static_cast<char*>(k_cache) + dst * es, static_cast<const char*>(k_src) + (row + h * hd) * es, head_bytes);
        std::memcpy(static_cast<char*>(v_cache) + dst * es, static_cast<const char*>(v_src) + (row + h * hd) * es, head_bytes);
      }
    }
}

void swiglu(Elem t, const void* gate_up, void* out, int64_t M, int64_t I) {
  for (int64_t r = 0; r < M; ++r)
    for (int64_t i = 0; i < I; ++i) {
      const float g = load(t, gate_up, r * 2 * I + i), u = load(t, gate_up, r * 2 * I + I + i);
      store(t, out, r * I + i, as_elem(t, g / (1.0f + std::exp(-g))) * u);
    }
}

bool attention_kernel_supports(int64_t hd) {
  return linear_kernels_available() && hd % 8 == 0 && hd <= kMaxHeadDim;
}

void attention(Elem t, const AttentionShape& s, const void* q, const void* k, const void* v, const uint8_t* mask,
               void* out, int64_t h_begin, int64_t h_end) {
  const bool bf16 = t == Elem::BF16;
  if (has_avx512() && s.hd % 16 == 0) attention_avx512(bf16, s, q, k, v, mask, out, h_begin, h_end);
  else attention_avx2(bf16, s, q, k, v, mask, out, h_begin, h_end);
}

}  // namespace rlhf::cpu
