// ggml block formats: layouts and dequantization to F32. Each block is read byte by byte
// (little-endian), so no struct packing or host alignment is assumed.
#include <algorithm>
#include <cstring>
#include <system_error>
#include <thread>
#include <vector>

#include "rlhf/model/gguf.h"
#include "rlhf/util/error.h"

namespace rlhf::gguf {
namespace {

float half_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000 | (mant << 13);  // inf / nan
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal: normalize
    int e = -1;
    do {
      mant <<= 1;
      ++e;
    } while ((mant & 0x400) == 0);
    bits = sign | (uint32_t(112 - e) << 23) | ((mant & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float read_half(const uint8_t* p) { return half_to_float(uint16_t(p[0] | (p[1] << 8))); }

uint32_t read_u32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

// Plain types, one element per "block".
void block_f32(const uint8_t* b, float* y) { std::memcpy(y, b, 4); }
void block_f16(const uint8_t* b, float* y) { *y = read_half(b); }
void block_bf16(const uint8_t* b, float* y) {
  uint32_t bits = uint32_t(b[0] | (b[1] << 8)) << 16;
  std::memcpy(y, &bits, 4);
}

// Q8_0: d, qs[32] (int8). y = q * d.
void block_q8_0(const uint8_t* b, float* y) {
  const float d = read_half(b);
  const auto* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < 32; ++j) y[j] = float(qs[j]) * d;
}

// Q4_0: d, qs[16]. Low nibbles are elements 0..15, high nibbles 16..31. y = (q - 8) * d.
void block_q4_0(const uint8_t* b, float* y) {
  const float d = read_half(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = float((qs[j] & 0x0f) - 8) * d;
    y[j + 16] = float((qs[j] >> 4) - 8) * d;
  }
}

// Q4_1: d, m, qs[16]. y = q * d + m.
void block_q4_1(const uint8_t* b, float* y) {
  const float d = read_half(b);
  const float m = read_half(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = float(qs[j] & 0x0f) * d + m;
    y[j + 16] = float(qs[j] >> 4) * d + m;
  }
}

// Q5_0: d, qh (u32: bit j is the fifth bit of element j), qs[16]. y = (q - 16) * d.
void block_q5_0(const uint8_t* b, float* y) {
  const float d = read_half(b);
  const uint32_t qh = read_u32(b + 2);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    const int x0 = int((qs[j] & 0x0f) | (((qh >> j) & 1) << 4)) - 16;
    const int x1 = int((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16;
    y[j] = float(x0) * d;
    y[j + 16] = float(x1) * d;
  }
}

// Q5_1: d, m, qh, qs[16]. y = q * d + m.
void block_q5_1(const uint8_t* b, float* y) {
  const float d = read_half(b);
  const float m = read_half(b + 2);
  const uint32_t qh = read_u32(b + 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 16; ++j) {
    const int x0 = int((qs[j] & 0x0f) | (((qh >> j) & 1) << 4));
    const int x1 = int((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
    y[j] = float(x0) * d + m;
    y[j + 16] = float(x1) * d + m;
  }
}

// Q4_K: d, dmin, scales[12] (eight 6-bit scales and eight 6-bit mins), qs[128]. Eight
// sub-blocks of 32; sub-block pair (2i, 2i+1) shares 32 bytes of qs (low, then high nibbles).
void scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

void block_q4_k(const uint8_t* b, float* y) {
  const float d = read_half(b);
  const float dmin = read_half(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  for (int i = 0; i < 4; ++i) {
    uint8_t sc, m;
    scale_min_k4(2 * i, scales, &sc, &m);
    const float d1 = d * float(sc), m1 = dmin * float(m);
    scale_min_k4(2 * i + 1, scales, &sc, &m);
    const float d2 = d * float(sc), m2 = dmin * float(m);
    for (int l = 0; l < 32; ++l) y[l] = d1 * float(q[l] & 0x0f) - m1;
    for (int l = 0; l < 32; ++l) y[l + 32] = d2 * float(q[l] >> 4) - m2;
    q += 32;
    y += 64;
  }
}

// Q6_K: ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (int8), d. Two halves of
// 128 elements; y = d * scale * (q - 32).
void block_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const auto* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = read_half(b + 208);
  for (int half = 0; half < 2; ++half) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = int((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = int((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * float(sc[is]) * float(q1);
      y[l + 32] = d * float(sc[is + 2]) * float(q2);
      y[l + 64] = d * float(sc[is + 4]) * float(q3);
      y[l + 96] = d * float(sc[is + 6]) * float(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

struct TypeTraits {
  TensorType type;
  const char* name;
  int64_t block_size;   // elements per block
  uint64_t block_bytes;
  void (*block)(const uint8_t*, float*);
};

constexpr TypeTraits kTypes[] = {
    {TensorType::F32, "F32", 1, 4, block_f32},
    {TensorType::F16, "F16", 1, 2, block_f16},
    {TensorType::BF16, "BF16", 1, 2, block_bf16},
    {TensorType::Q8_0, "Q8_0", 32, 34, block_q8_0},
    {TensorType::Q4_0, "Q4_0", 32, 18, block_q4_0},
    {TensorType::Q4_1, "Q4_1", 32, 20, block_q4_1},
    {TensorType::Q5_0, "Q5_0", 32, 22, block_q5_0},
    {TensorType::Q5_1, "Q5_1", 32, 24, block_q5_1},
    {TensorType::Q4_K, "Q4_K", 256, 144, block_q4_k},
    {TensorType::Q6_K, "Q6_K", 256, 210, block_q6_k},
};

const TypeTraits* traits(TensorType t) {
  for (const auto& tt : kTypes)
    if (tt.type == t) return &tt;
  return nullptr;
}

const TypeTraits& require_traits(TensorType t) {
  const TypeTraits* tt = traits(t);
  if (!tt) fail("unsupported GGUF tensor type id {}", static_cast<uint32_t>(t));
  return *tt;
}

}  // namespace

const char* tensor_type_name(TensorType t) {
  const TypeTraits* tt = traits(t);
  return tt ? tt->name : "unknown";
}

int64_t type_block_size(TensorType t) {
  const TypeTraits* tt = traits(t);
  return tt ? tt->block_size : 0;
}

uint64_t type_nbytes(TensorType t, int64_t n) {
  const TypeTraits& tt = require_traits(t);
  if (n < 0 || n % tt.block_size != 0)
    fail("{} elements of type {} are not a whole number of {}-element blocks", n, tt.name,
         tt.block_size);
  uint64_t bytes;
  if (__builtin_mul_overflow(uint64_t(n / tt.block_size), tt.block_bytes, &bytes))
    fail("{} elements of type {} overflow a 64-bit byte count", n, tt.name);
  return bytes;
}

void dequantize(TensorType t, const uint8_t* src, float* dst, int64_t n) {
  const TypeTraits& tt = require_traits(t);
  type_nbytes(t, n);  // validates n
  const int64_t nblocks = n / tt.block_size;
  auto run = [&tt, src, dst](int64_t b0, int64_t b1) {
    const uint8_t* p = src + uint64_t(b0) * tt.block_bytes;
    float* y = dst + b0 * tt.block_size;
    for (int64_t b = b0; b < b1; ++b, p += tt.block_bytes, y += tt.block_size) tt.block(p, y);
  };
  // Large tensors are split into contiguous block ranges, one per hardware thread.
  constexpr int64_t kMinElementsPerThread = int64_t(1) << 18;
  const int64_t by_size = std::max<int64_t>(1, n / kMinElementsPerThread);
  const int64_t n_threads =
      std::min<int64_t>({by_size, std::max<unsigned>(1, std::thread::hardware_concurrency()), nblocks});
  if (n_threads <= 1) {
    run(0, nblocks);
    return;
  }
  std::vector<std::thread> workers;
  workers.reserve(size_t(n_threads - 1));
  const int64_t per = (nblocks + n_threads - 1) / n_threads;
  for (int64_t i = 1; i < n_threads; ++i) {
    const int64_t b0 = std::min(nblocks, i * per), b1 = std::min(nblocks, (i + 1) * per);
    try {
      workers.emplace_back(run, b0, b1);
    } catch (const std::system_error&) {  // no thread to spare: do the range here
      run(b0, b1);
    }
  }
  run(0, std::min(nblocks, per));
  for (auto& w : workers) w.join();
}

}  // namespace rlhf::gguf
