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

}  // namespace

Generation generate(const Transformer& net, const std::vector<std::vector<int32_t>>& prompts,
                    const SamplingConfig& s, const GenerateOptions& o) {
  if (prompts.empty()) fail("generate: no prompts");
  if (s.temperature < 0) fail("temperature must be >= 0 (got {})", s.temperature);
  if (s.top_p <= 0 || s.top_p > 1) fail("top_p must be in (0, 1] (got {})", s.top_p);
  if (s.top_k < 0) fail("top_k must be >= 0 (got {})", s.top_k);
  if (s.max_new_tokens < 0) fail("max_new_tokens must be >= 0 (got {})", s.max_new_tokens);
  if (std::find(o.stop_ids.begin(), o.stop_ids.end(), o.pad_id) != o.stop_ids.end())
    fail("the pad id {} is also a stop id", o.pad_id);
  const int64_t vocab = net.config().vocab_size;

  torch::NoGradGuard no_grad;
  const int64_t B = static_cast<int64_t>(prompts.size());
  int64_t P = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty()) fail("generate: prompt {} has no tokens", i);
    for (int32_t id : prompts[i])
      if (id < 0 || id >= vocab) fail("generate: prompt {} holds token id {} outside the vocabulary ({})", i, id, vocab);
    P = std::max<int64_t>(P, static_cast<int64_t>(prompts[i].size()));
  }
  const int64_t capacity = P + s.max_new_tokens;
  if (capacity > net.config().max_position)
    fail("prompt ({} tokens) + max_new_tokens ({}) exceed the model's context ({})", P, s.max_new_tokens,
         net.config().max_position);

  // Left-padded prompt ids [B, P] and the mask of real tokens [B, capacity].
  std::vector<int64_t> ids(B * P, o.pad_id);
  auto key_mask = torch::zeros({B, capacity}, torch::kBool);
  for (int64_t b = 0; b < B; ++b) {
    const auto& p = prompts[b];
    const int64_t off = P - static_cast<int64_t>(p.size());
    std::copy(p.begin(), p.end(), ids.begin() + b * P + off);
    key_mask[b].narrow(0, off, static_cast<int64_t>(p.size())).fill_(true);
  }
  const auto dev = net.device();
  auto tokens = torch::tensor(ids, torch::kInt64).view({B, P}).to(dev);
  key_mask = key_mask.to(dev);
  auto positions = positions_from_mask(key_mask.narrow(1, 0, P));   // [B, P]
  auto next_pos = positions.select(1, P - 1) + 1;                     // [B]

  KVCache cache = net.new_cache(B, capacity);
  ForwardArgs args;
  args.cache = &cache;
  args.adapters = o.adapters;

  auto gen = at::detail::createCPUGenerator(s.seed);
  std::vector<at::Generator> row_gens;  // with row seeds: row b's generator
  if (!o.row_seeds.empty() && static_cast<int64_t>(o.row_seeds.size()) != B)
    fail("generate: {} row seeds for {} prompts", o.row_seeds.size(), B);
  for (uint64_t seed : o.row_seeds) row_gens.push_back(at::detail::createCPUGenerator(seed));
  auto stop = torch::tensor(std::vector<int64_t>(o.stop_ids.begin(), o.stop_ids.end()), torch::kInt64).to(dev);

  Generation out;
  out.tokens.assign(B, {});
  out.logprobs.assign(B, {});
  out.stopped.assign(B, false);
  std::vector<bool> running(B, true);
  int64_t n_running = B;

  auto t0 = Clock::now();
  args.tokens = tokens;
  args.positions = positions;
  args.attn_mask = make_attention_mask(key_mask.narrow(1, 0, P), 0, P);
  auto h = net.hidden(args);                                  // [B, P, hidden]
  auto logits = net.decode_logits(h.select(1, P - 1));              // [B, V]
  out.prefill_seconds = seconds_since(t0);

  t0 = Clock::now();
  for (int64_t step = 0; step < s.max_new_tokens && n_running > 0; ++step) {
    // --- choose the next token of every sequence ---
    torch::Tensor next, logp;
    if (s.temperature == 0) {
      next = logits.argmax(-1);
      logp = logits.log_softmax(-1);
    } else {
      auto scaled = logits / s.temperature;
      logp = scaled.log_softmax(-1);
      auto probs = filter_logits(scaled, s.top_k, s.top_p).softmax(-1);
      // Sampled on the CPU with our own generator, so a seed repeats on every device.
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
    const int64_t pos = P + step;
    const std::vector<int64_t> live(running.begin(), running.end());  // finished rows stay masked
    key_mask.select(1, pos).copy_(torch::tensor(live).to(torch::kBool));
    args.tokens = torch::tensor(feed, torch::kInt64).view({B, 1}).to(dev);
    args.positions = next_pos.view({B, 1});
    next_pos = next_pos + 1;
    args.attn_mask = make_attention_mask(key_mask.narrow(1, 0, pos + 1), pos, 1);
    logits = net.decode_logits(net.hidden(args).select(1, 0));
  }
  out.decode_seconds = seconds_since(t0);
  return out;
}

}  // namespace rlhf
