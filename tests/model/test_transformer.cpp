// Behaviour of the runtime on tiny random models: KV cache, padding, LoRA, generation.
// The tests that take testing::test_device() run on RLHF_TEST_DEVICE (the CPU when unset).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "rlhf/model/generate.h"
#include "rlhf/model/transformer.h"
#include "rlhf/util/error.h"
#include "tiny_model.h"

namespace rlhf {
namespace {

using testing::tiny_config;
using testing::tiny_weights;

// Tolerance of an fp32 comparison of two paths that should agree to rounding: on a GPU the
// kernels pick their reduction order by shape, so two shapes differ by more than on the CPU.
float fp32_tolerance() { return testing::test_device_is_cpu() ? 1e-5f : 1e-4f; }

// Logits [B, T, V] of full sequences with left padding given by `lens` (tokens right-aligned).
torch::Tensor full_logits(const Transformer& net, const torch::Tensor& tokens, const torch::Tensor& key_mask,
                          std::vector<const LoraAdapter*> adapters = {}) {
  ForwardArgs a;
  a.tokens = tokens;
  a.positions = positions_from_mask(key_mask);
  a.attn_mask = make_attention_mask(key_mask, 0, tokens.size(1));
  a.adapters = std::move(adapters);
  return net.logits(net.hidden(a));
}

TEST(Transformer, CachedDecodingEqualsFullForward) {
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    SCOPED_TRACE(c10::toString(dtype));
    auto c = tiny_config(/*tied=*/false, /*bias=*/true);
    const torch::Device dev(testing::test_device());
    Transformer net(c, tiny_weights(c), dtype, dev);
    torch::NoGradGuard ng;
    auto tokens = torch::randint(0, c.vocab_size, {2, 12}, torch::kInt64).to(dev);
    auto mask = torch::ones({2, 12}, torch::kBool);
    mask[1][0] = mask[1][1] = false;  // the second sequence is left-padded
    mask = mask.to(dev);
    auto full = full_logits(net, tokens, mask);  // one pass over all 12 tokens
    // fp32 must agree to rounding; bf16 rounds at different places in the two paths
    const float tol = dtype == torch::kFloat32 ? fp32_tolerance() : 0.03f * full.abs().max().item<float>();

    KVCache cache = net.new_cache(2, 12);
    ForwardArgs a;
    a.cache = &cache;
    auto positions = positions_from_mask(mask);
    a.tokens = tokens.narrow(1, 0, 6);
    a.positions = positions.narrow(1, 0, 6);
    a.attn_mask = make_attention_mask(mask.narrow(1, 0, 6), 0, 6);
    auto first = net.decode_logits(net.hidden(a));
    auto real = mask.narrow(1, 0, 6).unsqueeze(-1).expand_as(first);
    EXPECT_LT((first - full.narrow(1, 0, 6)).abs().masked_select(real).max().item<float>(), tol);
    for (int64_t t = 6; t < 12; ++t) {
      a.tokens = tokens.narrow(1, t, 1);
      a.positions = positions.narrow(1, t, 1);
      a.attn_mask = make_attention_mask(mask.narrow(1, 0, t + 1), t, 1);
      auto step = net.decode_logits(net.hidden(a));
      EXPECT_LT((step.squeeze(1) - full.select(1, t)).abs().max().item<float>(), tol) << "position " << t;
    }
    EXPECT_EQ(cache.length, 12);
  }
}

TEST(Transformer, LeftPaddingDoesNotChangeLogits) {
  auto c = tiny_config();
  const torch::Device dev(testing::test_device());
  Transformer net(c, tiny_weights(c), torch::kFloat32, dev);
  torch::NoGradGuard ng;
  auto seq = torch::randint(0, c.vocab_size, {1, 5}, torch::kInt64).to(dev);
  auto alone = full_logits(net, seq, torch::ones({1, 5}, torch::kBool).to(dev));
  for (int64_t pad : {1, 3, 7}) {
    auto tokens = torch::cat({torch::full({1, pad}, 13, torch::kInt64).to(dev), seq}, 1);
    auto mask = torch::cat({torch::zeros({1, pad}, torch::kBool), torch::ones({1, 5}, torch::kBool)}, 1).to(dev);
    auto padded = full_logits(net, tokens, mask);
    EXPECT_FALSE(padded.isnan().any().item<bool>());
    EXPECT_LT((padded.narrow(1, pad, 5) - alone).abs().max().item<float>(), fp32_tolerance()) << "pad " << pad;
  }
}

TEST(Transformer, MissingOrMisshapenWeightIsAClearError) {
  auto c = tiny_config();
  auto w = tiny_weights(c);
  w.erase("model.layers.1.mlp.up_proj.weight");
  try {
    Transformer net(c, w, torch::kFloat32, torch::kCPU);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.1.mlp.up_proj.weight"), std::string::npos) << e.what();
  }
  w = tiny_weights(c);
  w["model.norm.weight"] = make_f32_tensor({c.hidden_size + 1});
  EXPECT_THROW(Transformer(c, w, torch::kFloat32, torch::kCPU), Error);
}

TEST(Lora, NewAdapterIsIdentityAndEachAdapterSwitchesIndependently) {
  auto c = tiny_config();
  Transformer net(c, tiny_weights(c), torch::kFloat32, torch::kCPU);
  LoraConfig lc;
  lc.rank = 2;
  lc.targets = {"all-linear"};
  auto& policy = net.add_adapter("policy", lc, 1);
  lc.targets = {"q_proj", "v_proj"};
  auto& reward = net.add_adapter("reward", lc, 2);
  auto tokens = torch::randint(0, c.vocab_size, {1, 6}, torch::kInt64);
  auto mask = torch::ones({1, 6}, torch::kBool);
  torch::NoGradGuard ng;
  auto base = full_logits(net, tokens, mask);
  // B = 0: the same logits up to fp32 rounding (the adapter's path sums in another order; the
  // random tokens gave differences up to 1.4e-6); a non-zero B moves them by ~1e-2 and more.
  EXPECT_LT((full_logits(net, tokens, mask, {&policy}) - base).abs().max().item<float>(), 1e-5);
  for (auto& row : policy.b)
    for (auto& t : row)
      if (t.defined()) t.normal_(0, 0.5);
  auto with_policy = full_logits(net, tokens, mask, {&policy});
  EXPECT_GT((with_policy - base).abs().max().item<float>(), 1e-3);
  // Off again: exactly the base; the other adapter is untouched.
  EXPECT_LT((full_logits(net, tokens, mask) - base).abs().max().item<float>(), 1e-6);
  EXPECT_LT((full_logits(net, tokens, mask, {&reward}) - base).abs().max().item<float>(), 1e-6);
  EXPECT_EQ(policy.parameters().size(), static_cast<size_t>(2 * kNumProj * c.num_layers));
  EXPECT_EQ(reward.parameters().size(), static_cast<size_t>(2 * 2 * c.num_layers));
}

TEST(Lora, GradientsReachOnlyTheAdapter) {
  auto c = tiny_config();
  const torch::Device dev(testing::test_device());
  Transformer net(c, tiny_weights(c), torch::kFloat32, dev);
  LoraConfig lc;
  lc.rank = 1;
  lc.alpha = 2;
  lc.dropout = 0.1;
  auto& ad = net.add_adapter("policy", lc, 3);
  EXPECT_DOUBLE_EQ(ad.scale, 2.0);
  ForwardArgs a;
  a.tokens = torch::randint(0, c.vocab_size, {2, 4}, torch::kInt64).to(dev);
  auto mask = torch::ones({2, 4}, torch::kBool).to(dev);
  a.positions = positions_from_mask(mask);
  a.attn_mask = make_attention_mask(mask, 0, 4);
  a.adapters = {&ad};
  a.train = true;
  auto loss = net.logits(net.hidden(a)).logsumexp(-1).mean();
  loss.backward();
  // b starts at zero, so the gradient shows up on b first.
  int64_t with_grad = 0;
  for (auto& row : ad.b)
    for (auto& t : row)
      if (t.defined() && t.grad().defined() && t.grad().abs().sum().item<float>() > 0) ++with_grad;
  EXPECT_EQ(with_grad, 2 * c.num_layers);
  EXPECT_THROW(net.add_adapter("policy", lc, 1), Error);
  lc.targets = {"nonexistent_proj"};
  EXPECT_THROW(net.add_adapter("x", lc, 1), Error);
}

// Training runs RMSNorm, rotary and SwiGLU through hand-written backward passes (they keep
// fewer activations); their gradients must match finite differences of the forward.
TEST(Lora, GradientsMatchFiniteDifferences) {
  auto c = tiny_config();
  Transformer net(c, tiny_weights(c), torch::kFloat32, torch::kCPU);
  LoraConfig lc;
  lc.rank = 2;
  lc.targets = {"all-linear"};
  auto& ad = net.add_adapter("p", lc, 5);
  {
    torch::NoGradGuard ng;
    for (auto& row : ad.b)
      for (auto& t : row)
        if (t.defined()) t.normal_(0.0, 0.2);
  }
  ForwardArgs a;
  a.tokens = torch::randint(0, c.vocab_size, {2, 6}, torch::kInt64);
  auto mask = torch::ones({2, 6}, torch::kBool);
  a.positions = positions_from_mask(mask);
  a.attn_mask = make_attention_mask(mask, 0, 6);
  a.adapters = {&ad};
  auto probe = torch::randn({2, 6, c.hidden_size});
  auto loss_of = [&] { return (net.hidden(a).to(torch::kFloat64) * probe).sum(); };
  loss_of().backward();
  for (int p : {kQ, kUp, kGate, kDown}) {
    for (int64_t l = 0; l < c.num_layers; ++l) {
      auto& t = ad.a[l][p];
      const double analytic = t.grad().view(-1)[3].item<double>();
      double numeric;
      {
        torch::NoGradGuard ng;
        const float eps = 1e-2f, orig = t.view(-1)[3].item<float>();
        t.view(-1)[3].fill_(orig + eps);
        const double up = loss_of().item<double>();
        t.view(-1)[3].fill_(orig - eps);
        const double down = loss_of().item<double>();
        t.view(-1)[3].fill_(orig);
        numeric = (up - down) / (2 * eps);
      }
      EXPECT_NEAR(analytic, numeric, 2e-2 * std::max(1.0, std::abs(numeric))) << proj_name(p) << " layer " << l;
    }
  }
}

TEST(Generate, GreedyBatchEqualsOneByOneAndStopsAtStopIds) {
  auto c = tiny_config();
  Transformer net(c, tiny_weights(c, 11), torch::kFloat32, torch::kCPU);
  std::vector<std::vector<int32_t>> prompts = {{5, 6, 7, 8, 9}, {10}, {20, 21, 22}};
  SamplingConfig s;
  s.temperature = 0;
  s.max_new_tokens = 12;
  GenerateOptions o;
  o.pad_id = 0;
  o.stop_ids = {96};
  auto batch = generate(net, prompts, s, o);
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto one = generate(net, {prompts[i]}, s, o);
    EXPECT_EQ(batch.tokens[i], one.tokens[0]) << "prompt " << i;
    ASSERT_EQ(batch.logprobs[i].size(), one.logprobs[0].size());
    for (size_t k = 0; k < one.logprobs[0].size(); ++k) EXPECT_NEAR(batch.logprobs[i][k], one.logprobs[0][k], 1e-4);
  }
  // Make the first generated token of prompt 0 a stop id: that sequence ends after one token.
  o.stop_ids = {batch.tokens[0][0]};
  auto stopped = generate(net, prompts, s, o);
  EXPECT_EQ(stopped.tokens[0].size(), 1u);
  EXPECT_TRUE(stopped.stopped[0]);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_LE(stopped.tokens[i].size(), 12u);
    for (size_t k = 0; k + 1 < stopped.tokens[i].size(); ++k) EXPECT_NE(stopped.tokens[i][k], o.stop_ids[0]);
  }
}

