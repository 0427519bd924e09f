// The serving engine on a tiny fp32 model: sequences decoded in one continuous batch (joining
// while others run, mixing adapters) return exactly what generate() returns for each alone;
// cancel, a full queue, top log-probs and shutdown.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <thread>

#include "rlhf/model/generate.h"
#include "rlhf/model/transformer.h"
#include "rlhf/serve/engine.h"
#include "rlhf/serve/serving_model.h"
#include "rlhf/util/error.h"
#include "serve_fixture.h"
#include "tiny_model.h"

namespace rlhf::serve {
namespace {

using namespace std::chrono_literals;
using testing::tiny_config;
using testing::tiny_weights;

constexpr auto kLimit = 20s;  // no wait in these tests comes near it

// A stream's events, read as they arrive.
struct Reader {
  explicit Reader(std::shared_ptr<SequenceStream> s) : stream(std::move(s)) {}
  std::shared_ptr<SequenceStream> stream;
  std::vector<TokenEvent> events;
  std::optional<Finish> finish;
  std::string error;

  void poll(std::chrono::milliseconds timeout = 50ms) {
    auto u = stream->wait(timeout);
    for (auto& e : u.tokens) events.push_back(std::move(e));
    if (u.finish) {
      finish = u.finish;
      error = u.error;
    }
  }
  // Reads until `n` tokens arrived or the stream finished.
  void until_tokens(size_t n) {
    const auto end = std::chrono::steady_clock::now() + kLimit;
    while (events.size() < n && !finish && std::chrono::steady_clock::now() < end) poll();
  }
  void until_done() {
    const auto end = std::chrono::steady_clock::now() + kLimit;
    while (!finish && std::chrono::steady_clock::now() < end) poll();
    ASSERT_TRUE(finish.has_value()) << "the sequence did not finish";
  }
  std::vector<int32_t> tokens() const {
    std::vector<int32_t> out;
    for (const auto& e : events) out.push_back(e.token);
    return out;
  }
  std::vector<float> logprobs() const {
    std::vector<float> out;
    for (const auto& e : events) out.push_back(e.logprob);
    return out;
  }
};

Reader submit_one(Engine& engine, const SequenceRequest& q) {
  return Reader{engine.submit({q}).at(0)};
}

// Waits until `pred(engine.stats())` holds; false when it never did.
template <class Pred>
bool wait_for_stats(const Engine& engine, Pred pred) {
  const auto end = std::chrono::steady_clock::now() + kLimit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred(engine.stats())) return true;
    std::this_thread::sleep_for(1ms);
  }
  return false;
}

SequenceRequest request(std::vector<int32_t> prompt, int64_t max_new, double temperature = 0, uint64_t seed = 0,
                        const LoraAdapter* adapter = nullptr) {
  SequenceRequest q;
  q.prompt = std::move(prompt);
  q.max_new_tokens = max_new;
  q.temperature = temperature;
  q.seed = seed;
  q.adapter = adapter;
  q.stop_ids = {96};
  if (temperature > 0) {
    q.top_k = 40;
    q.top_p = 0.9;
  }
  return q;
}

// The same without stop ids: it runs its full length.
SequenceRequest no_stop(SequenceRequest q) {
  q.stop_ids.clear();
  return q;
}

// What generate() returns for the sequence alone; its seed as the row seed or as the batch's.
Generation alone(const Transformer& net, const SequenceRequest& q, bool row_seed) {
  SamplingConfig s;
  s.temperature = q.temperature;
  s.top_k = q.top_k;
  s.top_p = q.top_p;
  s.max_new_tokens = q.max_new_tokens;
  s.seed = row_seed ? 12345 : q.seed;
  GenerateOptions o;
  o.stop_ids = q.stop_ids;
  o.pad_id = 0;
  if (q.adapter) o.adapters = {q.adapter};
  if (row_seed) o.row_seeds = {q.seed};
  return generate(net, {q.prompt}, s, o);
}

