// Comparing trained outputs: the largest absolute difference between the tensors of two
// safetensors files with the same names (a missing name fails the test).
#pragma once
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include "rlhf/train/tensor_file.h"

namespace rlhf::testing {

// max |a - b| over the tensors of DIR_A/file and DIR_B/file.
inline double max_tensor_difference(const std::filesystem::path& a, const std::filesystem::path& b,
                                    const std::string& file = "adapter_model.safetensors") {
  auto wa = rlhf::load_tensors((a / file).string());
  auto wb = rlhf::load_tensors((b / file).string());
  EXPECT_EQ(wa.size(), wb.size()) << file;
  double d = 0;
  for (const auto& [name, t] : wa) {
    if (!wb.count(name)) {
      ADD_FAILURE() << name << " is missing from " << (b / file);
      continue;
    }
    d = std::max(d, (t - wb.at(name)).abs().max().item<double>());
  }
  return d;
}

}  // namespace rlhf::testing
