// The reward model: its loss against hand-computed values, scores that do not depend on
// batch composition or padding, the head reading the EOS position, packed pairs equal to
// separate sequences, AdamW against torch's, learning a synthetic preference, and
// train-reward / score through the CLI (resume after kill -9, real data), and steps with a
// non-finite gradient skipped.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "rlhf/model/model.h"
#include "rlhf/train/optim.h"
#include "rlhf/train/reward_model.h"
#include "rlhf/train/reward_trainer.h"
#include "rlhf/train/tensor_file.h"
#include "rlhf/util/error.h"
#include "test_util.h"
#include "tiny_model.h"

namespace {

using rlhf::testing::read_jsonl;

using rlhf::data::PreferencePair;
namespace fs = std::filesystem;

TEST(RewardLoss, MatchesHandComputedValues) {
  auto chosen = torch::tensor({1.0f, -0.5f}), rejected = torch::tensor({0.0f, 0.5f});
  // -log σ(1) = log(1 + e^-1), -log σ(-1) = log(1 + e)
  auto l = rlhf::reward_pair_losses(chosen, rejected);
  EXPECT_NEAR(l[0].item<float>(), 0.3132617, 1e-6);
  EXPECT_NEAR(l[1].item<float>(), 1.3132617, 1e-6);
  auto lm = rlhf::reward_pair_losses(chosen, rejected, /*margin=*/0.5);
  EXPECT_NEAR(lm[0].item<float>(), 0.4740770, 1e-6);   // log(1 + e^-0.5)
  EXPECT_NEAR(lm[1].item<float>(), 1.7014132, 1e-6);   // log(1 + e^1.5)
  auto lc = rlhf::reward_pair_losses(chosen, rejected, 0.0, /*centering=*/0.01);
  EXPECT_NEAR(lc[0].item<float>(), 0.3132617 + 0.01 * 1.0, 1e-6);   // (1 + 0)²
  EXPECT_NEAR(lc[1].item<float>(), 1.3132617 + 0.0, 1e-6);          // (-0.5 + 0.5)²
}

TEST(RewardLoss, LearningRateWarmsUpThenDecaysToZero) {
  EXPECT_DOUBLE_EQ(rlhf::warmup_linear_lr(1.0, 0, 4, 20), 0.25);
  EXPECT_DOUBLE_EQ(rlhf::warmup_linear_lr(1.0, 3, 4, 20), 1.0);
  EXPECT_DOUBLE_EQ(rlhf::warmup_linear_lr(1.0, 4, 4, 20), 1.0);
  EXPECT_DOUBLE_EQ(rlhf::warmup_linear_lr(1.0, 12, 4, 20), 0.5);
  EXPECT_DOUBLE_EQ(rlhf::warmup_linear_lr(1.0, 19, 4, 20), 1.0 / 16);
  EXPECT_DOUBLE_EQ(rlhf::warmup_linear_lr(2.0, 0, 0, 10), 2.0);
}

TEST(RewardLoss, AdamWMatchesTorch) {
  torch::manual_seed(3);
  auto p0 = torch::randn({5, 3});
  auto ours = p0.clone().set_requires_grad(true);
  auto theirs = p0.clone().set_requires_grad(true);
  rlhf::AdamWConfig cfg;
  cfg.weight_decay = 0.01;
  rlhf::AdamW opt({{"w", ours}}, cfg);
  torch::optim::AdamW ref({theirs}, torch::optim::AdamWOptions(0.01).weight_decay(0.01));
  for (int i = 0; i < 5; ++i) {
    auto g = torch::randn({5, 3});
    opt.zero_grad();
    ref.zero_grad();
    ours.mutable_grad() = g.clone();
    theirs.mutable_grad() = g.clone();
    opt.step(0.01);
    ref.step();
  }
  EXPECT_TRUE(torch::allclose(ours, theirs, 1e-6, 1e-6)) << (ours - theirs).abs().max();
}

class RewardModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(0);
    cfg_ = rlhf::testing::tiny_config();
    net_ = std::make_unique<rlhf::Transformer>(cfg_, rlhf::testing::tiny_weights(cfg_), torch::kFloat32, torch::kCPU);
    rm_ = std::make_unique<rlhf::RewardModel>(*net_, rlhf::LoraConfig{}, 1);
    // A trained-looking adapter: B away from zero so the adapter changes the scores.
    torch::NoGradGuard ng;
    for (auto& [name, t] : rm_->parameters())
      if (name.find("lora_B") != std::string::npos) t.normal_(0.0, 0.1);
  }
  std::vector<int32_t> seq(int n, int salt) {
    std::vector<int32_t> s;
    for (int i = 0; i < n; ++i) s.push_back(3 + (i * 7 + salt * 13) % 90);
    return s;
  }
  float score_alone(const std::vector<int32_t>& s) {
    torch::NoGradGuard ng;
    return rm_->score(rlhf::pack_sequences({s}, 0, false, torch::kCPU))[0].item<float>();
  }
  rlhf::ModelConfig cfg_;
  std::unique_ptr<rlhf::Transformer> net_;
  std::unique_ptr<rlhf::RewardModel> rm_;
};