// Exactly for the base model; with adapters to fp32 rounding (the LoRA products of several
// rows run through the BLAS in another order than one row's).
void expect_same_as_alone(const Transformer& net, const SequenceRequest& q, const Reader& r, bool row_seed,
                          const std::string& what, float tolerance = 0) {
  SCOPED_TRACE(what);
  auto ref = alone(net, q, row_seed);
  EXPECT_EQ(r.tokens(), ref.tokens[0]);
  if (tolerance == 0) {
    EXPECT_EQ(r.logprobs(), ref.logprobs[0]);
  } else {
    auto got = r.logprobs();
    ASSERT_EQ(got.size(), ref.logprobs[0].size());
    for (size_t k = 0; k < got.size(); ++k) EXPECT_NEAR(got[k], ref.logprobs[0][k], tolerance) << "token " << k;
  }
  ASSERT_TRUE(r.finish.has_value());
  EXPECT_EQ(*r.finish, ref.stopped[0] ? Finish::kStop : Finish::kLength);
}

std::vector<int32_t> prompt_of(int64_t len, int32_t first) {
  std::vector<int32_t> p;
  for (int64_t i = 0; i < len; ++i) p.push_back(static_cast<int32_t>((first + 7 * i) % 90 + 1));
  return p;
}

// A rank-4 adapter on every projection with non-zero weights.
const LoraAdapter& make_adapter(Transformer& net, const std::string& name, uint64_t seed) {
  LoraConfig lora;
  lora.rank = 4;
  lora.alpha = 8;
  lora.targets = {"all-linear"};
  auto& ad = net.add_adapter(name, lora, seed);
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed + 100);
  for (auto& layer : ad.b)
    for (auto& t : layer)
      if (t.defined()) t.copy_(torch::randn(t.sizes(), gen) * 0.5);
  return ad;
}

class ServeEngineTest : public ::testing::Test {
 protected:
  ServeEngineTest() : config_(tiny_config()), net_(config_, tiny_weights(config_, 11), torch::kFloat32, torch::kCPU) {}
  ModelConfig config_;
  Transformer net_;
};

TEST_F(ServeEngineTest, StaggeredSequencesEqualGenerateAlone) {
  EngineOptions o;
  o.max_batch = 4;
  o.max_queue = 16;
  Engine engine(net_, o);
  // A long first sequence; the others join while it runs, some longer prompts than the
  // batch's history (the rows shift), some waiting in the queue for a slot.
  std::vector<SequenceRequest> reqs = {
      request(prompt_of(3, 1), 110),
      request(prompt_of(9, 2), 40, 0.8, 7),
      request(prompt_of(1, 3), 30),
      request(prompt_of(60, 4), 50, 1.0, 9),
      request(prompt_of(5, 5), 60, 0.7, 11),
      request(prompt_of(20, 6), 25),
      request(prompt_of(2, 7), 70, 1.2, 13),
  };
  std::vector<Reader> readers;
  readers.push_back(submit_one(engine, reqs[0]));
  readers[0].until_tokens(2);
  readers.push_back(submit_one(engine, reqs[1]));
  readers[1].until_tokens(3);
  readers.push_back(submit_one(engine, reqs[2]));
  readers[2].until_tokens(1);
  for (size_t i = 3; i < reqs.size(); ++i) readers.push_back(submit_one(engine, reqs[i]));
  for (auto& r : readers) r.until_done();
  for (size_t i = 0; i < reqs.size(); ++i) {
    expect_same_as_alone(net_, reqs[i], readers[i], /*row_seed=*/i % 2 == 0, "sequence " + std::to_string(i));
    EXPECT_GT(readers[i].stream->first_token_micros(), 0);
  }
  auto st = engine.stats();
  EXPECT_EQ(st.sequences_finished, reqs.size());
  EXPECT_EQ(st.running, 0);
  EXPECT_EQ(st.queued, 0);
  EXPECT_GT(st.decode_rows, st.decode_steps);  // some steps decoded several rows
  uint64_t generated = 0, prompt = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    generated += readers[i].events.size();
    prompt += reqs[i].prompt.size();
  }
  EXPECT_EQ(st.generated_tokens, generated);
  EXPECT_EQ(st.prompt_tokens, prompt);
}

