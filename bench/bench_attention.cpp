// Training steps with attention's mask in the form the fused kernels take (is_causal, or an
// additive mask built once per pass) against the boolean mask handed to every layer (the form
// before), in the same run: a reward-model step on packed pairs, and a PPO forward/backward
// (policy log-probs and values) on left-padded prompts with right-padded responses, and on
// rows without padding (the is_causal case). Medians of --repeats, alternating the forms.
// Prints one JSON line per case: seconds per step of each form and boolean / fast.
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <thread>

#include "rlhf/model/model.h"
#include "rlhf/model/registry.h"
#include "rlhf/train/policy_model.h"
#include "rlhf/train/reward_model.h"

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double seconds(const std::function<void()>& f) {
  auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<int32_t> random_tokens(std::mt19937& rng, int64_t n, int64_t vocab) {
  std::vector<int32_t> out(n);
  for (auto& t : out) t = 1 + static_cast<int32_t>(rng() % (vocab - 1));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_attention: training steps, fused-kernel mask form vs boolean mask"};
  std::string model_ref = rlhf::kDefaultModel, dtype = "fp32";
  int64_t pairs = 8, rollouts = 8, prompt_len = 96, completion_len = 48;
  int repeats = 5, threads = 0;
  bool checkpointing = false;
  std::string only;
  app.add_option("--model", model_ref);
  app.add_option("--dtype", dtype);
  app.add_option("--pairs", pairs, "preference pairs per reward step");
  app.add_option("--rollouts", rollouts, "samples per PPO forward/backward");
  app.add_option("--prompt-len", prompt_len, "longest prompt");
  app.add_option("--completion-len", completion_len, "longest completion / response");
  app.add_option("--repeats", repeats);
  app.add_option("--threads", threads);
  app.add_flag("--gradient-checkpointing", checkpointing);
  app.add_option("--case", only, "run only the case of this name");
  CLI11_PARSE(app, argc, argv);
  torch::set_num_threads(threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency()));

  auto model = rlhf::load_model(model_ref, {rlhf::parse_dtype(dtype), torch::kCPU});
  rlhf::Transformer& net = *model->net;
  net.set_gradient_checkpointing(checkpointing);
  const int64_t vocab = net.config().vocab_size;
  rlhf::LoraConfig lora;
  lora.rank = 4;
  lora.targets = {"q_proj", "v_proj"};
  rlhf::RewardModel rm(net, lora, 1);
  rlhf::PolicyModels roles(net, rm, lora, 2);

  std::mt19937 rng(5);
  // Pairs of varied lengths (packed several to a row) and rollouts of varied lengths.
  std::vector<rlhf::data::PreferencePair> pair_data(pairs);
  for (auto& p : pair_data) {
    p.prompt = random_tokens(rng, prompt_len / 2 + rng() % (prompt_len / 2 + 1), vocab);
    p.chosen = random_tokens(rng, 1 + rng() % completion_len, vocab);
    p.rejected = random_tokens(rng, 1 + rng() % completion_len, vocab);
    p.where = "bench";
  }
  std::vector<const rlhf::data::PreferencePair*> pair_ptrs;
  for (const auto& p : pair_data) pair_ptrs.push_back(&p);
  const auto packed = rlhf::pack_pairs(pair_ptrs, model->pad_id, torch::kCPU);

  auto make_rollouts = [&](bool padded) {
    std::vector<std::vector<int32_t>> prompts(rollouts), responses(rollouts);
    for (int64_t i = 0; i < rollouts; ++i) {
      prompts[i] = random_tokens(rng, padded ? prompt_len / 2 + rng() % (prompt_len / 2 + 1) : prompt_len, vocab);
      responses[i] = random_tokens(rng, padded ? 1 + rng() % completion_len : completion_len, vocab);
    }
    std::vector<const std::vector<int32_t>*> p, r;
    for (int64_t i = 0; i < rollouts; ++i) p.push_back(&prompts[i]), r.push_back(&responses[i]);
    return rlhf::pack_rollouts(p, r, model->pad_id, torch::kCPU);
  };
  const auto padded = make_rollouts(true), unpadded = make_rollouts(false);

  auto reward_step = [&] {
    auto [chosen, rejected] = rm.score_pairs(packed, /*train=*/true);
    rlhf::reward_pair_losses(chosen, rejected).mean().backward();
  };
  auto ppo_step = [&](const rlhf::RolloutBatch& b) {
    return [&] {
      auto logp = roles.logprobs(b, true, 0.7);
      auto values = roles.values(b);
      (-(logp * b.mask).sum() + (values * b.mask).pow(2).sum()).backward();
    };
  };
  struct Case {
    const char* name;
    std::function<void()> step;
    int64_t tokens;
  };
  std::vector<Case> cases = {{"reward_step_packed_pairs", reward_step, packed.tokens.numel()},
                             {"ppo_fwd_bwd_padded", ppo_step(padded), padded.tokens.numel()},
                             {"ppo_fwd_bwd_no_padding", ppo_step(unpadded), unpadded.tokens.numel()}};
  using Form = rlhf::AttentionMaskForm;
  for (const auto& c : cases) {
    if (!only.empty() && only != c.name) continue;
    for (Form f : {Form::kBoolean, Form::kFastKernels}) {  // warm-up
      net.set_attention_mask_form(f);
      c.step();
    }
    std::vector<double> boolean, fast;
    for (int r = 0; r < repeats; ++r) {
      net.set_attention_mask_form(Form::kBoolean);
      boolean.push_back(seconds(c.step));
      net.set_attention_mask_form(Form::kFastKernels);
      fast.push_back(seconds(c.step));
    }
    const double b = median(boolean), f = median(fast);
    std::printf(
        "{\"case\": \"%s\", \"model\": \"%s\", \"dtype\": \"%s\", \"threads\": %d, \"tokens\": %lld, "
        "\"gradient_checkpointing\": %s, \"fast_kernels_s\": %.4f, \"boolean_mask_s\": %.4f, "
        "\"boolean_over_fast\": %.3f}\n",
        c.name, model_ref.c_str(), dtype.c_str(), torch::get_num_threads(), static_cast<long long>(c.tokens),
        checkpointing ? "true" : "false", f, b, b / f);
    std::fflush(stdout);
  }
  return 0;
}
