// rlhf validate: read and check datasets as the training stages will, and show how long
// their prompts and completions are in the model's tokens (and how many would be cut).
#include <algorithm>
#include <cstdio>
#include <limits>
#include <memory>
#include <optional>

#include "commands.h"
#include "rlhf/data/dataset.h"
#include "rlhf/data/encode.h"
#include "rlhf/model/loader.h"
#include "rlhf/model/registry.h"
#include "rlhf/util/error.h"

namespace rlhf::cli {
namespace {

struct ValidateFlags {
  std::string preference_dataset, prompt_dataset, eval_dataset;
  bool skip_invalid = false;
  std::string instruction;
  std::string prompt_format = "raw";
  int64_t prompt_sequence_length = 512;
  int64_t target_sequence_length = 64;
  std::string model = kDefaultModel;
};

// What a dataset holds, for the token statistics.
struct Contents {
  std::vector<data::PromptText> prompts;
  std::vector<std::string> completions;
};

Contents read_dataset(const std::string& spec, bool preferences, const data::ReadOptions& options,
                      data::ReadReport& report) {
  Contents c;
  if (preferences) {
    for (auto& r : data::read_preference_dataset(spec, options, &report)) {
      c.prompts.push_back(std::move(r.prompt));
      c.completions.push_back(std::move(r.chosen));
      c.completions.push_back(std::move(r.rejected));
    }
  } else {
    for (auto& r : data::read_prompt_dataset(spec, options, &report)) c.prompts.push_back(std::move(r.prompt));
  }
  return c;
}

void print_report(const data::ReadReport& r) {
  if (r.files.size() <= 3) std::printf("  files: %s\n", fmt::format("{}", fmt::join(r.files, ", ")).c_str());
  else std::printf("  files: %zu (%s ... %s)\n", r.files.size(), r.files.front().c_str(), r.files.back().c_str());
  std::printf("  rows: %zu valid, %zu skipped\n", r.rows, r.skipped);
  if (r.errors.empty()) return;
  std::printf("  first problems:\n");
  for (const auto& e : r.errors) std::printf("    %s\n", e.c_str());
  if (r.skipped > r.errors.size()) std::printf("    ... and %zu more\n", r.skipped - r.errors.size());
}

// "median M, max X; N of T over LIMIT" for token counts.
std::string length_summary(std::vector<size_t> lengths, int64_t limit) {
  if (lengths.empty()) return "none";
  const auto over = std::count_if(lengths.begin(), lengths.end(), [&](size_t n) { return n > size_t(limit); });
  auto mid = lengths.begin() + static_cast<std::ptrdiff_t>(lengths.size() / 2);
  std::nth_element(lengths.begin(), mid, lengths.end());
  return fmt::format("median {}, max {}; {} of {} over {}", *mid, *std::max_element(lengths.begin(), lengths.end()),
                     over, lengths.size(), limit);
}

int32_t eos_of(const ModelFiles& model) {
  const int32_t eos = model.tokenizer->special().eos;
  return eos >= 0 ? eos : model.stop_ids.front();
}

// Token counts before truncation: an encoder whose limits cut nothing.
void print_lengths(const Contents& c, const ModelFiles& model, const data::EncodeConfig& config) {
  data::EncodeConfig uncut = config;
  uncut.prompt_sequence_length = std::numeric_limits<int64_t>::max();
  uncut.target_sequence_length = std::numeric_limits<int64_t>::max();
  data::Encoder enc(*model.tokenizer, model.chat_template, eos_of(model), uncut);
  std::vector<size_t> prompts, completions;
  for (const auto& p : c.prompts) prompts.push_back(enc.prompt_ids(p).size());
  for (const auto& t : c.completions) completions.push_back(enc.completion_ids(t).size());
  std::printf("  prompt tokens: %s (cut from the left)\n",
              length_summary(prompts, config.prompt_sequence_length).c_str());
  if (!completions.empty())
    std::printf("  completion tokens, EOS included: %s (cut from the right)\n",
                length_summary(completions, config.target_sequence_length).c_str());
}

int run_validate(const ValidateFlags& f) {
  struct Dataset {
    std::string kind, spec;
  };
  std::vector<Dataset> datasets;
  if (!f.preference_dataset.empty()) datasets.push_back({"preference", f.preference_dataset});
  if (!f.prompt_dataset.empty()) datasets.push_back({"prompt", f.prompt_dataset});
  if (!f.eval_dataset.empty()) datasets.push_back({"eval", f.eval_dataset});
  if (datasets.empty()) fail("validate: give --preference-dataset, --prompt-dataset or --eval-dataset");

  data::EncodeConfig config;
  config.format = data::parse_prompt_format(f.prompt_format);
  config.instruction = f.instruction;
  config.prompt_sequence_length = f.prompt_sequence_length;
  config.target_sequence_length = f.target_sequence_length;
  data::ReadOptions options;
  options.skip_invalid = f.skip_invalid;

  std::optional<ModelFiles> model;
  try {
    model = read_model(f.model, /*weights=*/false);
  } catch (const Error& e) {
    std::printf("token lengths not measured: %s\n", e.what());
  }
  if (model) {
    // The settings must suit the model (the chat format needs a chat template).
    (void)data::Encoder(*model->tokenizer, model->chat_template, eos_of(*model), config);
    std::printf("token lengths with the tokenizer of %s, prompt format %s\n", f.model.c_str(),
                data::prompt_format_name(config.format));
  }

  std::vector<std::string> failures;
  for (const Dataset& d : datasets) {
    std::printf("%s dataset %s\n", d.kind.c_str(), d.spec.c_str());
    try {
      bool preferences = d.kind == "preference";
      if (d.kind == "eval" && data::has_preference_fields(d.spec)) {
        preferences = true;
        std::printf("  preference fields: yes (reward-model accuracy can be measured)\n");
      }
      data::ReadReport report;
      Contents contents = read_dataset(d.spec, preferences, options, report);
      print_report(report);
      if (model) print_lengths(contents, *model, config);
    } catch (const Error& e) {
      std::printf("  invalid\n");
      failures.push_back(e.what());
    }
  }
  std::fflush(stdout);
  if (!failures.empty()) fail("{}", fmt::join(failures, "\n"));
  return 0;
}

}  // namespace

Command add_validate(CLI::App& app) {
  auto f = std::make_shared<ValidateFlags>();
  auto* v = app.add_subcommand("validate", "check datasets line by line and measure their token lengths");
  v->add_option("--preference-dataset", f->preference_dataset, "preference JSONL (file, folder or glob)");
  v->add_option("--prompt-dataset", f->prompt_dataset, "prompt JSONL (file, folder or glob)");
  v->add_option("--eval-dataset", f->eval_dataset, "evaluation JSONL (file, folder or glob)");
  v->add_flag("--skip-invalid", f->skip_invalid, "leave bad lines out (counted) instead of failing");
  v->add_option("--instruction", f->instruction, "text prepended to every prompt");
  v->add_option("--prompt-format", f->prompt_format, "raw or chat")->capture_default_str();
  v->add_option("--prompt-sequence-length", f->prompt_sequence_length, "prompt tokens kept (the last ones)")
      ->check(CLI::Range(int64_t(1), std::numeric_limits<int64_t>::max()))
      ->capture_default_str();
  v->add_option("--target-sequence-length", f->target_sequence_length, "completion tokens kept, EOS included")
      ->check(CLI::Range(int64_t(2), std::numeric_limits<int64_t>::max()))
      ->capture_default_str();
  v->add_option("--model,-m,--large-model-reference", f->model, "model whose tokenizer measures the lengths")
      ->capture_default_str();
  return {v, [f] { return run_validate(*f); }};
}

}  // namespace rlhf::cli
