// The CPU linear kernels against a plain double-precision loop, for every tile shape.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "rlhf/model/cpu_kernels.h"

namespace rlhf {
namespace {

uint16_t to_bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>(u >> 16);  // truncation is fine: the reference uses the same bits
}
float from_bf16_bits(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(CpuLinear, MatchesAPlainLoopForAllShapes) {
  if (!cpu::linear_kernels_available()) GTEST_SKIP() << "CPU without AVX2/FMA: kernels unused";
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  for (int64_t M : {1, 2, 3, 4, 5, 7, 16}) {
    for (int64_t K : {16, 37, 64, 576}) {
      for (int64_t N : {1, 3, 4, 9, 33}) {
        std::vector<float> x(M * K), w(N * K), y(M * N + 5, -1.0f), yb(M * N + 5, -1.0f);
        std::vector<uint16_t> wb(N * K);
        for (auto& v : x) v = nd(rng);
        for (size_t i = 0; i < w.size(); ++i) {
          wb[i] = to_bf16_bits(nd(rng));
          w[i] = from_bf16_bits(wb[i]);
        }
        // Two ranges, as two threads would split them.
        const int64_t mid = N / 2;
        cpu::linear_rows_f32(x.data(), M, K, w.data(), y.data(), N, 0, mid);
        cpu::linear_rows_f32(x.data(), M, K, w.data(), y.data(), N, mid, N);
        cpu::linear_rows_bf16(x.data(), M, K, wb.data(), yb.data(), N, 0, N);
        // The dot kernel takes x in bf16 too: compare it with x rounded so.
        std::vector<uint16_t> xb(M * K);
        std::vector<float> xr(M * K), yd(M * N, -1.0f);
        for (size_t i = 0; i < x.size(); ++i) xr[i] = from_bf16_bits(xb[i] = to_bf16_bits(x[i]));
        const bool dot = cpu::bf16_dot_available();
        if (dot) cpu::linear_rows_bf16_dot(xb.data(), M, K, wb.data(), yd.data(), N, 0, N);
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < N; ++n) {
            double ref = 0, ref_r = 0;
            for (int64_t k = 0; k < K; ++k) {
              ref += double(x[m * K + k]) * w[n * K + k];
              ref_r += double(xr[m * K + k]) * w[n * K + k];
            }
            const double tol = 1e-4 * std::sqrt(double(K));
            ASSERT_NEAR(y[m * N + n], ref, tol) << "f32 M=" << M << " K=" << K << " N=" << N << " at " << m << "," << n;
            ASSERT_NEAR(yb[m * N + n], ref, tol) << "bf16 M=" << M << " K=" << K << " N=" << N;
            if (dot) ASSERT_NEAR(yd[m * N + n], ref_r, tol) << "bf16 dot M=" << M << " K=" << K << " N=" << N;
          }
        EXPECT_EQ(y[M * N], -1.0f) << "wrote past the output";
      }
    }
  }
}

}  // namespace
}  // namespace rlhf
