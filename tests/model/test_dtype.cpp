// --dtype auto: which dtype a device and a CPU's bf16 features get, the lines printed about it,
// and a model loaded with it.
#include <gtest/gtest.h>

#include "rlhf/model/model.h"
#include "rlhf/util/error.h"
#include "tiny_model.h"

namespace {

using rlhf::CpuFeatures;
using rlhf::resolve_dtype;

const CpuFeatures kPlainCpu{};                                      // AVX2-only: neither feature
const CpuFeatures kAvx512Bf16{.avx512_bf16 = true, .amx_bf16 = false};
const CpuFeatures kAmx{.avx512_bf16 = true, .amx_bf16 = true};

TEST(Dtype, AutoOnACpuWithoutBf16IsFp32) {
  const auto c = resolve_dtype("auto", torch::kCPU, kPlainCpu);
  EXPECT_EQ(c.dtype, torch::kFloat32);
  EXPECT_EQ(c.note, "[rlhf] dtype auto: fp32 (this CPU has no AVX512-BF16/AMX)");
}

TEST(Dtype, AutoOnACpuWithAvx512Bf16IsBf16) {
  const auto c = resolve_dtype("auto", torch::kCPU, kAvx512Bf16);
  EXPECT_EQ(c.dtype, torch::kBFloat16);
  EXPECT_EQ(c.note, "[rlhf] dtype auto: bf16 (this CPU has AVX512-BF16)");
}

TEST(Dtype, AutoOnACpuWithAmxIsBf16) {
  const auto c = resolve_dtype("auto", torch::kCPU, kAmx);
  EXPECT_EQ(c.dtype, torch::kBFloat16);
  EXPECT_EQ(c.note, "[rlhf] dtype auto: bf16 (this CPU has AMX-BF16)");
  EXPECT_EQ(resolve_dtype("auto", torch::kCPU, CpuFeatures{.avx512_bf16 = false, .amx_bf16 = true}).dtype,
            torch::kBFloat16);
}

TEST(Dtype, AutoOnCudaIsBf16WhateverTheCpu) {
  // A pure choice: no GPU is touched, so this runs on any machine.
  const auto c = resolve_dtype("auto", torch::Device(torch::kCUDA, 0), kPlainCpu);
  EXPECT_EQ(c.dtype, torch::kBFloat16);
  EXPECT_EQ(c.note, "[rlhf] dtype auto: bf16 (a CUDA device)");
  EXPECT_EQ(resolve_dtype("fp32", torch::Device(torch::kCUDA, 0), kPlainCpu).dtype, torch::kFloat32);
}

TEST(Dtype, ExplicitBf16OnACpuWithoutBf16WarnsAndKeepsBf16) {
  const auto c = resolve_dtype("bf16", torch::kCPU, kPlainCpu);
  EXPECT_EQ(c.dtype, torch::kBFloat16);
  EXPECT_EQ(c.note,
            "[rlhf] warning: --dtype bf16 on a CPU without AVX512-BF16 or AMX: bf16 matmuls run far slower than "
            "fp32 here; --dtype auto or fp32 is faster");
  EXPECT_EQ(resolve_dtype("bfloat16", torch::kCPU, kPlainCpu).note, c.note);
}

TEST(Dtype, ExplicitChoicesWithTheFeaturesSayNothing) {
  EXPECT_EQ(resolve_dtype("bf16", torch::kCPU, kAvx512Bf16).note, "");
  EXPECT_EQ(resolve_dtype("bf16", torch::kCPU, kAmx).note, "");
  const auto fp32 = resolve_dtype("fp32", torch::kCPU, kAmx);
  EXPECT_EQ(fp32.dtype, torch::kFloat32);
  EXPECT_EQ(fp32.note, "");
  EXPECT_EQ(resolve_dtype("fp16", torch::kCPU, kPlainCpu).dtype, torch::kFloat16);
}

TEST(Dtype, UnknownNamesAreRefusedNamingTheChoices) {
  try {
    resolve_dtype("int8", torch::kCPU, kAmx);
    FAIL() << "int8 accepted";
  } catch (const rlhf::Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown dtype 'int8' (auto, fp32, bf16, fp16)"), std::string::npos)
        << e.what();
  }
}

TEST(Dtype, NamesRoundTripThroughParse) {
  for (const char* name : {"auto", "fp32", "bf16", "fp16"})
    EXPECT_STREQ(rlhf::dtype_name(rlhf::parse_dtype(name)), name);
}

TEST(Dtype, AutoLoadsTheModelInWhatThisMachineResolvesTo) {
  torch::set_num_threads(1);
  const auto dir = rlhf::testing::scratch_dir() / "model";
  rlhf::testing::write_tiny_hf_model(dir);
  const auto expected = resolve_dtype("auto", torch::kCPU, rlhf::detect_cpu_features()).dtype;
  testing::internal::CaptureStderr();
  auto m = rlhf::load_model(dir.string(), {rlhf::parse_dtype("auto"), torch::kCPU});
  auto again = rlhf::load_model(dir.string(), {rlhf::parse_dtype("auto"), torch::kCPU});
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(m->net->dtype(), expected);
  EXPECT_EQ(again->net->dtype(), expected);
  // Said once per process, however many models are loaded (an earlier test in this process
  // may already have said it).
  const auto first = err.find("[rlhf] dtype auto: ");
  if (first != std::string::npos) EXPECT_EQ(err.find("[rlhf] dtype auto: ", first + 1), std::string::npos) << err;
}

}  // namespace
