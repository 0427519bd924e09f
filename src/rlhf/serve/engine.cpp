// The engine's thread and its decode batch.
//
// KV cache layout. A batch holds per layer K and V of [row_cap, nkv, key_cap, hd] and one
// length L shared by its rows (KVCache::length): row r's keys are the contiguous range
// [start_r, L), so every row appends its next key at L and the step is one forward over
// rows [0, n). Keys before start_r are masked out; each row's rotary position is its own
// count of tokens (L - start_r). A joining sequence's prompt is prefilled alone into a
// one-row cache and copied into the next free row so that it ends at L; a prompt longer than
// L first shifts the other rows right. When L reaches key_cap the rows are shifted left by
// the smallest start (compaction); the capacities double when that frees too little, up to
// max_batch rows and the model's context, so memory is bounded whatever the traffic. A row
// that leaves is replaced by the last row (its keys copied), keeping rows [0, n) dense; an
// empty batch restarts at L = 0. The attention kernel skips masked keys, so on the CPU a row
// computes the same numbers as when decoded alone by generate().
//
// With group_by_adapter, each adapter (and the base) has a batch of its own and the steps go
// round the batches that have rows; otherwise one batch holds every row and each row's LoRA
// terms come from its own adapter (ForwardArgs::row_adapters).
#include "rlhf/serve/engine.h"

#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "rlhf/model/generate.h"
#include "rlhf/model/transformer.h"
#include "rlhf/util/error.h"

namespace rlhf::serve {

namespace {

using Clock = std::chrono::steady_clock;

// What the submitters and the engine's thread share; guarded by mu.
struct Core;

class Sequence final : public SequenceStream {
 public:
  Sequence(SequenceRequest request, const std::shared_ptr<Core>& core)
      : req(std::move(request)), core_(core), submitted_(Clock::now()) {}

  Update wait(std::chrono::milliseconds timeout) override {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return !pending_.empty() || finish_.has_value(); });
    Update u;
    u.tokens.swap(pending_);
    u.finish = finish_;
    u.error = error_;
    return u;
  }

  void cancel() override;

  int64_t first_token_micros() const override { return first_token_micros_.load(); }

  // The engine's side. Both return false when the sequence has finished already.
  bool push(TokenEvent event) {
    std::lock_guard<std::mutex> lock(mu_);
    if (finish_) return false;
    if (first_token_micros_.load() == 0) {
      const auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - submitted_).count();
      first_token_micros_.store(std::max<int64_t>(1, us));
    }
    pending_.push_back(std::move(event));
    cv_.notify_all();
    return true;
  }
  bool finish(Finish how, std::string error = {});
  bool finished() const {
    std::lock_guard<std::mutex> lock(mu_);
    return finish_.has_value();
  }

  const SequenceRequest req;
  std::atomic<bool> cancelled{false};

 private:
  std::weak_ptr<Core> core_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<TokenEvent> pending_;
  std::optional<Finish> finish_;
  std::string error_;
  Clock::time_point submitted_;
  std::atomic<int64_t> first_token_micros_{0};
};

struct Core {
  std::mutex mu;
  std::condition_variable wake;   // the engine's thread waits here when idle
  std::condition_variable ended_cv;
  std::deque<std::shared_ptr<Sequence>> queue;
  std::vector<std::shared_ptr<Sequence>> running;  // in a batch
  bool stopping = false;   // no new submissions; the thread ends once all are done
  bool hard_stop = false;  // the thread ends at its next boundary
  bool ended = false;
  EngineStats stats;
  std::atomic<uint64_t> finished{0};
};

void Sequence::cancel() {
  cancelled.store(true);
  if (auto core = core_.lock()) {
    std::lock_guard<std::mutex> lock(core->mu);
    auto it = std::find_if(core->queue.begin(), core->queue.end(), [&](const auto& s) { return s.get() == this; });
    if (it != core->queue.end()) {
      core->queue.erase(it);
      core->stats.queued = static_cast<int64_t>(core->queue.size());
    }
    core->wake.notify_all();
  }
  finish(Finish::kCancelled);
}

