// Throughput of the serving engine with several adapters: N sequences of a fixed number of
// new tokens (greedy, no early stop) spread over A adapters, all submitted at once, decoded
// either in one batch that mixes adapters or grouped by adapter (each step one adapter's
// rows). Prints tokens/s of each and their ratio as one JSON line.
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "rlhf/model/model.h"
#include "rlhf/serve/engine.h"

namespace {

struct Run {
  double seconds = 0;
  int64_t tokens = 0;
  double occupancy = 0;  // rows per decode step
};

Run run(const rlhf::Transformer& net, const std::vector<rlhf::serve::SequenceRequest>& reqs, int64_t max_batch,
        bool grouped) {
  rlhf::serve::EngineOptions o;
  o.max_batch = max_batch;
  o.max_queue = static_cast<int64_t>(reqs.size());
  o.group_by_adapter = grouped;
  rlhf::serve::Engine engine(net, o);
  const auto t0 = std::chrono::steady_clock::now();
  auto streams = engine.submit(reqs);
  Run r;
  for (auto& s : streams) {
    while (true) {
      auto u = s->wait(std::chrono::milliseconds(1000));
      r.tokens += static_cast<int64_t>(u.tokens.size());
      if (u.finish) break;
    }
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto st = engine.stats();
  r.occupancy = st.decode_steps ? static_cast<double>(st.decode_rows) / static_cast<double>(st.decode_steps) : 0;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"serve_engine_bench: continuous batching with mixed vs grouped adapters"};
  const char* home = std::getenv("HOME");
  std::string model_ref = std::string(home ? home : ".") + "/.cache/rlhf/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  std::string dtype = "fp32";
  int64_t sequences = 32, new_tokens = 64, adapters = 4, max_batch = 32, rank = 8;
  int threads = 0;
  app.add_option("--model", model_ref);
  app.add_option("--dtype", dtype);
  app.add_option("--sequences", sequences);
  app.add_option("--new-tokens", new_tokens);
  app.add_option("--adapters", adapters);
  app.add_option("--max-batch", max_batch);
  app.add_option("--rank", rank);
  app.add_option("--threads", threads);
  CLI11_PARSE(app, argc, argv);
  torch::set_num_threads(threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency()));

  auto model = rlhf::load_model(model_ref, {rlhf::parse_dtype(dtype), torch::kCPU});
  auto& net = *model->net;
  std::vector<const rlhf::LoraAdapter*> ads;
  {
    torch::NoGradGuard no_grad;
    for (int64_t i = 0; i < adapters; ++i) {
      rlhf::LoraConfig lora;
      lora.rank = rank;
      lora.alpha = 2.0 * static_cast<double>(rank);
      lora.targets = {"all-linear"};
      auto& ad = net.add_adapter("bench" + std::to_string(i), lora, 100 + i);
      auto gen = at::detail::createCPUGenerator(200 + i);
      for (auto& layer : ad.b)
        for (auto& t : layer)
          if (t.defined()) t.copy_(torch::randn(t.sizes(), gen) * 0.01);
      ads.push_back(&ad);
    }
  }
  const char* topics[] = {"a robot who learns to paint", "the history of tea", "how bridges stand",
                          "a cat on a long journey", "why the sky is blue", "a city under the sea",
                          "the first winter of a fox", "numbers that never end"};
  std::vector<rlhf::serve::SequenceRequest> reqs;
  for (int64_t i = 0; i < sequences; ++i) {
    rlhf::serve::SequenceRequest q;
    q.prompt = model->encode_prompt(std::string("Write a short story about ") + topics[i % 8] + ".", /*chat=*/true);
    q.adapter = ads.empty() ? nullptr : ads[i % ads.size()];
    q.temperature = 0;
    q.max_new_tokens = new_tokens;  // no stop ids: every sequence runs the full length
    reqs.push_back(std::move(q));
  }
  run(net, std::vector<rlhf::serve::SequenceRequest>(reqs.begin(), reqs.begin() + std::min<int64_t>(4, sequences)),
      max_batch, false);  // warm-up
  const Run mixed = run(net, reqs, max_batch, false);
  const Run grouped = run(net, reqs, max_batch, true);
  const double mixed_rate = static_cast<double>(mixed.tokens) / mixed.seconds;
  const double grouped_rate = static_cast<double>(grouped.tokens) / grouped.seconds;
  std::printf(
      "{\"model\": \"%s\", \"dtype\": \"%s\", \"threads\": %d, \"sequences\": %lld, \"new_tokens\": %lld, "
      "\"adapters\": %lld, \"max_batch\": %lld, \"mixed_tokens_per_s\": %.1f, \"mixed_rows_per_step\": %.2f, "
      "\"grouped_tokens_per_s\": %.1f, \"grouped_rows_per_step\": %.2f, \"mixed_over_grouped\": %.2f}\n",
      model->reference.c_str(), dtype.c_str(), torch::get_num_threads(), static_cast<long long>(sequences),
      static_cast<long long>(new_tokens), static_cast<long long>(adapters), static_cast<long long>(max_batch),
      mixed_rate, mixed.occupancy, grouped_rate, grouped.occupancy, mixed_rate / grouped_rate);
  return 0;
}