TEST_F(RewardModelTest, ScoreDoesNotDependOnBatchOrPadding) {
  std::vector<std::vector<int32_t>> seqs = {seq(5, 1), seq(17, 2), seq(9, 3), seq(1, 4)};
  std::vector<float> alone;
  for (const auto& s : seqs) alone.push_back(score_alone(s));
  torch::NoGradGuard ng;
  for (bool left : {false, true}) {
    auto batch = rm_->score(rlhf::pack_sequences(seqs, 0, left, torch::kCPU));
    for (size_t i = 0; i < seqs.size(); ++i)
      EXPECT_NEAR(batch[i].item<float>(), alone[i], 1e-5) << "row " << i << (left ? " left" : " right") << "-padded";
    // Another composition: reversed order plus a long neighbour (more padding).
    std::vector<std::vector<int32_t>> other(seqs.rbegin(), seqs.rend());
    other.push_back(seq(40, 9));
    auto b2 = rm_->score(rlhf::pack_sequences(other, 0, left, torch::kCPU));
    for (size_t i = 0; i < seqs.size(); ++i)
      EXPECT_NEAR(b2[seqs.size() - 1 - i].item<float>(), alone[i], 1e-5) << "row " << i;
  }
}

TEST_F(RewardModelTest, HeadReadsTheLastRealToken) {
  auto s = seq(8, 5);
  torch::NoGradGuard ng;
  auto batch = rlhf::pack_sequences({s, seq(12, 6)}, 0, false, torch::kCPU);
  EXPECT_EQ(batch.last[0].item<int64_t>(), 7);
  EXPECT_EQ(batch.last[1].item<int64_t>(), 11);
  // The reward is the head applied to the hidden state at that position.
  rlhf::ForwardArgs args;
  args.tokens = batch.tokens;
  args.positions = batch.positions;
  args.attn_mask = batch.attn_mask;
  args.adapters = {&rm_->adapter()};
  auto hidden = net_->hidden(args);
  auto params = rm_->parameters();
  auto expect = (hidden[0][7].to(torch::kFloat32) * params["score.weight"]).sum() + params["score.bias"][0];
  EXPECT_NEAR(rm_->score(batch)[0].item<float>(), expect.item<float>(), 1e-5);
  // Changing the last token (the EOS) changes the reward; changing padding does not.
  auto changed = s;
  changed.back() = 50;
  EXPECT_GT(std::abs(score_alone(changed) - score_alone(s)), 1e-4);
  auto padded_other = rlhf::pack_sequences({s, seq(12, 6)}, 77, false, torch::kCPU);
  EXPECT_NEAR(rm_->score(padded_other)[0].item<float>(), rm_->score(batch)[0].item<float>(), 1e-5);
}

