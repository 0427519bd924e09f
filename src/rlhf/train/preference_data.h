// The preference data of a trainer (train-reward, train-dpo): the pairs read, the validation
// pairs (the evaluation set when it has preference fields, else a held-out split), their
// encoding with a progress bar, and the hash of the encoded training pairs.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "rlhf/data/dataset.h"
#include "rlhf/data/encode.h"

namespace rlhf {

// Where the pairs come from and how the validation pairs are chosen.
struct PreferenceSource {
  std::string preference_dataset, eval_dataset;
  bool skip_invalid = false;
  double validation_fraction = 0.1;
  int64_t max_validation_pairs = 5000;
  uint64_t seed = 0;

  template <class Config>
  static PreferenceSource of(const Config& c) {
    return {.preference_dataset = c.preference_dataset,
            .eval_dataset = c.eval_dataset,
            .skip_invalid = c.skip_invalid,
            .validation_fraction = c.validation_fraction,
            .max_validation_pairs = c.max_validation_pairs,
            .seed = c.seed};
  }
};

// The rows read: all of the preference data, the training ones among them, the validation rows.
struct PreferenceRows {
  std::vector<data::PreferenceRow> rows, validation;
  std::vector<size_t> train_index;  // into rows
};

// Reads every data file (validated before any model is loaded). Fails when no training pair
// is left after the validation split.
PreferenceRows read_preference_rows(const PreferenceSource& source);

// The encoded pairs and what the encoding resolved.
struct EncodedPreferences {
  data::EncodeConfig enc;  // the prompt format as resolved from the rows
  std::vector<data::PreferencePair> train, validation;
  std::string train_sha256;  // of the encoded training pairs, in order
};

// Encodes the rows with `enc` (instruction and lengths set; the format is resolved from
// `prompt_format` and the rows, as --prompt-format).
EncodedPreferences encode_preference_rows(const PreferenceRows& rows, const std::string& prompt_format,
                                          data::EncodeConfig enc, const text::Tokenizer& tokenizer,
                                          const text::ChatTemplate& chat_template, int32_t eos_id);

// The steps of a run over the training pairs: `batch` pairs a step in micro-batches of
// `micro_batch`, the warmup steps and the peak learning rate (the base rate x the multiplier).
struct PairSchedule {
  int64_t pairs = 0, batch = 0, micro_batch = 0, steps = 0, warmup = 0;
  double peak_lr = 0;

  template <class Config>
  static PairSchedule of(const Config& c, int64_t pairs) {
    PairSchedule s{.pairs = pairs, .batch = c.batch_size, .micro_batch = std::min(c.micro_batch_size, c.batch_size)};
    s.steps = c.steps_for(pairs);
    s.warmup = static_cast<int64_t>(std::ceil(c.warmup_ratio * static_cast<double>(s.steps)));
    s.peak_lr = Config::kBaseLearningRate * c.learning_rate_multiplier;
    return s;
  }
};

// Micro-batches of `size` pairs sorted by packed length (less padding), original order on ties.
using PairList = std::vector<const data::PreferencePair*>;
std::vector<PairList> pair_micro_batches(PairList pairs, int64_t size);

}  // namespace rlhf
