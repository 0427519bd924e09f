// rlhf export: a trained adapter merged into its base model, written as a Hugging Face
// folder (transformers) or a GGUF file (llama.cpp).
#include <cstdio>
#include <memory>

#include "commands.h"
#include "rlhf/export/export.h"

namespace rlhf::cli {
namespace {

int run_export(const ExportOptions& o) {
  ExportResult r = export_model(o);
  std::string what = r.kind == "sequence-classification" ? "sequence classification (reward model)" : "causal LM";
  std::printf("wrote %s (%s, %s, %s)\n", r.output.c_str(), r.format.c_str(), r.dtype.c_str(), what.c_str());
  std::printf("  base: %s\n", r.base_path.c_str());
  if (!r.adapter_kind.empty())
    std::printf("  adapter: %s (%s), %lld weights merged\n", o.adapter.c_str(), r.adapter_kind.c_str(),
                static_cast<long long>(r.merged_weights));
  if (r.format == "hf") {
    std::printf("  files:");
    for (const auto& f : r.files) std::printf(" %s", f.c_str());
    std::printf("\n");
  }
  if (r.score_bias)
    std::printf("  score bias %.9g is not in score.weight (transformers' score layer has no bias): "
                "reward = logit + score_bias (recorded in config.json)\n", *r.score_bias);
  return 0;
}

}  // namespace

Command add_export(CLI::App& app) {
  auto o = std::make_shared<ExportOptions>();
  auto* s = app.add_subcommand("export", "merge a LoRA adapter into its base model; write a Hugging Face folder or a GGUF file");
  s->add_option("--adapter", o->adapter,
                "adapter folder (train-reward, train-policy, or a peft adapter); omit to export --model alone");
  s->add_option("--output,-o", o->output, "folder (hf) or file (gguf) to write")->required();
  s->add_option("--format", o->format, "hf or gguf")->capture_default_str()->check(CLI::IsMember({"hf", "gguf"}));
  s->add_option("--dtype", o->dtype, "hf: fp32, bf16, fp16 (default: the base's); gguf: f32, f16 (default f32)");
  s->add_option("--model,-m,--large-model-reference", o->model, "base model, instead of the one the adapter names");
  return {s, [o] { return run_export(*o); }};
}

}  // namespace rlhf::cli