TEST(Generate, SeedRepeatsAndLogprobsMatchTheModel) {
  auto c = tiny_config();
  Transformer net(c, tiny_weights(c, 5), torch::kFloat32, torch::kCPU);
  SamplingConfig s;
  s.temperature = 0.7;
  s.top_p = 0.9;
  s.top_k = 40;
  s.max_new_tokens = 10;
  s.seed = 42;
  GenerateOptions o;
  o.stop_ids = {96};
  std::vector<std::vector<int32_t>> prompts = {{1, 2, 3}, {4, 5}};
  auto a = generate(net, prompts, s, o);
  auto b = generate(net, prompts, s, o);
  EXPECT_EQ(a.tokens, b.tokens);
  s.seed = 43;
  auto d = generate(net, prompts, s, o);
  EXPECT_NE(a.tokens, d.tokens);
  // The returned log-probs are log softmax(logits / T) of the chosen tokens.
  std::vector<int32_t> seq = prompts[0];
  seq.insert(seq.end(), a.tokens[0].begin(), a.tokens[0].end());
  auto tokens = torch::tensor(std::vector<int64_t>(seq.begin(), seq.end()), torch::kInt64).view({1, -1});
  torch::NoGradGuard ng;
  auto logp = (full_logits(net, tokens, torch::ones_like(tokens, torch::kBool)) / s.temperature).log_softmax(-1);
  for (size_t k = 0; k < a.tokens[0].size(); ++k) {
    float expect = logp[0][static_cast<int64_t>(prompts[0].size() + k - 1)][a.tokens[0][k]].item<float>();
    EXPECT_NEAR(a.logprobs[0][k], expect, 1e-4) << "token " << k;
  }
}

