#include "rlhf/model/generate.h"

#include <algorithm>
#include <chrono>

#include "rlhf/util/error.h"

namespace rlhf {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Keeps the top_k largest and the smallest set of tokens whose probability reaches top_p;
// the rest become -inf. scaled: [B, V] float32 logits already divided by the temperature.
torch::Tensor filter_logits(torch::Tensor scaled, int64_t top_k, double top_p) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  if (top_k > 0 && top_k < scaled.size(-1)) {
    auto kth = std::get<0>(scaled.topk(top_k, -1)).narrow(-1, top_k - 1, 1);  // [B, 1]
    scaled = scaled.masked_fill(scaled < kth, neg_inf);
  }
  if (top_p < 1.0) {
    auto [sorted, order] = scaled.sort(-1, /*descending=*/true);
    auto probs = sorted.softmax(-1);
    // Drop a token when the mass before it already reaches top_p (the first always stays).
    auto drop_sorted = (probs.cumsum(-1) - probs) >= top_p;
    auto drop = torch::zeros_like(drop_sorted).scatter(-1, order, drop_sorted);
    scaled = scaled.masked_fill(drop, neg_inf);
  }
  return scaled;
}

// A new generator of `device` seeded with `seed` (a CPU generator on the CPU).
at::Generator new_generator(const torch::Device& device, uint64_t seed) {
  if (device.is_cpu()) return at::detail::createCPUGenerator(seed);
  auto gen = at::globalContext().getAcceleratorHooksInterface(device.type()).getNewGenerator(device.index());
  gen.set_current_seed(seed);
  return gen;
}

// The batch after its prompts are read: the KV cache, the mask of real keys and the rotary
// positions of the next tokens; both loops decode through it.
class Decoder {
 public:
  Decoder(const Transformer& net, const std::vector<std::vector<int32_t>>& prompts, int64_t max_new_tokens,
          const GenerateOptions& o)
      : net_(net), B_(static_cast<int64_t>(prompts.size())) {
    const int64_t vocab = net.config().vocab_size;
    for (size_t i = 0; i < prompts.size(); ++i) {
      if (prompts[i].empty()) fail("generate: prompt {} has no tokens", i);
      for (int32_t id : prompts[i])
        if (id < 0 || id >= vocab) fail("generate: prompt {} holds token id {} outside the vocabulary ({})", i, id, vocab);
      P_ = std::max<int64_t>(P_, static_cast<int64_t>(prompts[i].size()));
    }
    const int64_t capacity = P_ + max_new_tokens;
    if (capacity > net.config().max_position)
      fail("prompt ({} tokens) + max_new_tokens ({}) exceed the model's context ({})", P_, max_new_tokens,
           net.config().max_position);
    // Left-padded prompt ids [B, P] and the mask of real tokens [B, capacity].
    std::vector<int64_t> ids(B_ * P_, o.pad_id);
    key_mask_ = torch::zeros({B_, capacity}, torch::kBool);
    for (int64_t b = 0; b < B_; ++b) {
      const auto& p = prompts[b];
      const int64_t off = P_ - static_cast<int64_t>(p.size());
      std::copy(p.begin(), p.end(), ids.begin() + b * P_ + off);
      key_mask_[b].narrow(0, off, static_cast<int64_t>(p.size())).fill_(true);
    }
    const auto dev = net.device();
    prompt_ = torch::tensor(ids, torch::kInt64).view({B_, P_}).to(dev);
    key_mask_ = key_mask_.to(dev);
    cache_ = net.new_cache(B_, capacity);
    args_.cache = &cache_;
    args_.adapters = o.adapters;
  }
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // Runs the prompts; returns the logits of the first new token [B, V] float32.
  torch::Tensor prefill() {
    auto positions = positions_from_mask(key_mask_.narrow(1, 0, P_));  // [B, P]
    next_pos_ = positions.select(1, P_ - 1) + 1;                         // [B]
    args_.tokens = prompt_;
    args_.positions = positions;
    args_.attn_mask = make_attention_mask(key_mask_.narrow(1, 0, P_), 0, P_);
    auto h = net_.hidden(args_);                                         // [B, P, hidden]
    return net_.decode_logits(h.select(1, P_ - 1));                      // [B, V]
  }

  // Feeds the tokens chosen at decoding step `step`: feed [B] int64 and live [B] bool (rows
  // still running after it; the others are masked out from here on), both on the model's
  // device. Returns the logits of the next token [B, V].
  torch::Tensor advance(int64_t step, const torch::Tensor& feed, const torch::Tensor& live) {
    const int64_t pos = P_ + step;
    key_mask_.select(1, pos).copy_(live);
    args_.tokens = feed.view({B_, 1});
    args_.positions = next_pos_.view({B_, 1});
    next_pos_ = next_pos_ + 1;
    args_.attn_mask = make_attention_mask(key_mask_.narrow(1, 0, pos + 1), pos, 1);
    return net_.decode_logits(net_.hidden(args_).select(1, 0));
  }