TEST_F(ServeEngineTest, MixedAdaptersEqualEachAloneMixedOrGrouped) {
  const LoraAdapter& a = make_adapter(net_, "a", 1);
  const LoraAdapter& b = make_adapter(net_, "b", 2);
  std::vector<SequenceRequest> reqs = {
      request(prompt_of(4, 1), 30, 0, 0, nullptr), request(prompt_of(6, 2), 30, 0, 0, &a),
      request(prompt_of(3, 3), 30, 0, 0, &b),      request(prompt_of(7, 4), 25, 0.9, 3, &a),
      request(prompt_of(2, 5), 35, 0.9, 4, &b),    request(prompt_of(5, 6), 20, 0.9, 5, nullptr),
  };
  for (bool grouped : {false, true}) {
    SCOPED_TRACE(grouped ? "grouped by adapter" : "mixed");
    EngineOptions o;
    o.max_batch = 8;
    o.group_by_adapter = grouped;
    Engine engine(net_, o);
    std::vector<Reader> readers;
    for (auto& s : engine.submit(reqs)) readers.push_back(Reader{s});
    for (auto& r : readers) r.until_done();
    for (size_t i = 0; i < reqs.size(); ++i)
      expect_same_as_alone(net_, reqs[i], readers[i], /*row_seed=*/true, "sequence " + std::to_string(i), 1e-5f);
    auto st = engine.stats();
    EXPECT_GT(st.decode_rows, st.decode_steps);
    if (grouped) {
      // Each step decodes one adapter's rows: at most 2 here.
      EXPECT_LE(st.decode_rows, 2 * st.decode_steps);
    }
  }
  // The adapters change the output: the comparison above is not trivially the base's.
  auto base = alone(net_, request(prompt_of(6, 2), 30), true);
  auto with_a = alone(net_, reqs[1], true);
  EXPECT_NE(base.logprobs[0], with_a.logprobs[0]);
}

TEST_F(ServeEngineTest, CancelFreesTheSlot) {
  EngineOptions o;
  o.max_batch = 2;
  o.max_queue = 4;
  Engine engine(net_, o);
  auto r0 = submit_one(engine, no_stop(request(prompt_of(3, 1), 120)));
  auto r1 = submit_one(engine, no_stop(request(prompt_of(3, 2), 120)));
  auto r2 = submit_one(engine, no_stop(request(prompt_of(3, 3), 20)));
  auto r3 = submit_one(engine, no_stop(request(prompt_of(3, 4), 20)));
  r0.until_tokens(1);
  r1.until_tokens(1);
  // A queued sequence cancelled leaves the queue at once.
  r3.stream->cancel();
  r3.until_done();
  EXPECT_EQ(*r3.finish, Finish::kCancelled);
  EXPECT_TRUE(r3.events.empty());
  // A running one cancelled: the queued sequence takes its slot.
  r0.stream->cancel();
  r0.until_done();
  EXPECT_EQ(*r0.finish, Finish::kCancelled);
  EXPECT_LT(r0.events.size(), 120u);
  r2.until_done();
  EXPECT_EQ(*r2.finish, Finish::kLength);
  EXPECT_EQ(r2.events.size(), 20u);
  // With nothing queued, cancelling the last running one empties the batch.
  r1.stream->cancel();
  r1.stream->cancel();  // idempotent
  r1.until_done();
  EXPECT_EQ(*r1.finish, Finish::kCancelled);
  EXPECT_TRUE(wait_for_stats(engine, [](const EngineStats& s) { return s.running == 0 && s.queued == 0; }));
  EXPECT_EQ(engine.stats().sequences_finished, 4u);
  // Running drops as soon as one of two running rows is cancelled.
  auto r4 = submit_one(engine, no_stop(request(prompt_of(3, 5), 120)));
  auto r5 = submit_one(engine, no_stop(request(prompt_of(3, 6), 120)));
  r4.until_tokens(1);
  r5.until_tokens(1);
  ASSERT_TRUE(wait_for_stats(engine, [](const EngineStats& s) { return s.running == 2; }));
  r4.stream->cancel();
  EXPECT_TRUE(wait_for_stats(engine, [](const EngineStats& s) { return s.running == 1; }));
  r5.stream->cancel();
  EXPECT_TRUE(wait_for_stats(engine, [](const EngineStats& s) { return s.running == 0; }));
  // The engine goes on: a later sequence equals generate() alone.
  auto q = no_stop(request(prompt_of(4, 8), 12));
  auto r6 = submit_one(engine, q);
  r6.until_done();
  expect_same_as_alone(net_, q, r6, true, "after cancels");
}

