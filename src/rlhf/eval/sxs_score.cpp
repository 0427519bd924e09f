#include "rlhf/eval/sxs_score.h"

#include "rlhf/train/reward_artifact.h"

namespace rlhf::eval {

SxsScoreReport score_sxs(SxsTable& table, const SxsScoreOptions& options) {
  auto m = load_reward_model(options.reward_model, options.load, options.model_override);
  SxsScoreReport report;
  report.instruction = m->info.encode.instruction;
  // Rows 2i and 2i+1: row i's responses A and B, each with its own file's prompt.
  std::vector<data::ScoredRow> rows;
  rows.reserve(2 * table.rows.size());
  auto add = [&](const SxsInputRow& in, const std::string& response) {
    bool stripped = false;
    data::ScoredRow r;
    r.prompt = reward_prompt(in, report.instruction, &stripped);
    r.completion = response;
    r.where = in.where;
    report.instruction_stripped += stripped;
    report.pretokenized_as_is += !stripped && !in.has_dataset_prompt;
    rows.push_back(std::move(r));
  };
  for (const SxsRow& r : table.rows) {
    add(table.a.rows[r.a], r.response_a);
    add(table.b.rows[r.b], r.response_b);
  }
  std::vector<float> scores = score_rows(*m, rows, options.batch_size, options.progress);
  for (size_t i = 0; i < table.rows.size(); ++i) {
    table.rows[i].score_a = static_cast<double>(scores[2 * i]);
    table.rows[i].score_b = static_cast<double>(scores[2 * i + 1]);
  }
  report.scored = rows.size();
  table.reward_model = options.reward_model;
  return report;
}

}  // namespace rlhf::eval