TEST_F(RewardModelTest, PackedPairsEqualSeparateSequences) {
  // Lengths 17, 32, 7, 4: the first, third and fourth pairs share a row of 32.
  std::vector<PreferencePair> pairs = {{seq(6, 1), seq(4, 2), seq(7, 3), "a:1"},
                                       {seq(11, 4), seq(9, 5), seq(12, 6), "a:2"},
                                       {seq(1, 7), seq(3, 8), seq(3, 9), "a:3"},
                                       {seq(2, 10), seq(1, 11), seq(1, 12), "a:4"}};
  std::vector<const PreferencePair*> ptrs = {&pairs[0], &pairs[1], &pairs[2], &pairs[3]};
  torch::NoGradGuard ng;
  auto packed = rlhf::pack_pairs(ptrs, 0, torch::kCPU);
  auto [rc, rr] = rm_->score_pairs(packed);
  for (size_t i = 0; i < pairs.size(); ++i) {
    auto join = [&](const std::vector<int32_t>& c) {
      auto s = pairs[i].prompt;
      s.insert(s.end(), c.begin(), c.end());
      return s;
    };
    EXPECT_NEAR(rc[i].item<float>(), score_alone(join(pairs[i].chosen)), 1e-5) << "pair " << i;
    EXPECT_NEAR(rr[i].item<float>(), score_alone(join(pairs[i].rejected)), 1e-5) << "pair " << i;
  }
  EXPECT_EQ(packed.real_tokens, 17 + 32 + 7 + 4);
  EXPECT_EQ(packed.tokens.size(0), 2);
  EXPECT_EQ(packed.tokens.size(1), 32);
}

// ---- Training on a tiny model written to disk --------------------------------------------