bool Sequence::finish(Finish how, std::string error) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finish_) return false;
    finish_ = how;
    error_ = std::move(error);
    cv_.notify_all();
  }
  if (auto core = core_.lock()) core->finished.fetch_add(1);
  return true;
}

// A sequence in a decode batch.
struct Row {
  std::shared_ptr<Sequence> seq;
  int64_t start = 0;      // its first key in the batch's cache
  int64_t generated = 0;  // tokens produced
  int32_t feed = 0;       // the last token produced, not yet in the cache
  at::Generator gen;      // its own CPU generator, seeded with its seed
};

// Rows decoded together, with their KV cache (layout at the top of this file).
class Batch {
 public:
  Batch(const Transformer& net, int64_t max_rows) : net_(net), max_rows_(max_rows) {}

  std::vector<Row> rows;
  int64_t length() const { return L_; }

  // Adds a row whose prompt's K/V are in `prompt` (one row, `count` keys).
  void join(Row row, const KVCache& prompt) {
    const int64_t P = prompt.length, n = static_cast<int64_t>(rows.size());
    if (n == 0) L_ = 0;
    const int64_t used = L_ - lowest_start();
    if (n + 1 > row_cap_ || P > L_ || L_ + 1 > key_cap_) {
      const int64_t len = std::max(used, P);  // L after the shift
      relayout(grown(row_cap_, n + 1, max_rows_), key_capacity(len + 1), len - L_);
    }
    row.start = L_ - P;
    for (size_t l = 0; l < k_.size(); ++l) {
      k_[l][n].narrow(1, row.start, P).copy_(prompt.k[l][0].narrow(1, 0, P));
      v_[l][n].narrow(1, row.start, P).copy_(prompt.v[l][0].narrow(1, 0, P));
    }
    rows.push_back(std::move(row));
  }

  // Removes row i; the last row takes its place.
  void leave(size_t i) {
    const size_t last = rows.size() - 1;
    if (i != last) {
      const int64_t s = rows[last].start;
      for (size_t l = 0; l < k_.size(); ++l) {
        k_[l][i].narrow(1, s, L_ - s).copy_(k_[l][last].narrow(1, s, L_ - s));
        v_[l][i].narrow(1, s, L_ - s).copy_(v_[l][last].narrow(1, s, L_ - s));
      }
      rows[i] = std::move(rows[last]);
    }
    rows.pop_back();
    if (rows.empty()) L_ = 0;
  }

  // Drops the cache (an empty batch of one adapter, until its next row).
  void release() {
    if (!rows.empty()) return;
    k_.clear();
    v_.clear();
    row_cap_ = key_cap_ = L_ = 0;
  }

  // Feeds every row's pending token in one forward; returns the next-token logits [n, V].
  // `adapter` applies to all rows (group mode); `mixed`: each row's own adapter.
  torch::Tensor step(bool mixed, const LoraAdapter* adapter) {
    const int64_t n = static_cast<int64_t>(rows.size());
    if (L_ + 1 > key_cap_) {
      const int64_t len = L_ - lowest_start();
      relayout(row_cap_, key_capacity(len + 1), -lowest_start());
    }
    std::vector<int64_t> feed(n), positions(n), starts(n);
    ForwardArgs args;
    bool any_adapter = false;
    for (int64_t r = 0; r < n; ++r) {
      feed[r] = rows[r].feed;
      starts[r] = rows[r].start;
      positions[r] = L_ - rows[r].start;
      if (mixed) {
        args.row_adapters.push_back(rows[r].seq->req.adapter);
        any_adapter = any_adapter || rows[r].seq->req.adapter;
      }
    }
    if (!any_adapter) args.row_adapters.clear();
    if (!mixed && adapter) args.adapters = {adapter};
    const auto dev = net_.device();
    KVCache cache;
    for (size_t l = 0; l < k_.size(); ++l) {
      cache.k.push_back(k_[l].narrow(0, 0, n));
      cache.v.push_back(v_[l].narrow(0, 0, n));
    }
    cache.length = L_;
    args.cache = &cache;
    args.tokens = torch::tensor(feed, torch::kInt64).view({n, 1}).to(dev);
    args.positions = torch::tensor(positions, torch::kInt64).view({n, 1}).to(dev);
    auto keys = torch::arange(L_ + 1, torch::kInt64).view({1, L_ + 1});
    auto mask = keys >= torch::tensor(starts, torch::kInt64).view({n, 1});  // [n, L + 1]
    args.attn_mask = mask.view({n, 1, 1, L_ + 1}).to(dev);
    auto hidden = net_.hidden(args);
    L_ += 1;
    return net_.decode_logits(hidden.select(1, 0));
  }

