// Direct preference optimisation: the loss arithmetic against NumPy
// (tests/parity/dpo_expected.py -> tests/data/dpo_expected.json), packed pairs giving each
// completion the log-probs it has alone, the first step at ln 2 (policy = reference), learning
// a synthetic preference, resume after kill -9, bad input failing before any work, the folder
// accepted by infer and export, and a short run on the course's preference sample.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "rlhf/model/model.h"
#include "rlhf/train/dpo.h"
#include "rlhf/train/dpo_trainer.h"
#include "rlhf/train/reward_model.h"
#include "test_util.h"
#include "tiny_model.h"

namespace {

using nlohmann::json;
using rlhf::testing::read_jsonl;
namespace fs = std::filesystem;
namespace dpo = rlhf::dpo;

torch::Tensor vec(const json& j, torch::Dtype dtype = torch::kFloat64) {
  return torch::tensor(j.get<std::vector<double>>(), torch::kFloat64).to(dtype);
}

void expect_close(const torch::Tensor& got, const json& want, double tol, const std::string& what) {
  auto w = want.get<std::vector<double>>();
  ASSERT_EQ(got.numel(), static_cast<int64_t>(w.size())) << what;
  auto g = got.to(torch::kFloat64).contiguous();
  for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(g[i].item<double>(), w[i], tol) << what << " [" << i << "]";
}

TEST(DpoMath, LossesAndRewardsMatchTheNumPyReference) {
  std::ifstream f(rlhf::testing::source_dir() / "tests" / "data" / "dpo_expected.json");
  ASSERT_TRUE(f.good());
  const json data = json::parse(f);
  const json& in = data["inputs"];
  dpo::PairLogps p{.chosen = vec(in["chosen"]),
                   .rejected = vec(in["rejected"]),
                   .ref_chosen = vec(in["ref_chosen"]),
                   .ref_rejected = vec(in["ref_rejected"]),
                   .chosen_tokens = vec(in["chosen_tokens"]),
                   .rejected_tokens = vec(in["rejected_tokens"])};
  ASSERT_EQ(data["cases"].size(), 7u);
  for (const auto& c : data["cases"]) {
    const std::string name = c["loss_type"].get<std::string>() + " beta " + std::to_string(c["beta"].get<double>()) +
                             " smoothing " + std::to_string(c["label_smoothing"].get<double>());
    const double beta = c["beta"];
    auto losses = dpo::pair_losses(p, dpo::parse_loss_type(c["loss_type"]), beta, c["label_smoothing"]);
    expect_close(losses, c["losses"], 1e-9, name);
    EXPECT_NEAR(losses.mean().item<double>(), c["loss"].get<double>(), 1e-9) << name;
    auto rc = dpo::implicit_rewards(p.chosen, p.ref_chosen, beta);
    auto rr = dpo::implicit_rewards(p.rejected, p.ref_rejected, beta);
    expect_close(rc, c["rewards_chosen"], 1e-9, name);
    expect_close(rr, c["rewards_rejected"], 1e-9, name);
    EXPECT_NEAR((rc - rr).mean().item<double>(), c["margins"].get<double>(), 1e-9) << name;
    EXPECT_NEAR((rc > rr).to(torch::kFloat64).mean().item<double>(), c["accuracies"].get<double>(), 1e-12) << name;
  }
  // In float32, as training computes it.
  dpo::PairLogps p32{p.chosen.to(torch::kFloat32), p.rejected.to(torch::kFloat32), p.ref_chosen.to(torch::kFloat32),
                     p.ref_rejected.to(torch::kFloat32), p.chosen_tokens.to(torch::kFloat32),
                     p.rejected_tokens.to(torch::kFloat32)};
  expect_close(dpo::pair_losses(p32, dpo::LossType::Sigmoid, 0.1), data["cases"][0]["losses"], 1e-5, "sigmoid fp32");
  // Summed completion log-probs from logits (float32 log-softmax).
  std::vector<torch::Tensor> rows;
  for (const auto& r : in["logits"]) rows.push_back(vec(r, torch::kFloat32));
  auto targets = torch::tensor(in["targets"].get<std::vector<int64_t>>(), torch::kInt64);
  auto segment = torch::tensor(in["segment"].get<std::vector<int64_t>>(), torch::kInt64);
  expect_close(dpo::segment_logps(torch::stack(rows), targets, segment, in["segments"]), data["segment_logps"], 1e-5,
               "segment_logps");
}

TEST(DpoMath, LossTypesByName) {
  EXPECT_EQ(dpo::parse_loss_type("ipo"), dpo::LossType::Ipo);
  EXPECT_STREQ(dpo::loss_type_name(dpo::LossType::Hinge), "hinge");
  EXPECT_NE(rlhf::testing::error_of([] { dpo::parse_loss_type("kto", "--loss-type"); }).find("--loss-type"),
            std::string::npos);
  // Policy = reference: every pair's sigmoid loss is ln 2 and its margin 0.
  auto z = torch::full({3}, -20.0, torch::kFloat64);
  dpo::PairLogps p{z, z, z, z, torch::ones({3}), torch::ones({3})};
  auto l = dpo::pair_losses(p, dpo::LossType::Sigmoid, 0.1);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(l[i].item<double>(), std::log(2.0), 1e-12);
}

// The packed pair's per-token log-probs are those of prompt ++ completion alone: the rejected
// completion's first token is predicted from the prompt's last column.
TEST(DpoPacking, CompletionLogProbsEqualSeparateSequences) {
  torch::manual_seed(0);
  auto cfg = rlhf::testing::tiny_config();
  rlhf::Transformer net(cfg, rlhf::testing::tiny_weights(cfg), torch::kFloat32, torch::kCPU);
  auto seq = [](int n, int salt) {
    std::vector<int32_t> s;
    for (int i = 0; i < n; ++i) s.push_back(3 + (i * 7 + salt * 13) % 90);
    return s;
  };
  std::vector<rlhf::data::PreferencePair> pairs = {{seq(6, 1), seq(4, 2), seq(7, 3), "a:1"},
                                                   {seq(11, 4), seq(9, 5), seq(12, 6), "a:2"},
                                                   {seq(1, 7), seq(3, 8), seq(3, 9), "a:3"},
                                                   {seq(2, 10), seq(1, 11), seq(1, 12), "a:4"}};
  std::vector<const rlhf::data::PreferencePair*> ptrs = {&pairs[0], &pairs[1], &pairs[2], &pairs[3]};
  torch::NoGradGuard ng;
  auto pb = rlhf::pack_pairs(ptrs, 0, torch::kCPU);
  EXPECT_EQ(pb.completion_token.size(0), 4 + 7 + 9 + 12 + 3 + 3 + 1 + 1);
  rlhf::ForwardArgs args;
  args.tokens = pb.tokens, args.positions = pb.positions, args.attn_mask = pb.attn_mask;
  auto hidden = net.hidden(args);
  auto at = hidden.reshape({-1, hidden.size(2)}).index_select(0, pb.completion_from);
  auto packed = dpo::segment_logps(net.logits(at), pb.completion_token, pb.completion_of, 8);
  for (size_t i = 0; i < pairs.size(); ++i)
    for (int side = 0; side < 2; ++side) {
      const auto& prompt = pairs[i].prompt;
      const auto& comp = side == 0 ? pairs[i].chosen : pairs[i].rejected;
      auto s = prompt;
      s.insert(s.end(), comp.begin(), comp.end());
      auto sb = rlhf::pack_sequences({s}, 0, false, torch::kCPU);
      rlhf::ForwardArgs a;
      a.tokens = sb.tokens, a.positions = sb.positions, a.attn_mask = sb.attn_mask;
      auto logp = torch::log_softmax(net.logits(net.hidden(a))[0], -1);  // [L, V]
      double alone = 0;
      for (size_t k = 0; k < comp.size(); ++k) alone += logp[prompt.size() + k - 1][comp[k]].item<double>();
      EXPECT_NEAR(packed[2 * i + side].item<double>(), alone, 1e-4) << "pair " << i << (side ? " rejected" : " chosen");
    }
}

// ---- Training on a tiny model written to disk --------------------------------------------

rlhf::DpoTrainConfig tiny_config(const fs::path& dir) {
  rlhf::DpoTrainConfig c;
  c.preference_dataset = (dir / "prefs.jsonl").string();
  c.large_model_reference = (dir / "model").string();
  c.output = (dir / "dpo").string();
  c.dtype = "fp32";
  c.threads = 2;
  c.prompt_sequence_length = 32;
  c.target_sequence_length = 24;
  c.checkpoint_every = 1000;
  c.progress = false;
  return c;
}

TEST(DpoTraining, FirstStepHasLossLn2AndZeroMargins) {
  auto dir = rlhf::testing::scratch_dir();
  rlhf::testing::write_tiny_hf_model(dir / "model");
  rlhf::testing::write_marker_preferences(dir / "prefs.jsonl", 40, 3);
  auto c = tiny_config(dir);
  c.train_steps = 1;
  c.batch_size = 8;
  c.micro_batch_size = 4;
  rlhf::train_dpo(c);
  auto rows = read_jsonl(dir / "dpo/logs/metrics.jsonl");
  ASSERT_FALSE(rows.empty());
  const auto& r = rows[0];
  ASSERT_EQ(r["step"], 1);
  EXPECT_NEAR(r["loss"].get<double>(), std::log(2.0), 1e-4);
  EXPECT_NEAR(r["rewards/margins"].get<double>(), 0.0, 1e-4);
  EXPECT_NEAR(r["rewards/chosen"].get<double>(), 0.0, 1e-4);
  EXPECT_NEAR(r["rewards/rejected"].get<double>(), 0.0, 1e-4);
  EXPECT_LT(r["logps/chosen"].get<double>(), 0.0);
}

TEST(DpoTraining, LearnsASyntheticPreferenceAndInferReadsTheFolder) {
  auto dir = rlhf::testing::scratch_dir();
  rlhf::testing::write_tiny_hf_model(dir / "model");
  rlhf::testing::write_marker_preferences(dir / "prefs.jsonl", 400, 1);
  auto c = tiny_config(dir);
  c.validation_fraction = 0.2;
  c.train_steps = 40;
  c.batch_size = 16;
  c.micro_batch_size = 8;
  c.learning_rate_multiplier = 50;  // 5e-3: a tiny model learns fast
  c.beta = 0.5;
  c.validation_every = 20;
  auto s = rlhf::train_dpo(c);
  EXPECT_EQ(s.validation_pairs, 80);
  EXPECT_GT(s.validation_accuracy, 0.95) << "validation loss " << s.validation_loss;
  EXPECT_GT(s.validation_margin, 0.0);
  for (const char* f : {"policy.json", "adapter_model.safetensors", "adapter_config.json", "summary.json",
                        "logs/metrics.jsonl"})
    EXPECT_TRUE(fs::exists(dir / "dpo" / f)) << f;
  EXPECT_FALSE(fs::exists(dir / "dpo/value_head.safetensors"));
  auto rows = read_jsonl(dir / "dpo/logs/metrics.jsonl");
  int train_rows = 0, eval_rows = 0;
  for (const auto& r : rows) {
    if (r.contains("loss")) {
      ++train_rows;
      for (const char* k : {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
                            "logps/chosen", "logps/rejected", "learning_rate", "grad_norm", "time/step"})
        EXPECT_TRUE(r.contains(k)) << k;
    }
    if (r.contains("eval/loss")) {
      ++eval_rows;
      for (const char* k : {"eval/rewards/accuracies", "eval/rewards/margins", "eval/logps/chosen"})
        EXPECT_TRUE(r.contains(k)) << k;
    }
  }
  EXPECT_EQ(train_rows, 40);
  EXPECT_EQ(eval_rows, 2);  // step 20 and the end
  auto summary = json::parse(rlhf::testing::read_text(dir / "dpo/summary.json"));
  EXPECT_NEAR(summary["eval/rewards/accuracies"].get<double>(), s.validation_accuracy, 1e-12);
  auto manifest = json::parse(rlhf::testing::read_text(dir / "dpo/policy.json"));
  EXPECT_EQ(manifest["format"], "rlhf.policy");
  EXPECT_EQ(manifest["training"]["method"], "dpo");

  // infer and export read the folder as they read train-policy's.
  std::ofstream(dir / "prompts.jsonl") << R"({"input_text": "say: cat dog sun ->"})" "\n"
                                       << R"({"input_text": "say: red map pen ->"})" "\n";
  int rc = 0;
  std::string out = rlhf::testing::capture(rlhf::testing::cli() + " infer --adapter " + (dir / "dpo").string() +
                                               " --input " + (dir / "prompts.jsonl").string() + " --output " +
                                               (dir / "pred.jsonl").string() + " -n 8 --dtype fp32 --no-progress",
                                           &rc, true);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(read_jsonl(dir / "pred.jsonl").size(), 2u);
  out = rlhf::testing::capture(rlhf::testing::cli() + " export --adapter " + (dir / "dpo").string() + " --output " +
                                   (dir / "merged").string(),
                               &rc, true);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(fs::exists(dir / "merged/config.json"));
}

std::string train_cmd(const fs::path& dir, const std::string& out, int steps) {
  return rlhf::testing::cli() + " train-dpo --preference-dataset " + (dir / "prefs.jsonl").string() + " --model " +
         (dir / "model").string() + " --output " + out + " --train-steps " + std::to_string(steps) +
         " --batch-size 8 --micro-batch-size 4 --learning-rate-multiplier 20 --prompt-sequence-length 32"
         " --target-sequence-length 24 --validation-every 10 --checkpoint-every 5 --threads 1 --dtype fp32 --no-progress";
}

TEST(DpoTraining, ResumeAfterKillReachesTheSameAdapter) {
  auto dir = rlhf::testing::scratch_dir();
  rlhf::testing::write_tiny_hf_model(dir / "model");
  rlhf::testing::write_marker_preferences(dir / "prefs.jsonl", 60, 2);
  const int steps = 40;
  ASSERT_EQ(rlhf::testing::run(train_cmd(dir, (dir / "whole").string(), steps) + " 2>/dev/null"), 0);

  // The same run, killed with SIGKILL once a checkpoint exists, then resumed.
  const std::string killed = (dir / "killed").string();
  pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", ("exec " + train_cmd(dir, killed, steps) + " 2>/dev/null").c_str(), (char*)nullptr);
    _exit(127);
  }
  bool killed_early = false;
  for (int i = 0; i < 6000; ++i) {
    if (fs::exists(fs::path(killed) / "checkpoints/step-0000010")) {
      killed_early = !fs::exists(fs::path(killed) / "policy.json");
      kill(pid, SIGKILL);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(killed_early) << "the run finished before it could be killed";
  EXPECT_FALSE(fs::exists(fs::path(killed) / "policy.json"));
  ASSERT_EQ(rlhf::testing::run(train_cmd(dir, killed, steps) + " --resume 2>/dev/null"), 0);

  auto losses = [](const fs::path& metrics) {
    std::map<int64_t, double> out;
    for (const auto& r : read_jsonl(metrics))
      if (r.contains("loss")) out[r["step"].get<int64_t>()] = r["loss"].get<double>();
    return out;
  };
  auto a = losses(dir / "whole/logs/metrics.jsonl"), b = losses(fs::path(killed) / "logs/metrics.jsonl");
  ASSERT_EQ(a.size(), static_cast<size_t>(steps));
  ASSERT_EQ(b.size(), static_cast<size_t>(steps));
  for (const auto& [step, loss] : a) EXPECT_EQ(b[step], loss) << "step " << step;
  EXPECT_EQ(rlhf::testing::read_text(dir / "whole/adapter_model.safetensors"),
            rlhf::testing::read_text(fs::path(killed) / "adapter_model.safetensors"));
  auto sa = json::parse(rlhf::testing::read_text(dir / "whole/summary.json"));
  auto sb = json::parse(rlhf::testing::read_text(fs::path(killed) / "summary.json"));
  EXPECT_EQ(sa["eval/loss"], sb["eval/loss"]);
}

// Two local ranks split the micro-batches (and the reference pass) and sum the gradients: the
// run of one process, up to float rounding.
TEST(DpoTraining, TwoRanksTrainAsOneProcess) {
  auto dir = rlhf::testing::scratch_dir();
  rlhf::testing::write_tiny_hf_model(dir / "model");
  rlhf::testing::write_marker_preferences(dir / "prefs.jsonl", 60, 4);
  const int steps = 6;
  ASSERT_EQ(rlhf::testing::run(train_cmd(dir, (dir / "one").string(), steps) + " 2>/dev/null"), 0);
  int rc = 0;
  std::string out = rlhf::testing::capture(
      rlhf::testing::cli() + " --nproc-per-node 2" + train_cmd(dir, (dir / "two").string(), steps).substr(rlhf::testing::cli().size()),
      &rc, true);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("[rank 1]"), std::string::npos) << out;
  std::map<int64_t, json> a, b;
  for (const auto& r : read_jsonl(dir / "one/logs/metrics.jsonl"))
    if (r.contains("loss")) a[r["step"].get<int64_t>()] = r;
  for (const auto& r : read_jsonl(dir / "two/logs/metrics.jsonl"))
    if (r.contains("loss")) b[r["step"].get<int64_t>()] = r;
  ASSERT_EQ(a.size(), static_cast<size_t>(steps));
  ASSERT_EQ(b.size(), static_cast<size_t>(steps));
  for (const auto& [step, r] : a)
    for (const char* k : {"loss", "rewards/margins", "logps/chosen", "grad_norm"})
      EXPECT_NEAR(b[step][k].get<double>(), r[k].get<double>(), 1e-4) << k << " at step " << step;
  auto sa = json::parse(rlhf::testing::read_text(dir / "one/summary.json"));
  auto sb = json::parse(rlhf::testing::read_text(dir / "two/summary.json"));
  EXPECT_NEAR(sa["eval/loss"].get<double>(), sb["eval/loss"].get<double>(), 1e-4);
}

TEST(DpoTraining, BadFlagsAndDataFailBeforeAnyWork) {
  auto dir = rlhf::testing::scratch_dir();
  rlhf::testing::write_tiny_hf_model(dir / "model");
  std::ofstream(dir / "bad.jsonl") << R"({"input_text": "a", "candidate_0": "b", "candidate_1": "c", "choice": 0})" "\n"
                                   << R"({"input_text": "a", "candidate_0": "b", "candidate_1": "c", "choice": 3})" "\n";
  auto cmd = [&](const std::string& data, const std::string& extra) {
    return rlhf::testing::cli() + " train-dpo --preference-dataset " + data + " --model " + (dir / "model").string() +
           " --output " + (dir / "o").string() + " " + extra;
  };
  int rc = 0;
  std::string out = rlhf::testing::capture(cmd((dir / "bad.jsonl").string(), ""), &rc, true);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("bad.jsonl:2"), std::string::npos) << out;
  EXPECT_NE(out.find("choice"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir / "o"));
  for (const auto& [flags, named] : std::vector<std::pair<std::string, std::string>>{
           {"--loss-type kto", "--loss-type"},
           {"--beta 0", "--beta"},
           {"--label-smoothing 0.5", "--label-smoothing"},
           {"--loss-type ipo --label-smoothing 0.1", "--label-smoothing"},
           {"--batch-size 2 --micro-batch-size 4", "--micro-batch-size"},
           {"--train-steps 5 --epochs 1", "--epochs"}}) {
    out = rlhf::testing::capture(cmd((dir / "bad.jsonl").string(), flags), &rc, true);
    EXPECT_NE(rc, 0) << flags;
    EXPECT_NE(out.find(named), std::string::npos) << flags << ": " << out;
    EXPECT_EQ(out.find("bad.jsonl:2"), std::string::npos) << flags << ": the flags are checked first: " << out;
  }
  EXPECT_FALSE(fs::exists(dir / "o"));
}

