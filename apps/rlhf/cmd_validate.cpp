// rlhf validate: read and check datasets as the training stages will, and show how long
// their prompts and completions are in the model's tokens (and how many would be cut). The
// data settings (prompt format, instruction, lengths, --skip-invalid) are train-reward's own
// rows of its settings table: the same flags, defaults and checks.
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
#include "rlhf/train/reward_artifact.h"
#include "rlhf/train/reward_config.h"
#include "rlhf/util/error.h"
#include "settings_flags.h"

namespace rlhf::cli {
namespace {

struct ValidateFlags {
  std::string preference_dataset, prompt_dataset, eval_dataset;
  std::string model = kDefaultModel;
  RewardTrainConfig data;  // the data settings below, with train-reward's defaults
  std::unique_ptr<SettingFlags> settings;
};

// The rows of train-reward's settings table that say how data is read and encoded.
const SettingsTable<RewardTrainConfig>& data_settings() {
  static const SettingsTable<RewardTrainConfig> table = [] {
    SettingsTable<RewardTrainConfig> t;
    t.command = "validate";
    for (const char* name : {"skip_invalid", "prompt_format", "instruction", "prompt_sequence_length",
                             "target_sequence_length"}) {
      const SettingRow* row = reward_settings().find(name);
      if (!row) fail("validate: train-reward has no setting {}", name);
      t.rows.push_back(*row);
    }
    return t;
  }();
  return table;
}

// The model's tokenizer, chat template and stop ids, without its weights.
Model tokenizer_of(ModelFiles files) {
  Model m;
  m.reference = files.reference;
  m.path = files.path;
  m.format = files.format;
  m.config = files.config;
  m.tokenizer = std::move(files.tokenizer);
  m.chat_template = std::move(files.chat_template);
  m.stop_ids = std::move(files.stop_ids);
  m.pad_id = files.pad_id;
  return m;
}

// What a dataset holds, for the token statistics.
struct Contents {
  std::vector<data::PromptText> prompts;
  std::vector<std::string> wheres;  // of each prompt
  data::PromptForms forms;
  std::vector<std::string> completions;
};

Contents read_dataset(const std::string& spec, bool preferences, const data::ReadOptions& options,
                      data::ReadReport& report) {
  Contents c;
  if (preferences) {
    for (auto& r : data::read_preference_dataset(spec, options, &report)) {
      c.forms.add(r.prompt, r.where);
      c.wheres.push_back(r.where);
      c.prompts.push_back(std::move(r.prompt));
      c.completions.push_back(std::move(r.chosen));
      c.completions.push_back(std::move(r.rejected));
    }
  } else {
    for (auto& r : data::read_prompt_dataset(spec, options, &report)) {
      c.forms.add(r.prompt, r.where);
      c.wheres.push_back(r.where);
      c.prompts.push_back(std::move(r.prompt));
    }
  }
  return c;
}

void print_report(const data::ReadReport& r) {
  if (r.files.size() <= 3) std::printf("  files: %s\n", fmt::format("{}", fmt::join(r.files, ", ")).c_str());
  else std::printf("  files: %zu (%s ... %s)\n", r.files.size(), r.files.front().c_str(), r.files.back().c_str());
  std::printf("  rows: %zu valid, %zu skipped, %zu left out (they teach nothing)\n", r.rows, r.skipped, r.dropped);
  for (const auto& e : r.left_out) std::printf("    left out: %s\n", e.c_str());
  if (r.dropped > r.left_out.size()) std::printf("    ... and %zu more\n", r.dropped - r.left_out.size());
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

// Token counts before truncation: an encoder whose limits cut nothing.
void print_lengths(const Contents& c, const Model& model, const data::EncodeConfig& config) {
  // The settings must suit the model (the chat format needs a chat template), and every prompt
  // must leave room for its text after the template and the instruction.
  const data::Encoder fitted(*model.tokenizer, model.chat_template, completion_eos_id(model), config);
  size_t cut = 0;
  for (size_t i = 0; i < c.prompts.size(); ++i) cut += fitted.encode_prompt(c.prompts[i], c.wheres[i]).cut > 0;
  data::EncodeConfig uncut = config;
  uncut.prompt_sequence_length = std::numeric_limits<int64_t>::max();
  uncut.target_sequence_length = std::numeric_limits<int64_t>::max();
  data::Encoder enc(*model.tokenizer, model.chat_template, completion_eos_id(model), uncut);
  std::vector<size_t> prompts, completions;
  for (const auto& p : c.prompts) prompts.push_back(enc.prompt_ids(p).size());
  for (const auto& t : c.completions) completions.push_back(enc.completion_ids(t).size());
  std::printf("  prompt tokens: %s; %zu prompts lose the start of their text (instruction and template kept)\n",
              length_summary(prompts, config.prompt_sequence_length).c_str(), cut);
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

  const RewardTrainConfig& d = f.data;
  data::ReadOptions options;
  options.skip_invalid = d.skip_invalid;

  std::optional<Model> model;
  try {
    model = tokenizer_of(read_model(f.model, /*weights=*/false));
    std::printf("token lengths with the tokenizer of %s\n", f.model.c_str());
  } catch (const Error& e) {
    std::printf("token lengths not measured: %s\n", e.what());
  }

  std::vector<std::string> failures;
  for (const Dataset& ds : datasets) {
    std::printf("%s dataset %s\n", ds.kind.c_str(), ds.spec.c_str());
    try {
      bool preferences = ds.kind == "preference";
      if (ds.kind == "eval" && data::has_preference_fields(ds.spec)) {
        preferences = true;
        std::printf("  preference fields: yes (reward-model accuracy can be measured)\n");
      }
      data::ReadReport report;
      Contents contents = read_dataset(ds.spec, preferences, options, report);
      print_report(report);
      data::EncodeConfig config;
      config.format = data::resolve_prompt_format(d.prompt_format, contents.forms, "--prompt-format");
      config.instruction = d.instruction;
      config.prompt_sequence_length = d.prompt_sequence_length;
      config.target_sequence_length = d.target_sequence_length;
      std::printf("  prompt format: %s%s\n", data::prompt_format_name(config.format),
                  d.prompt_format == "auto" ? " (auto)" : "");
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
  v->add_option("--model,-m,--large-model-reference", f->model, "model whose tokenizer measures the lengths")
      ->capture_default_str();
  f->settings = std::make_unique<SettingFlags>(v, data_settings(), f->data);
  return {v, [f] {
            f->settings->apply();
            return run_validate(*f);
          }};
}

}  // namespace rlhf::cli