// Synthetic preferences: the chosen completion carries a '#', the rejected one does not.
TEST(RewardTraining, LearnsASyntheticPreference) {
  auto dir = rlhf::testing::scratch_dir();
  rlhf::testing::write_tiny_hf_model(dir / "model");
  rlhf::testing::write_marker_preferences(dir / "prefs.jsonl", 400, 1);
  rlhf::RewardTrainConfig c;
  c.preference_dataset = (dir / "prefs.jsonl").string();
  c.large_model_reference = (dir / "model").string();
  c.output = (dir / "rm").string();
  c.validation_fraction = 0.2;
  c.train_steps = 60;
  c.batch_size = 16;
  c.micro_batch_size = 8;
  c.learning_rate_multiplier = 50;  // 5e-3: a tiny model learns fast
  c.prompt_sequence_length = 32;
  c.target_sequence_length = 24;
  c.validation_every = 20;
  c.checkpoint_every = 1000;
  c.progress = false;
  c.device = rlhf::testing::test_device();  // RLHF_TEST_DEVICE, the CPU when unset
  auto s = rlhf::train_reward_model(c);
  EXPECT_EQ(s.validation_pairs, 80);
  EXPECT_GT(s.validation_accuracy, 0.95) << "validation loss " << s.validation_loss;
  for (const char* f : {"reward_model.json", "adapter_model.safetensors", "adapter_config.json",
                        "reward_head.safetensors", "summary.json", "logs/metrics.jsonl", "logs/metrics.csv"})
    EXPECT_TRUE(fs::exists(dir / "rm" / f)) << f;
  // Every step logged the seed's metric names.
  auto rows = read_jsonl(dir / "rm/logs/metrics.jsonl");
  int train_rows = 0;
  for (const auto& r : rows)
    if (r.contains("rank_loss")) {
      ++train_rows;
      for (const char* k : {"accuracy", "reward/chosen", "reward/rejected", "reward/margin", "learning_rate",
                            "throughput/pairs_per_second", "throughput/tokens_per_second"})
        EXPECT_TRUE(r.contains(k)) << k;
    }
  EXPECT_EQ(train_rows, 60);
  // The event file holds the same points: `rlhf curves` (our reader) prints one line per step.
  int rc = 0;
  std::string curves = rlhf::testing::capture(rlhf::testing::cli() + " curves " + (dir / "rm/logs").string() +
                                              " --tag rank_loss --tag validation/accuracy", &rc);
  ASSERT_EQ(rc, 0);
  int rank_lines = 0, val_lines = 0;
  std::istringstream lines(curves);
  for (std::string line; std::getline(lines, line);) {
    rank_lines += line.rfind("rank_loss ", 0) == 0;
    val_lines += line.rfind("validation/accuracy ", 0) == 0;
  }
  EXPECT_EQ(rank_lines, 60);
  EXPECT_EQ(val_lines, 3);  // steps 20, 40 and the end

  // The scores of the saved model through the CLI: order kept, and after centring the mean
  // training reward is near 0 while chosen completions outscore rejected ones.
  std::ofstream in(dir / "score.jsonl");
  auto prefs = read_jsonl(dir / "prefs.jsonl");
  for (int i = 0; i < 40; ++i) {
    const auto& p = prefs[i];
    for (int k : {0, 1})
      in << nlohmann::json{{"input_text", p["input_text"]}, {"completion", p["candidate_" + std::to_string(k)]}, {"id", 2 * i + k}}.dump() << "\n";
  }
  in.close();
  rlhf::testing::capture(rlhf::testing::cli() + " score --reward-model " + (dir / "rm").string() + " --input " +
                         (dir / "score.jsonl").string() + " --output " + (dir / "scored.jsonl").string() +
                         " --batch-size 7", &rc, true);
  ASSERT_EQ(rc, 0);
  auto scored = read_jsonl(dir / "scored.jsonl");
  ASSERT_EQ(scored.size(), 80u);
  double sum = 0;
  int right = 0;
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(scored[2 * i]["id"], 2 * i);
    const int choice = prefs[i]["choice"];
    double r0 = scored[2 * i]["reward"], r1 = scored[2 * i + 1]["reward"];
    right += (choice == 0 ? r0 > r1 : r1 > r0);
    sum += r0 + r1;
  }
  EXPECT_GE(right, 38);
  EXPECT_LT(std::abs(sum / 80), 1.0);
}

std::string train_cmd(const fs::path& dir, const std::string& out, int steps) {
  return rlhf::testing::cli() + " train-reward --preference-dataset " + (dir / "prefs.jsonl").string() +
         " --large-model-reference " + (dir / "model").string() + " --output " + out +
         " --reward-model-train-steps " + std::to_string(steps) +
         " --batch-size 8 --micro-batch-size 4 --reward-model-learning-rate-multiplier 20 --prompt-sequence-length 32"
         " --target-sequence-length 24 --validation-every 25 --checkpoint-every 5 --threads 1 --no-progress";
}

std::map<int64_t, double> losses_by_step(const fs::path& metrics) {
  std::map<int64_t, double> out;
  for (const auto& r : read_jsonl(metrics))
    if (r.contains("rank_loss")) out[r["step"].get<int64_t>()] = r["rank_loss"].get<double>();
  return out;
}