TEST(DpoTraining, TrainsOnTheCoursePreferenceSample) {
  auto sample = rlhf::testing::source_dir() / "../shared/data/course/sample_preference.jsonl";
  if (!fs::exists(sample)) GTEST_SKIP() << "../shared (the course data) is absent";
  auto gguf = rlhf::testing::default_model_gguf();
  if (!gguf) GTEST_SKIP() << "default model absent: run scripts/setup";
  auto dir = rlhf::testing::scratch_dir();
  int rc = 0;
  std::string out = rlhf::testing::capture(
      rlhf::testing::cli() + " train-dpo --preference-dataset " + sample.string() + " --output " +
          (dir / "dpo").string() + " --train-steps 2 --batch-size 2 --micro-batch-size 2 "
          "--prompt-sequence-length 128 --target-sequence-length 32 --no-progress",
      &rc, true);
  ASSERT_EQ(rc, 0) << out;
  auto s = json::parse(rlhf::testing::read_text(dir / "dpo/summary.json"));
  EXPECT_EQ(s["train_pairs"].get<int>() + s["validation_pairs"].get<int>(), 5);
  EXPECT_EQ(s["method"], "dpo");
  auto info = json::parse(rlhf::testing::read_text(dir / "dpo/policy.json"));
  EXPECT_EQ(info["base_model"]["sha256"].get<std::string>().size(), 64u);
  EXPECT_EQ(info["training"]["method"], "dpo");
}

}  // namespace
