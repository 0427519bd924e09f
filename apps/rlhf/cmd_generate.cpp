// rlhf generate: sample completions from a model (streams one prompt; prints a batch).
#include <torch/torch.h>

#include <cstdio>
#include <memory>

#include "commands.h"
#include "rlhf/model/generate.h"
#include "rlhf/model/model.h"

namespace rlhf::cli {
namespace {

struct GenerateFlags {
  CommonFlags common;
  std::vector<std::string> prompts;
  bool chat = false;
  SamplingConfig sampling;
};

int run_generate(const GenerateFlags& g) {
  const CommonFlags& c = g.common;
  apply_threads(c.threads);
  auto model = load_model(c.model, {parse_dtype(c.dtype), parse_device(c.device)});
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& p : g.prompts) prompts.push_back(model->encode_prompt(p, g.chat));

  GenerateOptions opts;
  opts.stop_ids = model->stop_ids;
  opts.pad_id = model->pad_id;
  const bool stream = prompts.size() == 1;
  text::StreamDecoder decoder(*model->tokenizer, /*skip_special=*/true);
  if (stream) {
    opts.on_token = [&](size_t, int32_t tok) {
      std::string s = decoder.push(tok);
      std::fwrite(s.data(), 1, s.size(), stdout);
      std::fflush(stdout);
    };
  }
  Generation out = generate(*model->net, prompts, g.sampling, opts);
  if (stream) {
    std::string rest = decoder.flush();
    std::fwrite(rest.data(), 1, rest.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);  // the completion, then the statistics on stderr
  } else {
    for (size_t i = 0; i < out.tokens.size(); ++i) {
      std::string text = model->tokenizer->decode(out.tokens[i], /*skip_special=*/true);
      std::printf("[%zu] %s\n", i, text.c_str());
    }
    std::fflush(stdout);
  }
  int64_t n = 0;
  for (const auto& t : out.tokens) n += static_cast<int64_t>(t.size());
  std::fprintf(stderr, "[rlhf] %lld tokens in %.2f s (%.1f tokens/s), prefill %.2f s\n", static_cast<long long>(n),
               out.decode_seconds + out.prefill_seconds,
               n / std::max(1e-9, out.decode_seconds + out.prefill_seconds), out.prefill_seconds);
  return 0;
}

}  // namespace

Command add_generate(CLI::App& app) {
  auto f = std::make_shared<GenerateFlags>();
  auto* g = app.add_subcommand("generate", "sample a completion from a model (streams to stdout)");
  add_common(g, f->common);
  g->add_option("--prompt,-p", f->prompts, "prompt text (repeat for a batch)")->required();
  g->add_flag("--chat", f->chat, "format the prompt with the model's chat template");
  g->add_option("--max-new-tokens,-n", f->sampling.max_new_tokens, "tokens to generate at most")
      ->capture_default_str()->check(whole_in(0, 1 << 20));
  g->add_option("--temperature,-t", f->sampling.temperature, "0 = greedy")->capture_default_str()
      ->check(real_in(0.0, 100.0));
  g->add_option("--top-p", f->sampling.top_p, "nucleus sampling mass")->capture_default_str()
      ->check(real_in(0.0, 1.0));
  g->add_option("--top-k", f->sampling.top_k, "keep the k most likely tokens (0 = off)")->capture_default_str()
      ->check(whole_in(0, INT32_MAX));
  g->add_option("--seed", f->sampling.seed, "sampling seed")->capture_default_str()->check(unsigned_whole());
  return {g, [f] { return run_generate(*f); }};
}

}  // namespace rlhf::cli