TEST(RewardTraining, ResumeAfterKillReachesTheSameResult) {
  auto dir = rlhf::testing::scratch_dir();
  rlhf::testing::write_tiny_hf_model(dir / "model");
  rlhf::testing::write_marker_preferences(dir / "prefs.jsonl", 120, 2);
  const int steps = 150;
  ASSERT_EQ(rlhf::testing::run(train_cmd(dir, (dir / "whole").string(), steps) + " 2>/dev/null"), 0);

  // The same run, killed with SIGKILL once a checkpoint exists, then resumed.
  const std::string killed = (dir / "killed").string();
  pid_t pid = fork();
  if (pid == 0) {
    // exec: the shell becomes the trainer, so the pid is the trainer's.
    execl("/bin/sh", "sh", "-c", ("exec " + train_cmd(dir, killed, steps) + " 2>/dev/null").c_str(), (char*)nullptr);
    _exit(127);
  }
  bool killed_early = false;
  for (int i = 0; i < 6000; ++i) {
    if (fs::exists(fs::path(killed) / "checkpoints/step-0000020")) {
      killed_early = !fs::exists(fs::path(killed) / "reward_model.json");
      kill(pid, SIGKILL);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(killed_early) << "the run finished before it could be killed";
  EXPECT_FALSE(fs::exists(fs::path(killed) / "reward_model.json"));
  int rc = 0;
  std::string out = rlhf::testing::capture(train_cmd(dir, killed, steps), &rc, true);
  EXPECT_NE(out.find("holds an earlier"), std::string::npos) << out;  // no silent overwrite
  EXPECT_NE(rc, 0);
  ASSERT_EQ(rlhf::testing::run(train_cmd(dir, killed, steps) + " --resume 2>/dev/null"), 0);

  auto a = losses_by_step(dir / "whole/logs/metrics.jsonl");
  auto b = losses_by_step(fs::path(killed) / "logs/metrics.jsonl");
  ASSERT_EQ(a.size(), static_cast<size_t>(steps));
  ASSERT_EQ(b.size(), static_cast<size_t>(steps));
  for (const auto& [step, loss] : a) EXPECT_NEAR(b[step], loss, 1e-6) << "step " << step;
  auto sa = nlohmann::json::parse(rlhf::testing::read_text(dir / "whole/summary.json"));
  auto sb = nlohmann::json::parse(rlhf::testing::read_text(fs::path(killed) / "summary.json"));
  EXPECT_NEAR(sa["validation/accuracy"].get<double>(), sb["validation/accuracy"].get<double>(), 1e-9);
  EXPECT_NEAR(sa["validation/loss"].get<double>(), sb["validation/loss"].get<double>(), 1e-6);
  // The final heads agree too.
  EXPECT_EQ(rlhf::testing::read_text(dir / "whole/reward_head.safetensors").size(),
            rlhf::testing::read_text(fs::path(killed) / "reward_head.safetensors").size());
}

TEST(RewardTraining, BadFlagsAndDataFailBeforeTraining) {
  auto dir = rlhf::testing::scratch_dir();
  rlhf::testing::write_tiny_hf_model(dir / "model");
  std::ofstream(dir / "bad.jsonl") << R"({"input_text": "a", "candidate_0": "b", "candidate_1": "c", "choice": 0})" "\n"
                                   << R"({"input_text": "a", "candidate_0": "b", "candidate_1": "c", "choice": 3})" "\n";
  int rc = 0;
  std::string out = rlhf::testing::capture(rlhf::testing::cli() + " train-reward --preference-dataset " +
                                               (dir / "bad.jsonl").string() + " --large-model-reference " +
                                               (dir / "model").string() + " --output " + (dir / "o").string(),
                                           &rc, true);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("bad.jsonl:2"), std::string::npos) << out;
  EXPECT_NE(out.find("choice"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir / "o" / "reward_model.json"));
  out = rlhf::testing::capture(rlhf::testing::cli() + " train-reward --preference-dataset x --output y --batch-size 0",
                               &rc, true);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("batch-size"), std::string::npos) << out;
}

