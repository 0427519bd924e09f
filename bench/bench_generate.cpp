// Generation throughput of rlhf on a model: tokens/s at a given batch size and dtype, greedy,
// a fixed number of new tokens (no early stop), median of several runs. Prints one JSON line.
// --loop per-token|device picks the decode loop (default: generate's choice for the device).
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "rlhf/model/generate.h"
#include "rlhf/model/model.h"
#include "rlhf/model/registry.h"

int main(int argc, char** argv) {
  CLI::App app{"bench_generate: rlhf generation throughput"};
  std::string model_ref = rlhf::kDefaultModel, dtype = "fp32", device = "cpu";
  std::string prompt = "Write a short story about a robot who learns to paint.";
  int64_t batch = 1, new_tokens = 64;
  int repeats = 5, threads = 0;
  std::string loop = "auto";
  int64_t sync_every = 8;
  bool raw = false;
  app.add_option("--model", model_ref);
  app.add_option("--dtype", dtype);
  app.add_option("--device", device);
  app.add_option("--batch", batch);
  app.add_option("--new-tokens", new_tokens);
  app.add_option("--repeats", repeats);
  app.add_option("--threads", threads);
  app.add_option("--prompt", prompt);
  app.add_option("--loop", loop)->check(CLI::IsMember({"auto", "per-token", "device"}));
  app.add_option("--sync-every", sync_every);
  app.add_flag("--raw", raw, "the prompt as it is, without the chat template (models without one)");
  CLI11_PARSE(app, argc, argv);
  torch::set_num_threads(threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency()));

  auto model = rlhf::load_model(model_ref, {rlhf::parse_dtype(dtype), rlhf::parse_device(device)});
  std::vector<std::vector<int32_t>> prompts(batch, model->encode_prompt(prompt, /*chat=*/!raw));
  rlhf::SamplingConfig s;
  s.temperature = 0;
  s.max_new_tokens = new_tokens;
  rlhf::GenerateOptions o;
  o.pad_id = model->pad_id;  // no stop ids: every sequence runs the full length
  o.loop = loop == "device" ? rlhf::DecodeLoop::kOnDevice
           : loop == "per-token" ? rlhf::DecodeLoop::kPerToken
                                 : rlhf::DecodeLoop::kAuto;
  o.sync_every = sync_every;
  rlhf::generate(*model->net, prompts, s, o);  // warm-up
  std::vector<double> rates, prefill, decode;
  for (int r = 0; r < repeats; ++r) {
    if (device != "cpu") torch::cuda::synchronize();
    auto t0 = std::chrono::steady_clock::now();
    auto out = rlhf::generate(*model->net, prompts, s, o);
    if (device != "cpu") torch::cuda::synchronize();
    double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    int64_t n = 0;
    for (auto& t : out.tokens) n += static_cast<int64_t>(t.size());
    rates.push_back(static_cast<double>(n) / sec);
    prefill.push_back(out.prefill_seconds);
    decode.push_back(out.decode_seconds);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::printf("{\"impl\": \"rlhf\", \"batch\": %lld, \"dtype\": \"%s\", \"device\": \"%s\", \"loop\": \"%s\", \"prompt_tokens\": %zu, "
              "\"new_tokens\": %lld, \"tokens_per_s\": %.2f, \"prefill_s\": %.3f, \"decode_s\": %.3f}\n",
              static_cast<long long>(batch), dtype.c_str(), device.c_str(), loop.c_str(), prompts[0].size(),
              static_cast<long long>(new_tokens), median(rates), median(prefill), median(decode));
  return 0;
}
