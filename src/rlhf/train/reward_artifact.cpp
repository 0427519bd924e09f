#include "rlhf/train/reward_artifact.h"

#include "rlhf/dist/group.h"

#include <algorithm>
#include <numeric>

#include "rlhf/model/loader.h"
#include "rlhf/util/error.h"
#include "rlhf/util/progress.h"

namespace rlhf {

int32_t completion_eos_id(const Model& model) {
  const int32_t eos = model.tokenizer->special().eos;
  if (eos >= 0 && std::find(model.stop_ids.begin(), model.stop_ids.end(), eos) != model.stop_ids.end()) return eos;
  return model.stop_ids.front();
}

std::unique_ptr<LoadedRewardModel> load_reward_model(const std::string& dir, const LoadOptions& options,
                                                     const std::string& model_override) {
  auto m = std::make_unique<LoadedRewardModel>();
  m->info = read_reward_model_info(dir);
  const std::string ref = model_override.empty() ? m->info.base_reference : model_override;
  m->base = load_model(ref, options);
  m->info.check_base(ref, m->base->path, model_content_hash(m->base->path), "--large-model-reference");
  if (m->base->config.hidden_size != m->info.hidden_size)
    fail("{}: field 'head.hidden_size' = {} does not match the base model's hidden size {}", m->info.manifest_path(),
         m->info.hidden_size, m->base->config.hidden_size);
  m->reward = std::make_unique<RewardModel>(*m->base->net, m->info.lora, /*seed=*/0);
  m->reward->load_weights(dir);
  m->encoder = std::make_unique<data::Encoder>(*m->base->tokenizer, m->base->chat_template, m->info.eos_id, m->info.encode);
  return m;
}

std::vector<float> score_rows(const LoadedRewardModel& m, const std::vector<data::ScoredRow>& rows,
                              int64_t batch_size, bool progress, dist::Group* group) {
  std::vector<std::vector<int32_t>> seqs(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    seqs[i] = m.encoder->prompt_ids(rows[i].prompt, rows[i].where);
    auto c = m.encoder->completion_ids(rows[i].completion);
    seqs[i].insert(seqs[i].end(), c.begin(), c.end());
  }
  std::vector<size_t> order(rows.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return seqs[a].size() < seqs[b].size(); });
  std::vector<float> out(rows.size());
  torch::NoGradGuard no_grad;
  std::unique_ptr<Progress> bar;
  if (progress) bar = std::make_unique<Progress>("score", static_cast<int64_t>(rows.size()), "row");
  const size_t rank = group ? static_cast<size_t>(group->rank()) : 0, world = group ? static_cast<size_t>(group->size()) : 1;
  for (size_t start = 0, index = 0; start < order.size(); start += batch_size, ++index) {
    const size_t end = std::min(order.size(), start + static_cast<size_t>(batch_size));
    if (index % world != rank) continue;
    std::vector<std::vector<int32_t>> batch;
    for (size_t i = start; i < end; ++i) batch.push_back(seqs[order[i]]);
    auto sb = pack_sequences(batch, m.info.pad_id, /*left_pad=*/false, m.base->net->device());
    auto r = m.reward->score(sb).to(torch::kCPU);
    for (size_t i = start; i < end; ++i) out[order[i]] = r[static_cast<int64_t>(i - start)].item<float>();
    if (bar) bar->update(static_cast<int64_t>(end));
  }
  if (bar) bar->finish();
  if (group) {  // each reward is one rank's; the others hold zeros there
    std::vector<torch::Tensor> all{torch::from_blob(out.data(), {static_cast<int64_t>(out.size())}, torch::kFloat32)};
    group->all_reduce_sum(all);
  }
  return out;
}

}  // namespace rlhf