 private:
  int64_t lowest_start() const {
    int64_t lo = L_;
    for (const Row& r : rows) lo = std::min(lo, r.start);
    return lo;
  }
  static int64_t grown(int64_t cap, int64_t need, int64_t limit) {
    if (need <= cap) return cap;
    return std::min(std::max(need, cap * 2), std::max(limit, need));
  }
  // Key capacity for `need` keys: grown when they would fill more than 3/4 of it (so that
  // compactions stay rare), within the context.
  int64_t key_capacity(int64_t need) const {
    const int64_t limit = std::max(net_.config().max_position, need);
    if (key_cap_ > 0 && need * 4 <= key_cap_ * 3) return key_cap_;
    if (key_cap_ >= limit) return key_cap_;
    const int64_t cap = std::max<int64_t>({need * 2, key_cap_ * 2, 64});
    return std::min(cap, limit);
  }
  // Moves the rows' keys by `shift` (within one allocation, or into a new one of the given
  // capacities).
  void relayout(int64_t row_cap, int64_t key_cap, int64_t shift) {
    const int64_t n = static_cast<int64_t>(rows.size());
    const int64_t lo = lowest_start(), used = L_ - lo;
    const auto& c = net_.config();
    const bool realloc = row_cap != row_cap_ || key_cap != key_cap_ || k_.empty();
    auto opts = torch::TensorOptions().dtype(net_.dtype()).device(net_.device());
    for (int64_t l = 0; l < c.num_layers; ++l) {
      for (auto* t : {&k_, &v_}) {
        if (realloc) {
          auto fresh = torch::zeros({row_cap, c.num_kv_heads, key_cap, c.head_dim}, opts);
          if (n > 0 && used > 0)
            fresh.narrow(0, 0, n).narrow(2, lo + shift, used).copy_((*t)[l].narrow(0, 0, n).narrow(2, lo, used));
          if (static_cast<int64_t>(t->size()) <= l) t->push_back(fresh);
          else (*t)[l] = fresh;
        } else if (shift != 0 && n > 0 && used > 0) {
          auto moved = (*t)[l].narrow(0, 0, n).narrow(2, lo, used).clone();
          (*t)[l].narrow(0, 0, n).narrow(2, lo + shift, used).copy_(moved);
        }
      }
    }
    row_cap_ = row_cap;
    key_cap_ = key_cap;
    L_ += shift;
    for (Row& r : rows) r.start += shift;
  }

  const Transformer& net_;
  const int64_t max_rows_;
  std::vector<torch::Tensor> k_, v_;  // per layer [row_cap, nkv, key_cap, hd]
  int64_t row_cap_ = 0, key_cap_ = 0;
  int64_t L_ = 0;
};

}  // namespace

struct Engine::Impl {
  Impl(const Transformer& n, const EngineOptions& o) : net(n), options(o), core(std::make_shared<Core>()) {
    core->stats.max_batch = o.max_batch;
  }

  const Transformer& net;
  const EngineOptions options;
  std::shared_ptr<Core> core;
  std::thread thread;