// With a seed per row, a sampled completion is the same alone, in any batch and at any place
// in it: what data-parallel rollouts rely on.
TEST(Generate, RowSeedsMakeASampleIndependentOfItsBatch) {
  auto c = tiny_config();
  Transformer net(c, tiny_weights(c, 5), torch::kFloat32, torch::kCPU);
  SamplingConfig s;
  s.temperature = 1.0;
  s.max_new_tokens = 10;
  GenerateOptions o;
  o.stop_ids = {96};
  const std::vector<std::vector<int32_t>> prompts = {{1, 2, 3}, {4, 5}, {6, 7, 8, 9, 10}};
  o.row_seeds = {11, 12, 13};
  auto batch = generate(net, prompts, s, o);
  for (size_t i = 0; i < prompts.size(); ++i) {
    o.row_seeds = {11 + i};
    EXPECT_EQ(generate(net, {prompts[i]}, s, o).tokens[0], batch.tokens[i]) << "prompt " << i;
  }
  o.row_seeds = {13, 11};  // another batch, another order
  auto swapped = generate(net, {prompts[2], prompts[0]}, s, o);
  EXPECT_EQ(swapped.tokens[0], batch.tokens[2]);
  EXPECT_EQ(swapped.tokens[1], batch.tokens[0]);
  o.row_seeds = {21, 12, 13};  // another seed, another sample
  EXPECT_NE(generate(net, prompts, s, o).tokens[0], batch.tokens[0]);
  o.row_seeds = {1, 2};
  EXPECT_THROW(generate(net, prompts, s, o), Error);  // one seed per prompt
}