TEST_F(ServeEngineTest, QueueFullAndBadRequests) {
  EngineOptions o;
  o.max_batch = 1;
  o.max_queue = 2;
  Engine engine(net_, o);
  // One slot and two places: four at once do not fit, all or none.
  std::vector<SequenceRequest> four(4, no_stop(request(prompt_of(3, 1), 120)));
  EXPECT_THROW(engine.submit(four), QueueFull);
  EXPECT_EQ(engine.stats().queued, 0);
  auto three = engine.submit(std::vector<SequenceRequest>(3, no_stop(request(prompt_of(3, 1), 120))));
  EXPECT_THROW(engine.submit({no_stop(request(prompt_of(3, 2), 5))}), QueueFull);
  // A cancelled queued sequence frees its place.
  three[2]->cancel();
  auto again = engine.submit({no_stop(request(prompt_of(3, 2), 5))});
  EXPECT_EQ(again.size(), 1u);
  // Requests the model cannot take.
  EXPECT_THROW(engine.submit({request({}, 5)}), Error);
  EXPECT_THROW(engine.submit({request({1, 97}, 5)}), Error);
  EXPECT_THROW(engine.submit({no_stop(request(prompt_of(100, 1), 29))}), Error);  // 129 > context 128
  EXPECT_THROW(engine.submit({no_stop(request(prompt_of(3, 1), 0))}), Error);
  auto bad_top = no_stop(request(prompt_of(3, 1), 5));
  bad_top.top_logprobs = 21;
  EXPECT_THROW(engine.submit({bad_top}), Error);
  for (auto& s : three) s->cancel();
  again[0]->cancel();
}

TEST_F(ServeEngineTest, TopLogprobsMatchTheLogSoftmaxOfTheLogits) {
  EngineOptions o;
  Engine engine(net_, o);
  auto greedy = request(prompt_of(5, 1), 12);
  greedy.top_logprobs = 5;
  greedy.stop_ids = {};
  auto sampled = request(prompt_of(4, 2), 12, 0.7, 21);
  sampled.top_logprobs = 3;
  sampled.stop_ids = {};
  for (const auto& q : {greedy, sampled}) {
    SCOPED_TRACE(q.temperature == 0 ? "greedy" : "sampled");
    auto r = submit_one(engine, q);
    r.until_done();
    ASSERT_EQ(r.events.size(), 12u);
    // The logits of every position of prompt + completion in one forward, no cache.
    std::vector<int64_t> ids(q.prompt.begin(), q.prompt.end());
    for (const auto& e : r.events) ids.push_back(e.token);
    const int64_t T = static_cast<int64_t>(ids.size()), P = static_cast<int64_t>(q.prompt.size());
    torch::NoGradGuard no_grad;
    auto key_mask = torch::ones({1, T}, torch::kBool);
    ForwardArgs args;
    args.tokens = torch::tensor(ids, torch::kInt64).view({1, T});
    args.positions = positions_from_mask(key_mask);
    args.attn_mask = make_attention_mask(key_mask, 0, T);
    auto logits = net_.logits(net_.hidden(args))[0];  // [T, V]
    const double temp = q.temperature == 0 ? 1.0 : q.temperature;
    auto logp = (logits / temp).log_softmax(-1);
    for (size_t k = 0; k < r.events.size(); ++k) {
      auto row = logp[P - 1 + static_cast<int64_t>(k)];
      const auto& e = r.events[k];
      EXPECT_NEAR(e.logprob, row[e.token].item<float>(), 1e-4) << "token " << k;
      ASSERT_EQ(e.top.size(), static_cast<size_t>(q.top_logprobs));
      auto [values, order] = row.topk(q.top_logprobs);
      for (int64_t i = 0; i < q.top_logprobs; ++i) {
        EXPECT_EQ(e.top[i].first, order[i].item<int64_t>()) << "token " << k << " rank " << i;
        EXPECT_NEAR(e.top[i].second, values[i].item<float>(), 1e-4) << "token " << k << " rank " << i;
      }
      if (q.temperature == 0) {
        EXPECT_EQ(e.top[0].first, e.token);
        EXPECT_EQ(e.top[0].second, e.logprob);
      }
    }
  }
}

