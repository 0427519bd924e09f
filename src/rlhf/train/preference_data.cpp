#include "rlhf/train/preference_data.h"

#include <algorithm>
#include <cstdio>
#include <numeric>

#include <fmt/format.h>

#include "rlhf/util/error.h"
#include "rlhf/util/hash.h"
#include "rlhf/util/progress.h"

namespace rlhf {

PreferenceRows read_preference_rows(const PreferenceSource& source) {
  PreferenceRows out;
  data::ReadOptions read_opts;
  read_opts.skip_invalid = source.skip_invalid;
  data::ReadReport report;
  out.rows = data::read_preference_dataset(source.preference_dataset, read_opts, &report);
  std::fprintf(stderr, "[rlhf] preference data: %zu pairs from %zu file(s)%s\n", out.rows.size(), report.files.size(),
               report.skipped ? fmt::format(", {} invalid lines skipped", report.skipped).c_str() : "");
  if (!source.eval_dataset.empty() && data::has_preference_fields(source.eval_dataset)) {
    data::ReadOptions eval_opts = read_opts;
    eval_opts.max_rows = static_cast<size_t>(source.max_validation_pairs);
    out.validation = data::read_preference_dataset(source.eval_dataset, eval_opts);
    out.train_index.resize(out.rows.size());
    std::iota(out.train_index.begin(), out.train_index.end(), 0);
  } else {
    if (!source.eval_dataset.empty())
      std::fprintf(stderr, "[rlhf] %s has no preference fields: validating on a held-out split instead\n",
                   source.eval_dataset.c_str());
    auto split =
        data::holdout_split(out.rows.size(), source.validation_fraction, source.max_validation_pairs, source.seed);
    out.train_index = split.train;
    for (size_t i : split.validation) out.validation.push_back(out.rows[i]);
  }
  if (out.train_index.empty())
    fail("{}: no training pairs left after the validation split", source.preference_dataset);
  return out;
}

EncodedPreferences encode_preference_rows(const PreferenceRows& rows, const std::string& prompt_format,
                                          data::EncodeConfig enc, const text::Tokenizer& tokenizer,
                                          const text::ChatTemplate& chat_template, int32_t eos_id) {
  EncodedPreferences out;
  data::PromptForms forms;
  forms.add_rows(rows.rows);
  forms.add_rows(rows.validation);
  enc.format = data::resolve_prompt_format(prompt_format, forms, "--prompt-format");
  out.enc = enc;
  data::Encoder encoder(tokenizer, chat_template, eos_id, enc);
  {
    Progress bar("encode", static_cast<int64_t>(rows.train_index.size() + rows.validation.size()), "pair");
    for (size_t i : rows.train_index) {
      out.train.push_back(encoder.encode(rows.rows[i]));
      if (out.train.size() % 256 == 0) bar.update(static_cast<int64_t>(out.train.size()));
    }
    for (const auto& r : rows.validation) out.validation.push_back(encoder.encode(r));
    bar.update(static_cast<int64_t>(out.train.size() + out.validation.size()));
    bar.finish();
  }
  Sha256 hash;
  for (const auto& p : out.train)
    for (const auto* v : {&p.prompt, &p.chosen, &p.rejected}) {
      const uint64_t n = v->size();
      hash.update(&n, sizeof n);
      hash.update(v->data(), v->size() * sizeof(int32_t));
    }
  out.train_sha256 = hash.hex();
  return out;
}

std::vector<PairList> pair_micro_batches(PairList pairs, int64_t size) {
  auto len = [](const data::PreferencePair* p) { return p->prompt.size() + p->chosen.size() + p->rejected.size(); };
  std::stable_sort(pairs.begin(), pairs.end(), [&](auto* a, auto* b) { return len(a) < len(b); });
  std::vector<PairList> out;
  for (size_t i = 0; i < pairs.size(); i += size)
    out.emplace_back(pairs.begin() + i, pairs.begin() + std::min(pairs.size(), i + static_cast<size_t>(size)));
  return out;
}

}  // namespace rlhf