TEST(Generate, RejectsBadArguments) {
  auto c = tiny_config();
  Transformer net(c, tiny_weights(c), torch::kFloat32, torch::kCPU);
  SamplingConfig s;
  GenerateOptions o;
  o.stop_ids = {3};
  o.pad_id = 3;
  EXPECT_THROW(generate(net, {{1, 2}}, s, o), Error);  // pad == stop
  o.pad_id = 0;
  EXPECT_THROW(generate(net, {{1, 200}}, s, o), Error);  // id outside vocab
  EXPECT_THROW(generate(net, {{}}, s, o), Error);
  s.max_new_tokens = 1000;
  EXPECT_THROW(generate(net, {{1}}, s, o), Error);  // beyond context
}

// Decoding on the CPU (a KV cache, few new tokens, no autograd) takes single-pass kernels
// (RMSNorm, rotary, attention, SwiGLU, LoRA added in place); with autograd on, the framework ops
// run. Both must agree, with an adapter on every projection, biases and left padding.
TEST(Transformer, DecodeKernelsEqualTheAutogradPath) {
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    SCOPED_TRACE(c10::toString(dtype));
    auto c = tiny_config(/*tied=*/false, /*bias=*/true);
    Transformer net(c, tiny_weights(c, 9), dtype, torch::kCPU);
    LoraConfig lc;
    lc.rank = 2;
    lc.targets = {"all-linear"};
    auto& ad = net.add_adapter("policy", lc, 4);
    {
      torch::NoGradGuard ng;
      for (auto& row : ad.b)
        for (auto& t : row)
          if (t.defined()) t.normal_(0, 0.3);
    }
    auto tokens = torch::randint(0, c.vocab_size, {3, 5}, torch::kInt64);
    auto mask = torch::ones({3, 5}, torch::kBool);
    mask[1][0] = false;  // some left padding
    mask[2][0] = mask[2][1] = false;
    auto reference = full_logits(net, tokens, mask, {&ad}).detach();  // grad mode on: framework ops
    torch::Tensor decoded;
    {
      torch::NoGradGuard ng;
      KVCache cache = net.new_cache(3, 5);
      ForwardArgs a;
      a.cache = &cache;
      a.adapters = {&ad};
      a.tokens = tokens;
      a.positions = positions_from_mask(mask);
      a.attn_mask = make_attention_mask(mask, 0, 5);
      decoded = net.decode_logits(net.hidden(a));
    }
    const float tol = dtype == torch::kFloat32 ? 1e-5f : 0.03f * reference.abs().max().item<float>();
    auto real = mask.unsqueeze(-1).expand_as(reference);
    EXPECT_LT((decoded - reference).abs().masked_select(real).max().item<float>(), tol);
  }
}