  // The engine's thread only:
  std::map<const LoraAdapter*, std::unique_ptr<Batch>> batches;  // one (key null) unless grouped
  const LoraAdapter* last_turn = nullptr;  // grouped: the adapter decoded last
  int64_t rows_running = 0;

  Batch& batch_for(const LoraAdapter* adapter) {
    auto& b = batches[options.group_by_adapter ? adapter : nullptr];
    if (!b) b = std::make_unique<Batch>(net, options.max_batch);
    return *b;
  }

  // Chooses the token of `row` from its logits [1, V]; reports it. Returns how the row ends,
  // if it does.
  std::optional<Finish> produce(Row& row, const torch::Tensor& logits) {
    const SequenceRequest& q = row.seq->req;
    auto dist = token_distribution(logits, q.temperature, q.top_k, q.top_p);
    int64_t token;
    if (q.temperature == 0)
      token = logits.argmax(-1).item<int64_t>();
    else
      token = torch::multinomial(dist.probs.to(torch::kCPU)[0], 1, false, row.gen).item<int64_t>();
    auto logp = dist.logp[0].to(torch::kCPU);
    TokenEvent event;
    event.token = static_cast<int32_t>(token);
    event.logprob = logp[token].item<float>();
    if (q.top_logprobs > 0) {
      auto [values, ids] = logp.topk(std::min<int64_t>(q.top_logprobs, logp.size(0)));
      auto va = values.accessor<float, 1>();
      auto ia = ids.accessor<int64_t, 1>();
      for (int64_t i = 0; i < values.size(0); ++i) event.top.emplace_back(static_cast<int32_t>(ia[i]), va[i]);
    }
    ++row.generated;
    row.feed = event.token;
    if (row.seq->push(std::move(event))) {
      std::lock_guard<std::mutex> lock(core->mu);
      core->stats.generated_tokens += 1;
    }
    if (std::find(q.stop_ids.begin(), q.stop_ids.end(), row.feed) != q.stop_ids.end()) return Finish::kStop;
    if (row.generated >= q.max_new_tokens) return Finish::kLength;
    return std::nullopt;
  }

  // Reads the prompt of `seq` alone, reports its first token and puts it in its batch.
  void start(const std::shared_ptr<Sequence>& seq) {
    const SequenceRequest& q = seq->req;
    const int64_t P = static_cast<int64_t>(q.prompt.size());
    try {
      const auto dev = net.device();
      KVCache cache = net.new_cache(1, P);
      ForwardArgs args;
      args.tokens = torch::tensor(std::vector<int64_t>(q.prompt.begin(), q.prompt.end()), torch::kInt64).view({1, P}).to(dev);
      auto key_mask = torch::ones({1, P}, torch::TensorOptions().dtype(torch::kBool).device(dev));
      args.positions = positions_from_mask(key_mask);
      args.attn_mask = make_attention_mask(key_mask, 0, P);
      args.cache = &cache;
      if (q.adapter) args.adapters = {q.adapter};
      auto logits = net.decode_logits(net.hidden(args).select(1, P - 1));  // [1, V]
      {
        std::lock_guard<std::mutex> lock(core->mu);
        core->stats.prompt_tokens += static_cast<uint64_t>(P);
      }
      Row row;
      row.seq = seq;
      row.gen = at::detail::createCPUGenerator(q.seed);
      if (auto end = produce(row, logits)) {
        leave(seq, *end);
        return;
      }
      batch_for(q.adapter).join(std::move(row), cache);
    } catch (const std::exception& e) {
      leave(seq, Finish::kError, e.what());
    }
  }

  // A sequence leaves the engine (its row, if any, is removed by the caller).
  void leave(const std::shared_ptr<Sequence>& seq, Finish how, std::string error = {}) {
    seq->finish(how, std::move(error));
    std::lock_guard<std::mutex> lock(core->mu);
    auto& run = core->running;
    run.erase(std::remove(run.begin(), run.end(), seq), run.end());
    core->stats.running = static_cast<int64_t>(run.size());
  }