 private:
  const Transformer& net_;
  int64_t B_, P_ = 0;
  torch::Tensor prompt_;     // [B, P] left-padded ids
  torch::Tensor key_mask_;   // [B, P + max_new_tokens] bool: keys that may be attended to
  torch::Tensor next_pos_;   // [B] rotary position of each row's next token
  KVCache cache_;
  ForwardArgs args_;
};

// The per-token loop: the host reads every step's ids, log-probs and stop flags; sampling on
// the CPU with CPU generators, so a seed repeats on every device.
void decode_per_token(Decoder& dec, torch::Tensor logits, int64_t B, const SamplingConfig& s, const GenerateOptions& o,
                      Generation& out) {
  const auto dev = logits.device();
  auto gen = at::detail::createCPUGenerator(s.seed);
  std::vector<at::Generator> row_gens;  // with row seeds: row b's generator
  for (uint64_t seed : o.row_seeds) row_gens.push_back(at::detail::createCPUGenerator(seed));
  auto stop = torch::tensor(std::vector<int64_t>(o.stop_ids.begin(), o.stop_ids.end()), torch::kInt64).to(dev);
  std::vector<bool> running(B, true);
  int64_t n_running = B;
  for (int64_t step = 0; step < s.max_new_tokens && n_running > 0; ++step) {
    // --- choose the next token of every sequence ---
    auto [logp, probs] = token_distribution(logits, s.temperature, s.top_k, s.top_p);
    torch::Tensor next;
    if (s.temperature == 0) {
      next = logits.argmax(-1);
    } else {
      auto probs_cpu = probs.to(torch::kCPU);
      if (row_gens.empty()) {
        next = torch::multinomial(probs_cpu, 1, false, gen).squeeze(-1).to(dev);
      } else {
        std::vector<int64_t> drawn(B, o.pad_id);
        for (int64_t b = 0; b < B; ++b)  // a finished row draws nothing: its stream stays its own
          if (running[b]) drawn[b] = torch::multinomial(probs_cpu[b], 1, false, row_gens[b]).item<int64_t>();
        next = torch::tensor(drawn, torch::kInt64).to(dev);
      }
    }
    auto chosen_logp = logp.gather(-1, next.unsqueeze(-1)).squeeze(-1);
    auto is_stop = torch::isin(next, stop);
    auto next_cpu = next.to(torch::kCPU), logp_cpu = chosen_logp.to(torch::kCPU), stop_cpu = is_stop.to(torch::kCPU);
    auto next_a = next_cpu.accessor<int64_t, 1>();
    auto logp_a = logp_cpu.accessor<float, 1>();
    auto stop_a = stop_cpu.accessor<bool, 1>();
    std::vector<int64_t> feed(B, o.pad_id);
    for (int64_t b = 0; b < B; ++b) {
      if (!running[b]) continue;
      const auto tok = static_cast<int32_t>(next_a[b]);
      out.tokens[b].push_back(tok);
      out.logprobs[b].push_back(logp_a[b]);
      feed[b] = tok;
      if (o.on_token) o.on_token(static_cast<size_t>(b), tok);
      if (stop_a[b]) {
        running[b] = false;
        out.stopped[b] = true;
        --n_running;
      }
    }
    ++out.steps;
    if (n_running == 0 || step + 1 == s.max_new_tokens) break;
    // --- feed the new tokens; finished sequences get pad, masked out from here on ---
    const std::vector<int64_t> live(running.begin(), running.end());
    logits = dec.advance(step, torch::tensor(feed, torch::kInt64).to(dev), torch::tensor(live).to(torch::kBool).to(dev));
  }
  out.steps_run = out.steps;
}

