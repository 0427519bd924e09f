// The decode loop that keeps its state on the device (no host read per token) returns exactly
// what the per-token loop returns on the CPU: greedy, sampled with a seed and with a seed per
// row, with rows that end on stop ids (EOS or not), on the length limit, or never start.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>

#include "rlhf/model/generate.h"
#include "rlhf/model/transformer.h"
#include "rlhf/util/error.h"
#include "tiny_model.h"

namespace rlhf {
namespace {

using testing::tiny_config;
using testing::tiny_weights;

const std::vector<std::vector<int32_t>> kPrompts = {{5, 6, 7, 8, 9}, {10}, {20, 21, 22}, {30, 31}};

Generation run(const Transformer& net, const SamplingConfig& s, GenerateOptions o, DecodeLoop loop,
               int64_t sync_every = 8, const std::vector<std::vector<int32_t>>& prompts = kPrompts) {
  o.loop = loop;
  o.sync_every = sync_every;
  return generate(net, prompts, s, o);
}

// The per-token loop's results, bit for bit; the loop on the device runs on to its first check
// after the last row ended (or to max_new_tokens).
void expect_same(const Generation& device, const Generation& per_token, int64_t sync_every, int64_t max_new) {
  EXPECT_EQ(device.tokens, per_token.tokens);
  EXPECT_EQ(device.logprobs, per_token.logprobs);  // exactly: the same floats
  EXPECT_EQ(device.stopped, per_token.stopped);
  EXPECT_EQ(device.steps, per_token.steps);
  EXPECT_EQ(per_token.steps_run, per_token.steps);
  const int64_t next_check = (device.steps + sync_every - 1) / sync_every * sync_every;
  EXPECT_EQ(device.steps_run, std::min(next_check, max_new));
}

// Stop ids taken from a run without them, none of which row 3 generates: rows 0 and 2 end
// early on a stop id that is not EOS, row 3 runs to max_new_tokens (until a row stops, both
// loops draw what the run without stop ids drew).
std::vector<int32_t> stops_from(const Generation& free_run, int32_t pad_id) {
  std::vector<int32_t> stops;
  const auto& last = free_run.tokens[3];
  for (size_t row : {size_t{0}, size_t{2}})
    for (size_t k = 1; k < free_run.tokens[row].size(); ++k)
      if (free_run.tokens[row][k] != pad_id &&
          std::find(last.begin(), last.end(), free_run.tokens[row][k]) == last.end()) {
        stops.push_back(free_run.tokens[row][k]);
        break;
      }
  EXPECT_EQ(stops.size(), 2u) << "rows 0 and 2 hold no token that row 3 lacks";
  return stops;
}

void expect_mixed_endings(const Generation& g) {
  const bool some_stopped = std::count(g.stopped.begin(), g.stopped.end(), true) > 0;
  const bool some_ran_out = std::count(g.stopped.begin(), g.stopped.end(), false) > 0;
  EXPECT_TRUE(some_stopped && some_ran_out) << "the test wants both endings";
}

void check_loops_agree(const Transformer& net, SamplingConfig s, GenerateOptions o,
                       const std::vector<int64_t>& sync_every = {1, 3, 8}) {
  s.max_new_tokens = 12;
  auto free_run = run(net, s, o, DecodeLoop::kPerToken);
  for (int64_t k : sync_every) expect_same(run(net, s, o, DecodeLoop::kOnDevice, k), free_run, k, s.max_new_tokens);

  o.stop_ids = stops_from(free_run, o.pad_id);
  auto ref = run(net, s, o, DecodeLoop::kPerToken);
  expect_mixed_endings(ref);
  for (int64_t k : sync_every) {
    SCOPED_TRACE("sync_every " + std::to_string(k));
    expect_same(run(net, s, o, DecodeLoop::kOnDevice, k), ref, k, s.max_new_tokens);
  }
  // Every row ends early: the loop on the device runs on to its next check, dropping those steps.
  o.stop_ids.clear();
  for (const auto& row : free_run.tokens)
    for (size_t k = 1; k < row.size(); ++k)
      if (row[k] != o.pad_id) {
        o.stop_ids.push_back(row[k]);
        break;
      }
  s.max_new_tokens = 30;
  ref = run(net, s, o, DecodeLoop::kPerToken);
  EXPECT_EQ(std::count(ref.stopped.begin(), ref.stopped.end(), true), 4);
  EXPECT_LT(ref.steps, s.max_new_tokens);
  for (int64_t k : sync_every) expect_same(run(net, s, o, DecodeLoop::kOnDevice, k), ref, k, s.max_new_tokens);
}

TEST(GenerateDevice, GreedyEqualsThePerTokenLoop) {
  auto c = tiny_config();
  Transformer net(c, tiny_weights(c, 11), torch::kFloat32, torch::kCPU);
  SamplingConfig s;
  s.temperature = 0;
  check_loops_agree(net, s, {});
}

TEST(GenerateDevice, SampledWithASeedEqualsThePerTokenLoop) {
  auto c = tiny_config();
  Transformer net(c, tiny_weights(c, 5), torch::kFloat32, torch::kCPU);
  SamplingConfig s;
  s.temperature = 0.8;
  s.seed = 42;
  check_loops_agree(net, s, {});
  s.top_k = 20;
  s.top_p = 0.9;
  s.seed = 7;
  check_loops_agree(net, s, {});
}

TEST(GenerateDevice, RowSeedsEqualThePerTokenLoop) {
  auto c = tiny_config();
  Transformer net(c, tiny_weights(c, 5), torch::kFloat32, torch::kCPU);
  SamplingConfig s;
  s.temperature = 1.0;
  GenerateOptions o;
  o.row_seeds = {11, 12, 13, 14};
  check_loops_agree(net, s, o);
  s.top_p = 0.8;
  check_loops_agree(net, s, o);
}

// A larger vocabulary and bf16 weights take other paths of the CPU kernels (vectorised noise,
// rounding); the two loops still agree.
TEST(GenerateDevice, LargerVocabularyAndBf16EqualThePerTokenLoop) {
  auto c = tiny_config();
  c.vocab_size = 600;
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    SCOPED_TRACE(c10::toString(dtype));
    Transformer net(c, tiny_weights(c, 3), dtype, torch::kCPU);
    SamplingConfig s;
    s.temperature = 1.0;
    s.seed = 9;
    check_loops_agree(net, s, {}, {8});
    GenerateOptions o;
    o.row_seeds = {1, 2, 3, 4};
    check_loops_agree(net, s, o, {8});
  }
}

TEST(GenerateDevice, EdgeLengthsEqualThePerTokenLoop) {
  auto c = tiny_config();
  Transformer net(c, tiny_weights(c, 11), torch::kFloat32, torch::kCPU);
  SamplingConfig s;
  s.temperature = 0.9;
  s.seed = 3;
  GenerateOptions o;
  for (int64_t n : {0, 1, 2}) {
    SCOPED_TRACE("max_new_tokens " + std::to_string(n));
    s.max_new_tokens = n;
    auto ref = run(net, s, o, DecodeLoop::kPerToken);
    EXPECT_EQ(ref.steps, n);
    expect_same(run(net, s, o, DecodeLoop::kOnDevice), ref, 8, s.max_new_tokens);
  }
  // A row whose first token is a stop id; one prompt alone.
  s.max_new_tokens = 10;
  auto free_run = run(net, s, o, DecodeLoop::kPerToken, 8, {{3, 4}});
  o.stop_ids = {free_run.tokens[0][0]};
  auto ref = run(net, s, o, DecodeLoop::kPerToken, 8, {{3, 4}});
  ASSERT_EQ(ref.tokens[0].size(), 1u);
  EXPECT_TRUE(ref.stopped[0]);
  expect_same(run(net, s, o, DecodeLoop::kOnDevice, 8, {{3, 4}}), ref, 8, s.max_new_tokens);
}

// on_token needs every token on the host: it forces the per-token loop.
TEST(GenerateDevice, OnTokenForcesThePerTokenLoop) {
  auto c = tiny_config();
  Transformer net(c, tiny_weights(c, 11), torch::kFloat32, torch::kCPU);
  SamplingConfig s;
  s.temperature = 0;
  s.max_new_tokens = 6;
  GenerateOptions o;
  std::vector<std::vector<int32_t>> seen(kPrompts.size());
  o.on_token = [&](size_t row, int32_t token) { seen[row].push_back(token); };
  auto g = run(net, s, o, DecodeLoop::kOnDevice, 4);
  EXPECT_EQ(seen, g.tokens);
  EXPECT_EQ(g.steps_run, g.steps);
  o.sync_every = 0;
  o.on_token = nullptr;
  EXPECT_THROW(generate(net, kPrompts, s, o), Error);
}

}  // namespace
}  // namespace rlhf