// A pass without a KV cache (scoring, training) takes the framework path whatever the number of
// rows: with and without gradients it gives the same bits, where the decode kernels would not.
TEST(Transformer, FewRowsWithoutACacheGiveTheSameNumbersWithAndWithoutGradients) {
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    SCOPED_TRACE(c10::toString(dtype));
    auto c = tiny_config(/*tied=*/false, /*bias=*/true);
    Transformer net(c, tiny_weights(c, 9), dtype, torch::kCPU);
    auto tokens = torch::randint(0, c.vocab_size, {1, 6}, torch::kInt64);  // 6 rows: the kernels' size
    auto mask = torch::ones({1, 6}, torch::kBool);
    auto with_grad = full_logits(net, tokens, mask).detach();
    torch::NoGradGuard ng;
    auto without = full_logits(net, tokens, mask);
    EXPECT_LE((with_grad - without).abs().max().item<float>(), 1e-6f);
  }
}

TEST(Transformer, Bf16RunsCloseToFp32) {
  auto c = tiny_config();
  auto w = tiny_weights(c);
  Transformer f32(c, w, torch::kFloat32, torch::kCPU), bf16(c, w, torch::kBFloat16, torch::kCPU);
  torch::NoGradGuard ng;
  auto tokens = torch::randint(0, c.vocab_size, {2, 7}, torch::kInt64);
  auto mask = torch::ones({2, 7}, torch::kBool);
  auto a = full_logits(f32, tokens, mask), b = full_logits(bf16, tokens, mask);
  EXPECT_EQ(b.scalar_type(), torch::kFloat32);
  EXPECT_FALSE(b.isnan().any().item<bool>());
  EXPECT_LT((a - b).abs().max().item<float>() / a.abs().max().item<float>(), 0.1);
}

}  // namespace
}  // namespace rlhf