TEST_F(ServeEngineTest, ShutdownFinishesRunningSequences) {
  {
    EngineOptions o;
    o.max_batch = 2;
    Engine engine(net_, o);
    std::vector<SequenceRequest> reqs;
    for (int i = 0; i < 4; ++i) {
      reqs.push_back(request(prompt_of(3 + i, i), 30));
      reqs.back().stop_ids = {};
    }
    std::vector<Reader> readers;
    for (auto& s : engine.submit(reqs)) readers.push_back(Reader{s});
    readers[0].until_tokens(1);
    engine.shutdown(std::chrono::milliseconds(10000));
    EXPECT_THROW(engine.submit({request(prompt_of(3, 1), 5)}), QueueFull);
    for (size_t i = 0; i < readers.size(); ++i) {
      readers[i].until_done();
      EXPECT_EQ(*readers[i].finish, Finish::kLength) << i;
      EXPECT_EQ(readers[i].events.size(), 30u) << i;
    }
    engine.shutdown();  // idempotent
    EXPECT_EQ(engine.stats().sequences_finished, 4u);
  }
  {
    // Past the grace time the rest end with an error.
    EngineOptions o;
    o.max_batch = 1;
    Engine engine(net_, o);
    auto running = submit_one(engine, no_stop(request(prompt_of(3, 1), 120)));
    auto queued = submit_one(engine, no_stop(request(prompt_of(3, 2), 120)));
    running.until_tokens(1);
    engine.shutdown(std::chrono::milliseconds(0));
    running.until_done();
    queued.until_done();
    EXPECT_EQ(*running.finish, Finish::kError);
    EXPECT_EQ(running.error, "the server is shutting down");
    EXPECT_EQ(*queued.finish, Finish::kError);
    EXPECT_TRUE(queued.events.empty());
  }
}

TEST(ServeEngineRowAdapters, EachRowTakesItsOwnAdapter) {
  // One forward over rows with different adapters equals each row's forward with its adapter.
  auto c = tiny_config();
  Transformer net(c, tiny_weights(c, 3), torch::kFloat32, torch::kCPU);
  const LoraAdapter& a = make_adapter(net, "a", 1);
  const LoraAdapter& b = make_adapter(net, "b", 2);
  torch::NoGradGuard no_grad;
  const int64_t T = 6;
  auto tokens = torch::randint(1, c.vocab_size, {4, T}, torch::kInt64);
  auto key_mask = torch::ones({4, T}, torch::kBool);
  ForwardArgs args;
  args.tokens = tokens;
  args.positions = positions_from_mask(key_mask);
  args.attn_mask = make_attention_mask(key_mask, 0, T);
  args.row_adapters = {&a, nullptr, &b, &a};
  auto mixed = net.logits(net.hidden(args));
  const std::vector<const LoraAdapter*> each = {&a, nullptr, &b, &a};
  for (int64_t r = 0; r < 4; ++r) {
    ForwardArgs one;
    one.tokens = tokens.narrow(0, r, 1);
    one.positions = args.positions.narrow(0, r, 1);
    one.attn_mask = args.attn_mask.narrow(0, r, 1);
    if (each[r]) one.adapters = {each[r]};
    auto alone = net.logits(net.hidden(one));
    EXPECT_TRUE(torch::allclose(mixed.narrow(0, r, 1), alone, 1e-5, 1e-5)) << "row " << r;
  }
}

TEST(ServingModelLoad, WithoutModelTheBaseIsTheFirstAdaptersAndOthersMustShareIt) {
  const auto dir = rlhf::testing::scratch_dir();
  testing::write_tiny_hf_model(dir / "base", 7);
  testing::write_tiny_hf_model(dir / "other", 8);
  for (const char* base : {"base", "other"}) {
    auto m = load_model((dir / base).string(), {torch::kFloat32, torch::kCPU});
    testing::write_default_policy(*m, (dir / base).string(), std::string("p_") + base, dir / (std::string("p_") + base),
                                  3, "Say:");
  }
  ServingModelOptions o;
  o.dtype = "fp32";
  o.adapters = {{"tuned", (dir / "p_base").string()}};
  auto s = ServingModel::load(o);
  EXPECT_EQ(s->base().sha256, model_content_hash((dir / "base").string()));
  EXPECT_EQ(s->base().id, (dir / "base").string());  // the reference the policy recorded
  ASSERT_EQ(s->models().size(), 2u);
  EXPECT_EQ(s->models()[1].id, "tuned");
  EXPECT_EQ(s->models()[1].parent, s->base().id);
  // An adapter trained on another base is refused, naming its flag and the sha256 check.
  o.adapters.push_back({"stranger", (dir / "p_other").string()});
  try {
    ServingModel::load(o);
    ADD_FAILURE() << "an adapter on another base was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--adapter stranger="), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("sha256"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace rlhf::serve
