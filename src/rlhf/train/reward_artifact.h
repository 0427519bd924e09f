// A trained reward model loaded for scoring: the folder (train/trained_folder.h: the
// manifest reward_model.json, the adapter, the head) on its base model.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "rlhf/data/dataset.h"
#include "rlhf/data/encode.h"
#include "rlhf/model/model.h"
#include "rlhf/train/reward_model.h"
#include "rlhf/train/trained_folder.h"

namespace rlhf {
namespace dist {
class Group;
}  // namespace dist

// The token id that ends completions for this model: the tokenizer's EOS when it is a stop
// token, else the first stop token.
int32_t completion_eos_id(const Model& model);

struct LoadedRewardModel {
  std::unique_ptr<Model> base;
  std::unique_ptr<RewardModel> reward;
  std::unique_ptr<data::Encoder> encoder;
  RewardModelInfo info;
};

// Loads the base model named in the folder (model_override replaces it, e.g. after a move),
// checks its content hash, and the adapter and head.
std::unique_ptr<LoadedRewardModel> load_reward_model(const std::string& dir, const LoadOptions& options,
                                                     const std::string& model_override = "");

// Rewards of (prompt, completion) rows, in input order; batches sorted by length. With a
// `group` (a data-parallel job), batch j is rank j mod N's and every rank gets every reward,
// each computed in the same batch as in one process (the same values, bit for bit).
std::vector<float> score_rows(const LoadedRewardModel& m, const std::vector<data::ScoredRow>& rows,
                              int64_t batch_size, bool progress, dist::Group* group = nullptr);

}  // namespace rlhf