// The loop on the device: every per-row value stays in a device tensor; the host reads whether
// any row still runs every sync_every steps, and the results once at the end.
void decode_on_device(Decoder& dec, torch::Tensor logits, int64_t B, const SamplingConfig& s, const GenerateOptions& o,
                      Generation& out) {
  const auto dev = logits.device();
  const int64_t max_new = s.max_new_tokens;
  // Draws from the generators of the model's device: with row seeds one per row, each drawing
  // its row's noise (a finished row's further draws are never used, so its stream stays its own).
  auto gen = new_generator(dev, s.seed);
  std::vector<at::Generator> row_gens;
  for (uint64_t seed : o.row_seeds) row_gens.push_back(new_generator(dev, seed));
  auto stop = torch::tensor(std::vector<int64_t>(o.stop_ids.begin(), o.stop_ids.end()), torch::kInt64).to(dev);
  const auto on_dev = torch::TensorOptions().device(dev);
  auto ids = torch::full({B, max_new}, o.pad_id, on_dev.dtype(torch::kInt64));   // [B, max_new] pad after a row ends
  auto logps = torch::zeros({B, max_new}, on_dev.dtype(torch::kFloat32));        // [B, max_new]
  auto running = torch::ones({B}, on_dev.dtype(torch::kBool));                   // [B] not yet ended
  auto stopped = torch::zeros({B}, on_dev.dtype(torch::kBool));                  // [B] ended on a stop id
  auto lengths = torch::zeros({B}, on_dev.dtype(torch::kInt64));                 // [B] tokens kept
  int64_t steps_run = 0;
  for (int64_t step = 0; step < max_new; ++step) {
    // --- choose the next token of every sequence ---
    auto [logp, probs] = token_distribution(logits, s.temperature, s.top_k, s.top_p);
    torch::Tensor next;
    if (s.temperature == 0) {
      next = logits.argmax(-1);
    } else {
      // argmax(p / q) with q ~ Exp(1) is a draw from p: the one torch::multinomial makes for a
      // single sample, from the same noise, without its host-side checks of p (each a
      // synchronisation on a GPU); p always keeps a token, so it has mass.
      auto noise = torch::empty_like(probs);
      if (row_gens.empty()) {
        noise.exponential_(1, gen);
      } else {
        for (int64_t b = 0; b < B; ++b) noise[b].exponential_(1, row_gens[b]);
      }
      next = probs.div(noise).argmax(-1);
    }
    auto chosen_logp = logp.gather(-1, next.unsqueeze(-1)).squeeze(-1);
    // Stop ids by comparison with each (torch::isin may take a path through unique(), whose
    // size the host must read).
    auto is_stop = next.unsqueeze(-1).eq(stop).any(-1).logical_and_(running);
    auto feed = torch::where(running, next, static_cast<int64_t>(o.pad_id));  // finished rows: pad
    ids.select(1, step).copy_(feed);
    logps.select(1, step).copy_(chosen_logp.masked_fill(running.logical_not(), 0.0f));
    lengths.add_(running);
    stopped.logical_or_(is_stop);
    running.logical_and_(is_stop.logical_not());
    ++steps_run;
    if (step + 1 == max_new) break;
    if (steps_run % o.sync_every == 0 && !running.any().item<bool>()) break;
    // --- feed the new tokens; finished sequences get pad, masked out from here on ---
    logits = dec.advance(step, feed, running);
  }
  // The results, read once.
  auto ids_cpu = ids.narrow(1, 0, steps_run).to(torch::kCPU).contiguous();
  auto logps_cpu = logps.narrow(1, 0, steps_run).to(torch::kCPU).contiguous();
  auto lengths_cpu = lengths.to(torch::kCPU);
  auto stopped_cpu = stopped.to(torch::kCPU);
  auto ids_a = ids_cpu.accessor<int64_t, 2>();
  auto logps_a = logps_cpu.accessor<float, 2>();
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = lengths_cpu[b].item<int64_t>();
    for (int64_t k = 0; k < n; ++k) {
      out.tokens[b].push_back(static_cast<int32_t>(ids_a[b][k]));
      out.logprobs[b].push_back(logps_a[b][k]);
    }
    out.stopped[b] = stopped_cpu[b].item<bool>();
    out.steps = std::max(out.steps, n);
  }
  out.steps_run = steps_run;
}

}  // namespace

TokenDistribution token_distribution(const torch::Tensor& logits, double temperature, int64_t top_k, double top_p) {
  TokenDistribution out;
  if (temperature == 0) {
    out.logp = logits.log_softmax(-1);
    return out;
  }
  auto scaled = logits / temperature;
  out.logp = scaled.log_softmax(-1);
  out.probs = filter_logits(scaled, top_k, top_p).softmax(-1);
  return out;
}

Generation generate(const Transformer& net, const std::vector<std::vector<int32_t>>& prompts,
                    const SamplingConfig& s, const GenerateOptions& o) {
  if (prompts.empty()) fail("generate: no prompts");
  if (s.temperature < 0) fail("temperature must be >= 0 (got {})", s.temperature);
  if (s.top_p <= 0 || s.top_p > 1) fail("top_p must be in (0, 1] (got {})", s.top_p);
  if (s.top_k < 0) fail("top_k must be >= 0 (got {})", s.top_k);
  if (s.max_new_tokens < 0) fail("max_new_tokens must be >= 0 (got {})", s.max_new_tokens);
  if (o.sync_every < 1) fail("generate: sync_every must be >= 1 (got {})", o.sync_every);
  if (std::find(o.stop_ids.begin(), o.stop_ids.end(), o.pad_id) != o.stop_ids.end())
    fail("the pad id {} is also a stop id", o.pad_id);
  const int64_t B = static_cast<int64_t>(prompts.size());
  if (!o.row_seeds.empty() && static_cast<int64_t>(o.row_seeds.size()) != B)
    fail("generate: {} row seeds for {} prompts", o.row_seeds.size(), B);

  torch::NoGradGuard no_grad;
  Decoder dec(net, prompts, s.max_new_tokens, o);
  Generation out;
  out.tokens.assign(B, {});
  out.logprobs.assign(B, {});
  out.stopped.assign(B, false);

  auto t0 = Clock::now();
  auto logits = dec.prefill();
  out.prefill_seconds = seconds_since(t0);

  const bool on_device = !o.on_token && (o.loop == DecodeLoop::kOnDevice ||
                                         (o.loop == DecodeLoop::kAuto && !net.device().is_cpu()));
  t0 = Clock::now();
  if (on_device)
    decode_on_device(dec, logits, B, s, o, out);
  else
    decode_per_token(dec, logits, B, s, o, out);
  out.decode_seconds = seconds_since(t0);
  return out;
}

}  // namespace rlhf
