// rlhf infer: bulk inference over a JSONL of prompts (one output line per prompt, in order;
// resumable after a kill).
#include <memory>

#include <fmt/format.h>

#include "commands.h"
#include "rlhf/eval/infer.h"
#include "rlhf/model/model.h"
#include "rlhf/util/interrupt.h"

namespace rlhf::cli {
namespace {

struct InferFlags {
  CommonFlags common;
  eval::InferConfig config;
  bool no_progress = false;
  CLI::Option* model = nullptr;
  CLI::Option* instruction = nullptr;
};

int run_infer(InferFlags& f) {
  eval::InferConfig& c = f.config;
  // With an adapter and no --model, the adapter's recorded base.
  c.model = (!c.adapter.empty() && f.model->count() == 0) ? std::string() : f.common.model;
  c.dtype = f.common.dtype;
  c.device = f.common.device;
  c.instruction_set = f.instruction->count() > 0;
  c.progress = !f.no_progress;
  apply_threads(f.common.threads);
  interrupt::note_kept(fmt::format("the prompts completed so far are kept in {}.partial", c.output));
  eval::run_inference(c);
  return 0;
}

}  // namespace

Command add_infer(CLI::App& app) {
  auto f = std::make_shared<InferFlags>();
  eval::InferConfig& c = f->config;
  auto* s = app.add_subcommand("infer", "complete every prompt of a JSONL file (bulk inference, resumable)");
  add_common(s, f->common);
  f->model = s->get_option("--model");
  s->add_option("--adapter", c.adapter, "LoRA adapter: a train-policy folder or a peft adapter folder (its base is the "
                                        "default --model)");
  s->add_option("--input,-i", c.input, "prompt JSONL (input_text, prompt or messages): file, folder or glob")->required();
  s->add_option("--output,-o", c.output, "JSONL out: each input row with inputs, prediction, model, settings, stopped")
      ->required();
  f->instruction = s->add_option("--instruction", c.instruction, "text prepended to every prompt (default: the adapter's, else none)");
  s->add_option("--prompt-format", c.prompt_format, "raw, chat or auto (default auto: the adapter's format, else chat when the prompts are conversations)");
  s->add_option("--prompt-sequence-length", c.prompt_sequence_length,
                "prompt tokens kept, the last ones (default: the adapter's, else 512)")
      ->check(whole_in(1, 1 << 24));
  s->add_option("--max-new-tokens,--target-sequence-length,-n", c.sampling.max_new_tokens, "tokens to generate at most")
      ->capture_default_str()
      ->check(whole_in(1, 1 << 20));
  s->add_option("--temperature,-t", c.sampling.temperature, "0 = greedy")->capture_default_str()->check(real_in(0.0, 100.0));
  s->add_option("--top-p", c.sampling.top_p, "nucleus sampling mass")->capture_default_str()->check(real_in(0.0, 1.0));
  s->add_option("--top-k", c.sampling.top_k, "keep the k most likely tokens (0 = off)")->capture_default_str()
      ->check(whole_in(0, INT32_MAX));
  s->add_option("--seed", c.sampling.seed, "sampling seed (batch i uses seed + i)")->capture_default_str()
      ->check(unsigned_whole());
  s->add_option("--batch-size", c.batch_size, "prompts generated together")->capture_default_str()
      ->check(whole_in(1, 65536));
  s->add_flag("--skip-invalid", c.skip_invalid, "leave out invalid lines instead of stopping");
  s->add_flag("--restart", c.restart, "start over: discard OUTPUT.partial and overwrite OUTPUT");
  s->add_flag("--no-progress", f->no_progress, "no progress bar");
  return {s, [f] { return run_infer(*f); }, [] { return Continuation::Same; }};
}

}  // namespace rlhf::cli