  // Removes the rows whose sequences were cancelled (or finished by a shutdown).
  void drop_cancelled() {
    for (auto& [adapter, batch] : batches)
      for (size_t i = batch->rows.size(); i-- > 0;) {
        auto& seq = batch->rows[i].seq;
        if (seq->cancelled.load() || seq->finished()) {
          auto s = seq;
          batch->leave(i);
          leave(s, Finish::kCancelled);
        }
      }
  }

  // The batch to decode next: the only one, or (grouped) the next adapter's with rows.
  Batch* next_batch() {
    if (batches.empty()) return nullptr;
    auto it = batches.upper_bound(last_turn);
    for (size_t i = 0; i <= batches.size(); ++i, ++it) {
      if (it == batches.end()) it = batches.begin();
      if (!it->second->rows.empty()) {
        last_turn = it->first;
        return it->second.get();
      }
    }
    return nullptr;
  }

  void decode(Batch& batch) {
    const int64_t n = static_cast<int64_t>(batch.rows.size());
    try {
      auto logits = batch.step(!options.group_by_adapter, options.group_by_adapter ? last_turn : nullptr);
      {
        std::lock_guard<std::mutex> lock(core->mu);
        core->stats.decode_steps += 1;
        core->stats.decode_rows += static_cast<uint64_t>(n);
      }
      std::vector<std::pair<size_t, Finish>> ended;
      for (int64_t r = 0; r < n; ++r) {
        Row& row = batch.rows[r];
        if (row.seq->cancelled.load()) continue;  // leaves at the next boundary
        if (auto end = produce(row, logits.narrow(0, r, 1))) ended.emplace_back(r, *end);
      }
      for (auto it = ended.rbegin(); it != ended.rend(); ++it) {  // highest row first: leave() moves the last
        auto seq = batch.rows[it->first].seq;
        batch.leave(it->first);
        leave(seq, it->second);
      }
    } catch (const std::exception& e) {
      while (!batch.rows.empty()) {
        auto seq = batch.rows.back().seq;
        batch.leave(batch.rows.size() - 1);
        leave(seq, Finish::kError, e.what());
      }
    }
    if (options.group_by_adapter) batch.release();
  }

  int64_t total_rows() const {
    int64_t n = 0;
    for (const auto& [adapter, batch] : batches) n += static_cast<int64_t>(batch->rows.size());
    return n;
  }

  void run() {
    at::init_num_threads();  // torch's thread settings, as on the thread that set them
    torch::NoGradGuard no_grad;
    while (true) {
      drop_cancelled();
      const int64_t rows = total_rows();
      std::vector<std::shared_ptr<Sequence>> admitted;
      {
        std::unique_lock<std::mutex> lock(core->mu);
        core->wake.wait(lock, [&] { return core->hard_stop || core->stopping || rows > 0 || !core->queue.empty(); });
        if (core->hard_stop) break;
        while (!core->queue.empty() && rows + static_cast<int64_t>(admitted.size()) < options.max_batch) {
          admitted.push_back(core->queue.front());
          core->queue.pop_front();
          core->running.push_back(admitted.back());
        }
        core->stats.queued = static_cast<int64_t>(core->queue.size());
        core->stats.running = static_cast<int64_t>(core->running.size());
        if (core->stopping && rows == 0 && admitted.empty() && core->queue.empty()) break;
      }
      for (const auto& seq : admitted) {
        if (seq->cancelled.load() || seq->finished())
          leave(seq, Finish::kCancelled);
        else
          start(seq);
      }
      if (Batch* batch = next_batch()) decode(*batch);
    }
    batches.clear();
    std::lock_guard<std::mutex> lock(core->mu);
    for (auto& seq : core->running) seq->finish(Finish::kError, "the server is shutting down");
    core->running.clear();
    core->stats.running = 0;
    core->ended = true;
    core->ended_cv.notify_all();
  }

