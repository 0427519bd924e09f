// rlhf: the command-line interface. It parses flags and calls the library; nothing else.
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <thread>

#include "rlhf/model/generate.h"
#include "rlhf/model/loader.h"
#include "rlhf/model/model.h"
#include "rlhf/model/registry.h"
#include "rlhf/util/error.h"

namespace {

struct CommonFlags {
  std::string model = rlhf::kDefaultModel;
  std::string dtype = "fp32";
  std::string device = "cpu";
  int threads = 0;
};

void add_common(CLI::App* cmd, CommonFlags& f) {
  cmd->add_option("--model,-m,--large-model-reference", f.model,
                  "registered model name, GGUF file or Hugging Face folder")->capture_default_str();
  cmd->add_option("--dtype", f.dtype, "weights and compute: fp32, bf16, fp16")->capture_default_str();
  cmd->add_option("--device", f.device, "cpu, cuda, cuda:N")->capture_default_str();
  cmd->add_option("--threads", f.threads, "CPU threads (0 = all cores)");
}

void apply_threads(int threads) {
  int n = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(n);
}

struct GenerateFlags {
  std::vector<std::string> prompts;
  bool chat = false;
  rlhf::SamplingConfig sampling;
};

int run_generate(const CommonFlags& c, const GenerateFlags& g) {
  apply_threads(c.threads);
  auto model = rlhf::load_model(c.model, {rlhf::parse_dtype(c.dtype), rlhf::parse_device(c.device)});
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& p : g.prompts) prompts.push_back(model->encode_prompt(p, g.chat));

  rlhf::GenerateOptions opts;
  opts.stop_ids = model->stop_ids;
  opts.pad_id = model->pad_id;
  const bool stream = prompts.size() == 1;
  rlhf::text::StreamDecoder decoder(*model->tokenizer, /*skip_special=*/true);
  if (stream) {
    opts.on_token = [&](size_t, int32_t tok) {
      std::string s = decoder.push(tok);
      std::fwrite(s.data(), 1, s.size(), stdout);
      std::fflush(stdout);
    };
  }
  rlhf::Generation out = rlhf::generate(*model->net, prompts, g.sampling, opts);
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

int run_tokenize(const std::string& model_ref, const std::string& text, bool chat) {
  rlhf::ModelFiles files = rlhf::read_model(model_ref, /*weights=*/false);
  std::vector<int32_t> ids;
  if (chat) {
    std::vector<rlhf::text::ChatMessage> turn = {{"user", text}};
    ids = files.tokenizer->encode(files.chat_template.apply(turn, true), true);
  } else {
    ids = files.tokenizer->encode(text, /*parse_special=*/true);
  }
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
  std::printf("%s\n", line.c_str());
  return 0;
}

int run_models() {
  for (const auto& m : rlhf::registered_models()) {
    std::string path = rlhf::registered_model_path(m);
    bool here = std::filesystem::exists(path);
    std::printf("%-24s %s\n  %s %s\n", m.name.c_str(), m.description.c_str(), path.c_str(),
                here ? "(in cache)" : "(not fetched: run scripts/setup)");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"rlhf: tune a language model to human preferences (RLHF), natively"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("rlhf ") + RLHF_VERSION);

  CommonFlags common;
  GenerateFlags gen;
  auto* g = app.add_subcommand("generate", "sample a completion from a model (streams to stdout)");
  add_common(g, common);
  g->add_option("--prompt,-p", gen.prompts, "prompt text (repeat for a batch)")->required();
  g->add_flag("--chat", gen.chat, "format the prompt with the model's chat template");
  g->add_option("--max-new-tokens,-n", gen.sampling.max_new_tokens, "tokens to generate at most")
      ->capture_default_str()->check(CLI::Range(0, 1 << 20));
  g->add_option("--temperature,-t", gen.sampling.temperature, "0 = greedy")->capture_default_str()
      ->check(CLI::Range(0.0, 100.0));
  g->add_option("--top-p", gen.sampling.top_p, "nucleus sampling mass")->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  g->add_option("--top-k", gen.sampling.top_k, "keep the k most likely tokens (0 = off)")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  g->add_option("--seed", gen.sampling.seed, "sampling seed")->capture_default_str();

  std::string tok_model = rlhf::kDefaultModel, tok_text;
  bool tok_chat = false;
  auto* t = app.add_subcommand("tokenize", "print the token ids of a text, space-separated");
  t->add_option("--model,-m,--large-model-reference", tok_model, "model whose tokenizer to use")->capture_default_str();
  t->add_option("--text", tok_text, "text to tokenize")->required();
  t->add_flag("--chat", tok_chat, "apply the chat template first");

  auto* models = app.add_subcommand("models", "list registered model names and where each resolves");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (g->parsed()) return run_generate(common, gen);
    if (t->parsed()) return run_tokenize(tok_model, tok_text, tok_chat);
    if (models->parsed()) return run_models();
  } catch (const rlhf::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "error (torch): %s\n", e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