TEST(RewardTraining, TrainsOnTheCoursePreferenceSample) {
  auto sample = rlhf::testing::source_dir() / "../shared/data/course/sample_preference.jsonl";
  if (!fs::exists(sample)) GTEST_SKIP() << "../shared (the course data) is absent";
  auto gguf = rlhf::testing::default_model_gguf();
  if (!gguf) GTEST_SKIP() << "default model absent: run scripts/setup";
  auto dir = rlhf::testing::scratch_dir();
  int rc = 0;
  std::string out = rlhf::testing::capture(
      rlhf::testing::cli() + " train-reward --preference-dataset " + sample.string() + " --output " +
          (dir / "rm").string() + " --reward-model-train-steps 2 --batch-size 2 --micro-batch-size 2 "
          "--prompt-sequence-length 128 --target-sequence-length 32 --no-progress --instruction 'Summarize in less than 50 words.'",
      &rc, true);
  ASSERT_EQ(rc, 0) << out;
  auto s = nlohmann::json::parse(rlhf::testing::read_text(dir / "rm/summary.json"));
  EXPECT_EQ(s["train_pairs"].get<int>() + s["validation_pairs"].get<int>(), 5);
  auto info = nlohmann::json::parse(rlhf::testing::read_text(dir / "rm/reward_model.json"));
  EXPECT_EQ(info["encoding"]["instruction"], "Summarize in less than 50 words.");
  EXPECT_EQ(info["base_model"]["sha256"].get<std::string>().size(), 64u);
}

// A base model with a NaN weight makes every gradient NaN: each optimizer step is skipped (the
// adapter and the optimizer's moments stay as they started), counted in train/skipped_steps,
// and max_skipped_steps skips in a row stop the run with an error.
TEST(RewardTraining, NonFiniteGradientsAreSkippedThenStopTheRun) {
  auto dir = rlhf::testing::scratch_dir();
  const rlhf::ModelConfig mc = rlhf::testing::write_tiny_hf_model(dir / "model");
  auto weights = rlhf::testing::tiny_weights(mc);
  rlhf::mutable_f32(weights.at("model.norm.weight"))[0] = std::numeric_limits<float>::quiet_NaN();
  rlhf::safetensors::write((dir / "model" / "model.safetensors").string(), weights);
  rlhf::testing::write_marker_preferences(dir / "prefs.jsonl", 40, 1);
  rlhf::RewardTrainConfig c;
  c.preference_dataset = (dir / "prefs.jsonl").string();
  c.large_model_reference = (dir / "model").string();
  c.output = (dir / "tolerated").string();
  c.train_steps = 3;
  c.batch_size = 8;
  c.prompt_sequence_length = 32;
  c.target_sequence_length = 24;
  c.validation_every = 0;
  c.max_skipped_steps = 100;
  c.progress = false;
  rlhf::train_reward_model(c);
  int steps = 0;
  for (const auto& r : read_jsonl(dir / "tolerated/logs/metrics.jsonl")) {
    if (!r.contains("rank_loss")) continue;
    ++steps;
    EXPECT_EQ(r["train/skipped_steps"].get<double>(), 1.0);
    EXPECT_FALSE(r.contains("grad_norm")) << r.dump();
  }
  EXPECT_EQ(steps, 3);
  const fs::path ckpt = dir / "tolerated/checkpoints/step-0000003";
  auto state = nlohmann::json::parse(rlhf::testing::read_text(ckpt / "trainer_state.json"));
  EXPECT_EQ(state["optimizer_steps"], 0);
  for (const auto& [name, t] : rlhf::load_tensors((ckpt / "optimizer.safetensors").string()))
    EXPECT_EQ(t.abs().max().item<float>(), 0.0f) << name;
  for (const auto& [name, t] : rlhf::load_tensors((ckpt / "adapter_model.safetensors").string())) {
    EXPECT_TRUE(torch::isfinite(t).all().item<bool>()) << name;
    if (name.find("lora_B") != std::string::npos) EXPECT_EQ(t.abs().max().item<float>(), 0.0f) << name;
  }

  c.output = (dir / "stopped").string();
  c.train_steps = 10;
  c.max_skipped_steps = 3;
  try {
    rlhf::train_reward_model(c);
    ADD_FAILURE() << "the run went on with non-finite gradients";
  } catch (const rlhf::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("3 consecutive optimizer steps had a non-finite gradient norm"), std::string::npos) << what;
    EXPECT_NE(what.find("step 3"), std::string::npos) << what;
  }
  EXPECT_FALSE(fs::exists(dir / "stopped/reward_model.json"));
}

}  // namespace