  void validate(const SequenceRequest& q) const {
    const auto& c = net.config();
    if (q.prompt.empty()) fail("a sequence needs at least one prompt token");
    for (int32_t id : q.prompt)
      if (id < 0 || id >= c.vocab_size) fail("prompt token id {} is outside the vocabulary ({})", id, c.vocab_size);
    if (q.max_new_tokens < 1) fail("max_new_tokens must be >= 1 (got {})", q.max_new_tokens);
    const int64_t P = static_cast<int64_t>(q.prompt.size());
    if (P + q.max_new_tokens > c.max_position)
      fail("prompt ({} tokens) + max_new_tokens ({}) exceed the model's context ({})", P, q.max_new_tokens,
           c.max_position);
    if (!(q.temperature >= 0) || !std::isfinite(q.temperature)) fail("temperature must be >= 0 (got {})", q.temperature);
    if (!(q.top_p > 0 && q.top_p <= 1)) fail("top_p must be in (0, 1] (got {})", q.top_p);
    if (q.top_k < 0) fail("top_k must be >= 0 (got {})", q.top_k);
    if (q.top_logprobs < 0 || q.top_logprobs > 20) fail("top_logprobs must be in [0, 20] (got {})", q.top_logprobs);
    if (q.adapter && !(net.has_adapter(q.adapter->name) && &net.adapter(q.adapter->name) == q.adapter))
      fail("adapter '{}' is not one of the model's", q.adapter->name);
  }
};

Engine::Engine(const Transformer& net, const EngineOptions& options) : impl_(std::make_unique<Impl>(net, options)) {
  if (options.max_batch < 1) fail("max_batch must be >= 1 (got {})", options.max_batch);
  if (options.max_queue < 0) fail("max_queue must be >= 0 (got {})", options.max_queue);
  impl_->thread = std::thread([this] { impl_->run(); });
}

Engine::~Engine() {
  shutdown();
  if (impl_->thread.joinable()) impl_->thread.join();
}

std::vector<std::shared_ptr<SequenceStream>> Engine::submit(std::vector<SequenceRequest> requests) {
  for (const auto& q : requests) impl_->validate(q);
  std::vector<std::shared_ptr<Sequence>> seqs;
  for (auto& q : requests) seqs.push_back(std::make_shared<Sequence>(std::move(q), impl_->core));
  Core& core = *impl_->core;
  {
    std::lock_guard<std::mutex> lock(core.mu);
    if (core.stopping) throw QueueFull("the server is shutting down");
    // Those that the free slots take at the next boundary do not wait.
    const int64_t free_slots = std::max<int64_t>(0, impl_->options.max_batch - core.stats.running);
    const int64_t waiting = static_cast<int64_t>(core.queue.size() + seqs.size()) - free_slots;
    if (waiting > impl_->options.max_queue)
      throw QueueFull(fmt::format("the queue is full ({} sequences wait)", core.queue.size()));
    for (auto& s : seqs) core.queue.push_back(s);
    core.stats.queued = static_cast<int64_t>(core.queue.size());
  }
  core.wake.notify_all();
  return {seqs.begin(), seqs.end()};
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(impl_->core->mu);
  EngineStats s = impl_->core->stats;
  s.sequences_finished = impl_->core->finished.load();
  return s;
}

void Engine::shutdown(std::chrono::milliseconds timeout) {
  Core& core = *impl_->core;
  std::vector<std::shared_ptr<Sequence>> rest;
  {
    std::unique_lock<std::mutex> lock(core.mu);
    core.stopping = true;
    core.wake.notify_all();
    if (core.ended_cv.wait_for(lock, timeout, [&] { return core.ended; })) return;
    core.hard_stop = true;
    rest.assign(core.queue.begin(), core.queue.end());
    rest.insert(rest.end(), core.running.begin(), core.running.end());
    core.queue.clear();
    core.stats.queued = 0;
    core.wake.notify_all();
  }
  for (auto& seq : rest) seq->finish(Finish::kError, "the server is shutting down");
}

}  // namespace rlhf::serve
