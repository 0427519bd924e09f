// rlhf score: rewards of prompt/completion pairs with a trained reward model (JSONL in,
// JSONL out, order kept: each input line with a "reward" field added).
#include <nlohmann/json.hpp>

#include <cstdio>
#include <memory>

#include "commands.h"
#include "rlhf/data/dataset.h"
#include "rlhf/dist/group.h"
#include "rlhf/model/model.h"
#include "rlhf/train/reward_artifact.h"
#include "rlhf/util/fs.h"

namespace rlhf::cli {
namespace {

struct ScoreFlags {
  CommonFlags common;
  std::string reward_model, input, output;
  int64_t batch_size = 16;
  bool skip_invalid = false;
};

int run_score(const ScoreFlags& f) {
  data::ReadOptions ro;
  ro.skip_invalid = f.skip_invalid;
  data::ReadReport report;
  auto rows = data::read_scored_dataset(f.input, ro, &report);  // validated before the model loads
  apply_threads(f.common.threads);
  auto m = load_reward_model(f.reward_model, {parse_dtype(f.common.dtype), parse_device(f.common.device)},
                             f.common.model);
  dist::Group* job = dist::job();  // several ranks share the batches; rank 0 writes
  auto rewards = score_rows(*m, rows, f.batch_size, /*progress=*/!job || job->rank() == 0, job);
  if (job && job->rank() != 0) return 0;
  std::string out;
  for (size_t i = 0; i < rows.size(); ++i) {
    auto j = nlohmann::json::parse(rows[i].json);
    j["reward"] = rewards[i];
    out += j.dump() + "\n";
  }
  if (f.output.empty()) {
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
  } else {
    write_file_atomic(f.output, out);
  }
  std::fprintf(stderr, "[rlhf] scored %zu rows%s\n", rows.size(),
               report.skipped ? (", " + std::to_string(report.skipped) + " invalid lines skipped").c_str() : "");
  return 0;
}

}  // namespace

Command add_score(CLI::App& app) {
  auto f = std::make_shared<ScoreFlags>();
  f->common.model = "";  // the reward model names its base; this overrides it
  auto* s = app.add_subcommand("score", "score prompt/completion pairs with a trained reward model");
  s->add_option("--reward-model", f->reward_model, "folder written by train-reward")->required();
  s->add_option("--input,-i", f->input, "JSONL: input_text (or prompt, or messages) + completion (or prediction)")
      ->required();
  s->add_option("--output,-o", f->output, "JSONL out (default: stdout)");
  s->add_option("--batch-size", f->batch_size, "sequences per forward")->capture_default_str()->check(whole_in(1, 65536));
  s->add_flag("--skip-invalid", f->skip_invalid, "leave out invalid lines instead of stopping");
  s->add_option("--large-model-reference,--model,-m", f->common.model, "base model, when it moved since training");
  s->add_option("--dtype", f->common.dtype, "auto, fp32, bf16")->capture_default_str();
  s->add_option("--device", f->common.device, "cpu, cuda, cuda:N")->capture_default_str();
  s->add_option("--threads", f->common.threads, "CPU threads (0 = all cores)")->check(whole_in(0, kMaxThreads));
  return {s, [f] { return run_score(*f); }};
}

}  // namespace rlhf::cli
