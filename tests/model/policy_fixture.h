// What the RL tuning tests share: a tiny base model, a reward model on it trained to like
// lowercase letters, and prompts of the same form (make_fixture); or the model and prompts
// alone, for rule rewards (make_rule_fixture).
#pragma once
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "model/tiny_model.h"
#include "rlhf/train/reward_trainer.h"
#include "test_util.h"

namespace rlhf::testing {

namespace fs = std::filesystem;
using nlohmann::json;

// Preference pairs whose chosen completion (8 characters) holds more lowercase letters than the
// rejected one; the rest are digits and punctuation. A reward model trained on them gives a
// random tiny policy's samples scores that vary with what it writes, which PPO then raises.
inline void write_letter_preferences(const fs::path& path, int rows, uint32_t seed) {
  std::mt19937 rng(seed);
  const std::string others = "0123456789!?*+=%#@;:";
  auto completion = [&](int letters) {
    std::string s(8, ' ');
    std::vector<int> slots(8);
    std::iota(slots.begin(), slots.end(), 0);
    std::shuffle(slots.begin(), slots.end(), rng);
    for (int i = 0; i < 8; ++i)
      s[slots[i]] = i < letters ? static_cast<char>('a' + rng() % 26) : others[rng() % others.size()];
    return s;
  };
  std::ofstream f(path);
  for (int i = 0; i < rows; ++i) {
    const int good = 3 + static_cast<int>(rng() % 6), bad = static_cast<int>(rng() % (good - 1));
    const int choice = static_cast<int>(rng() % 2);
    std::string prompt = "say " + std::to_string(rng() % 1000) + ":";
    json j = {{"input_text", prompt},
              {"candidate_0", choice == 0 ? completion(good) : completion(bad)},
              {"candidate_1", choice == 1 ? completion(good) : completion(bad)},
              {"choice", choice}};
    f << j.dump() << "\n";
  }
}

// A tiny base model, a reward model on it that likes lowercase letters, and prompts of the same form.
struct Fixture {
  fs::path dir, model, rm, prompts;
};

inline Fixture make_fixture(int rm_steps) {
  torch::set_num_threads(1);  // tiny tensors: one thread is fastest and repeats exactly
  Fixture f;
  f.dir = rlhf::testing::scratch_dir();
  f.model = f.dir / "model";
  f.rm = f.dir / "rm";
  f.prompts = f.dir / "prompts.jsonl";
  rlhf::testing::write_tiny_hf_model(f.model);
  write_letter_preferences(f.dir / "prefs.jsonl", 400, 3);
  rlhf::RewardTrainConfig c;
  c.preference_dataset = (f.dir / "prefs.jsonl").string();
  c.large_model_reference = f.model.string();
  c.output = f.rm.string();
  c.train_steps = rm_steps;
  c.batch_size = 16;
  c.micro_batch_size = 16;
  c.learning_rate_multiplier = 50;
  c.prompt_sequence_length = 32;
  c.target_sequence_length = 12;
  c.validation_every = 0;
  c.checkpoint_every = 1000;
  c.progress = false;
  c.dtype = "fp32";  // bf16 rounding differs between AMX and AVX512-BF16 kernels, and the tests' learning curves with it
  rlhf::train_reward_model(c);
  std::ofstream p(f.prompts);
  for (auto& row : read_jsonl(f.dir / "prefs.jsonl")) p << json{{"input_text", row["input_text"]}}.dump() << "\n";
  return f;
}

// The tiny base model and 64 prompts "say N:" with an "answer" field; no reward model.
inline Fixture make_rule_fixture() {
  torch::set_num_threads(1);
  Fixture f;
  f.dir = rlhf::testing::scratch_dir();
  f.model = f.dir / "model";
  f.prompts = f.dir / "prompts.jsonl";
  rlhf::testing::write_tiny_hf_model(f.model);
  std::ofstream p(f.prompts);
  for (int i = 0; i < 64; ++i)
    p << json{{"input_text", "say " + std::to_string(i * 37 % 1000) + ":"}, {"answer", std::to_string(i)}}.dump() << "\n";
  return f;
}

}  // namespace rlhf::testing
