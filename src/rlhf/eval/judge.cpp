#include "rlhf/eval/judge.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <optional>

#include <fmt/format.h>

#include "rlhf/dist/group.h"
#include "rlhf/model/generate.h"
#include "rlhf/model/registry.h"
#include "rlhf/text/utf8.h"
#include "rlhf/train/reward_model.h"
#include "rlhf/util/error.h"
#include "rlhf/util/progress.h"

namespace rlhf::eval {

namespace {

// Ids of the spellings of `letter` that are one token: "A" and " A".
std::vector<int32_t> letter_ids(const text::Tokenizer& tok, const std::string& letter) {
  std::vector<int32_t> ids;
  for (const std::string& s : {letter, " " + letter}) {
    auto e = tok.encode(s, /*parse_special=*/false);
    if (e.size() == 1 && std::find(ids.begin(), ids.end(), e[0]) == ids.end()) ids.push_back(e[0]);
  }
  return ids;
}

// The words an explanation starts with, given the verdict.
std::string lead_in(Choice c) {
  return c == Choice::Tie ? "Neither response is clearly better:" : fmt::format("Response {} is better because", choice_name(c));
}

// What stands for a cut.
constexpr std::string_view kCutMark = " [...] ";

// A chunk's judgments as bytes, to gather them from the ranks, and back: the two readings bit
// for bit (the verdict follows from them) and the explanation.
std::string pack(const std::vector<JudgedPair>& judged) {
  std::string bytes;
  auto put = [&](const auto& value) { bytes.append(reinterpret_cast<const char*>(&value), sizeof value); };
  for (const JudgedPair& j : judged) {
    put(j.prob_a_first);
    put(j.prob_a_second);
    put(static_cast<uint64_t>(j.explanation.size()));
    bytes += j.explanation;
  }
  return bytes;
}
std::vector<JudgedPair> unpack(const std::string& bytes) {
  std::vector<JudgedPair> judged;
  size_t at = 0;
  auto need = [&](uint64_t n) {
    if (bytes.size() - at < n) fail("judge: the judgments a rank sent ({} bytes) are cut short", bytes.size());
  };
  auto take = [&](auto& value) {
    need(sizeof value);
    std::memcpy(&value, bytes.data() + at, sizeof value);
    at += sizeof value;
  };
  while (at < bytes.size()) {
    JudgedPair& j = judged.emplace_back();
    take(j.prob_a_first);
    take(j.prob_a_second);
    uint64_t n = 0;
    take(n);
    need(n);
    j.explanation.assign(bytes, at, static_cast<size_t>(n));
    at += static_cast<size_t>(n);
    j.verdict = combine_orders(j.prob_a_first, j.prob_a_second);
  }
  return judged;
}

}  // namespace

Judge::Judge(const JudgeConfig& config) : config_(config) {
  if (config_.batch_size < 1) fail("--batch-size must be at least 1");
  if (config_.explanation_tokens < 0) fail("--explanation-tokens must not be negative");
  if (config_.max_prompt_tokens < 64) fail("--max-prompt-tokens must be at least 64");
  model_ = load_model(config_.model.empty() ? std::string(kDefaultModel) : config_.model,
                      {parse_dtype(config_.dtype), parse_device(config_.device)});
  const bool has_template = model_->chat_template.style != text::ChatStyle::None;
  if (config_.prompt_format == "chat") {
    if (!has_template) fail("{}: the judge model has no chat template; use --judge-prompt-format raw", model_->path);
    chat_ = true;
  } else if (config_.prompt_format == "raw") {
    chat_ = false;
  } else if (config_.prompt_format == "auto") {
    chat_ = has_template;
  } else {
    fail("--judge-prompt-format is \"{}\"; it must be chat, raw or auto", config_.prompt_format);
  }
  // The prompt, the lead-in of an explanation and the explanation must fit the model's context.
  if (config_.explanation_tokens > 0)
    for (Choice c : {Choice::A, Choice::B, Choice::Tie})
      lead_tokens_ = std::max<int64_t>(lead_tokens_, static_cast<int64_t>(lead_in_ids(lead_in(c)).size()));
  const int64_t room = model_->config.max_position - config_.explanation_tokens - lead_tokens_;
  const int64_t instructions = static_cast<int64_t>(text::fit_prompt(*model_->tokenizer, render({})).ids.size());
  if (room < instructions + 16)
    fail("{}: the judge's context ({} tokens) leaves {} for a prompt after {} explanation tokens, but its instructions "
         "alone take {}; lower --explanation-tokens",
         model_->path, model_->config.max_position, std::max<int64_t>(room, 0), config_.explanation_tokens,
         instructions);
  config_.max_prompt_tokens = std::min(config_.max_prompt_tokens, room);
  if (config_.max_prompt_tokens < instructions + 16)
    fail("--max-prompt-tokens {} leaves no room for the texts to judge: the judge's instructions alone take {} tokens "
         "with {}; raise it",
         config_.max_prompt_tokens, instructions, model_->path);
  letter_a_ = letter_ids(*model_->tokenizer, "A");
  letter_b_ = letter_ids(*model_->tokenizer, "B");
  if (letter_a_.empty() || letter_b_.empty())
    fail("{}: the tokenizer has no single token for the letter A or B, which the judge answers with", model_->path);
}

Judge::~Judge() = default;

std::string Judge::reference() const { return model_->reference; }

text::PromptPieces Judge::render(const PairToJudge& shown) const {
  text::PromptPieces body =
      judge_prompt_pieces(config_.task, shown.context, shown.response_a, shown.response_b, shown.instruction);
  if (chat_) {
    const std::vector<text::ChatMessage> turn = {{"user", "", body.pieces}};
    return model_->chat_template.render(turn, /*add_generation_prompt=*/true);
  }
  const auto& special = model_->tokenizer->special();
  body.bos = special.add_bos && special.bos >= 0;
  body.add(text::PieceKind::Fixed, "\nAnswer:");
  return body;
}

std::vector<int32_t> Judge::lead_in_ids(const std::string& lead) const {
  return model_->tokenizer->encode(chat_ ? lead : " " + lead, /*parse_special=*/false);
}

std::vector<int32_t> Judge::prompt_ids(const PairToJudge& shown) const {
  // The three texts share the room the instructions leave: short ones stay whole, the longest
  // give up their middles (the start says what a text is, the end often what is asked), so a
  // long dataset text is cut before the responses are touched.
  text::FitOptions fit;
  fit.limit = static_cast<size_t>(config_.max_prompt_tokens);
  fit.cut = text::CutFrom::Middle;
  fit.cut_mark = kCutMark;
  fit.limit_name = "--max-prompt-tokens";
  return text::fit_prompt(*model_->tokenizer, render(shown), fit).ids;
}

std::vector<double> Judge::prob_first_better(const std::vector<PairToJudge>& shown) const {
  torch::InferenceMode guard;
  std::vector<std::vector<int32_t>> prompts;
  prompts.reserve(shown.size());
  for (const auto& p : shown) prompts.push_back(prompt_ids(p));
  // Batches of similar length: less padding.
  std::vector<size_t> order(prompts.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return prompts[a].size() < prompts[b].size(); });
  const Transformer& net = *model_->net;
  auto ids_a = torch::tensor(std::vector<int64_t>(letter_a_.begin(), letter_a_.end()), torch::kInt64).to(net.device());
  auto ids_b = torch::tensor(std::vector<int64_t>(letter_b_.begin(), letter_b_.end()), torch::kInt64).to(net.device());
  std::vector<double> out(prompts.size(), 0.5);
  const size_t bs = static_cast<size_t>(config_.batch_size);
  for (size_t s = 0; s < order.size(); s += bs) {
    std::vector<std::vector<int32_t>> batch;
    for (size_t k = s; k < std::min(order.size(), s + bs); ++k) batch.push_back(prompts[order[k]]);
    SequenceBatch sb = pack_sequences(batch, model_->pad_id, /*left_pad=*/true, net.device());
    ForwardArgs args;
    args.tokens = sb.tokens;
    args.positions = sb.positions;
    args.attn_mask = sb.attn_mask;
    torch::Tensor h = net.hidden(args);                                         // [b, L, H]
    torch::Tensor last = h.index({torch::arange(h.size(0), torch::kInt64).to(h.device()), sb.last});  // [b, H]
    torch::Tensor logp = torch::log_softmax(net.logits(last), -1);             // [b, V] float32
    torch::Tensor la = torch::logsumexp(logp.index_select(1, ids_a), 1);        // [b]
    torch::Tensor lb = torch::logsumexp(logp.index_select(1, ids_b), 1);        // [b]
    torch::Tensor p = torch::sigmoid(la - lb).to(torch::kCPU, torch::kFloat64);  // P(A) / (P(A) + P(B))
    auto acc = p.accessor<double, 1>();
    for (size_t k = 0; k < batch.size(); ++k) out[order[s + k]] = acc[int64_t(k)];
  }
  return out;
}

std::vector<JudgedPair> Judge::judge_chunk(const std::vector<PairToJudge>& pairs, size_t s, size_t e) const {
  std::vector<JudgedPair> out(e - s);
  std::vector<PairToJudge> first(pairs.begin() + s, pairs.begin() + e), swapped;
  for (const auto& p : first) swapped.push_back({p.context, p.response_b, p.response_a, p.instruction});
  std::vector<double> p1 = prob_first_better(first);
  std::vector<double> p2 = prob_first_better(swapped);  // P(B better) with B shown first
  for (size_t k = 0; k < first.size(); ++k) {
    JudgedPair& j = out[k];
    j.prob_a_first = p1[k];
    j.prob_a_second = 1.0 - p2[k];
    j.verdict = combine_orders(j.prob_a_first, j.prob_a_second);
  }
  if (config_.explanation_tokens > 0) {
    torch::InferenceMode guard;
    std::vector<std::vector<int32_t>> prompts;
    std::vector<std::string> lead;
    for (size_t k = 0; k < first.size(); ++k) {
      std::string l = lead_in(out[k].verdict.choice);
      std::vector<int32_t> ids = prompt_ids(first[k]);
      auto more = lead_in_ids(l);
      ids.insert(ids.end(), more.begin(), more.end());
      prompts.push_back(std::move(ids));
      lead.push_back(std::move(l));
    }
    SamplingConfig sampling{.temperature = 0.0, .top_k = 0, .top_p = 1.0,
                            .max_new_tokens = config_.explanation_tokens, .seed = 0};
    GenerateOptions opts;
    opts.stop_ids = model_->stop_ids;
    opts.pad_id = model_->pad_id;
    const size_t bs = static_cast<size_t>(config_.batch_size);
    for (size_t b = 0; b < prompts.size(); b += bs) {
      std::vector<std::vector<int32_t>> batch(prompts.begin() + b, prompts.begin() + std::min(prompts.size(), b + bs));
      Generation g = generate(*model_->net, batch, sampling, opts);
      for (size_t k = 0; k < batch.size(); ++k) {
        // Invalid UTF-8 from the model is replaced (U+FFFD): the output stays readable JSON.
        out[b + k].explanation =
            lead[b + k] + text::utf8::sanitize(model_->tokenizer->decode(g.tokens[k], /*skip_special=*/true));
      }
    }
  }
  return out;
}

std::vector<JudgedPair> Judge::judge(const std::vector<PairToJudge>& pairs, const std::function<void(size_t)>& on_done,
                                     dist::Group* group) const {
  std::vector<JudgedPair> out(pairs.size());
  // In chunks, so progress is reported as work goes; in rounds of one chunk per rank.
  const size_t chunk = static_cast<size_t>(config_.batch_size) * 4;
  const size_t n_chunks = (pairs.size() + chunk - 1) / chunk;
  const size_t ranks = group ? static_cast<size_t>(group->size()) : 1, me = group ? static_cast<size_t>(group->rank()) : 0;
  for (size_t round = 0; round < n_chunks; round += ranks) {
    auto place = [&](size_t c, std::vector<JudgedPair> judged) {
      std::move(judged.begin(), judged.end(), out.begin() + static_cast<std::ptrdiff_t>(c * chunk));
    };
    auto chunk_of = [&](size_t c) { return judge_chunk(pairs, c * chunk, std::min(pairs.size(), (c + 1) * chunk)); };
    if (!group) {
      place(round, chunk_of(round));
    } else {
      const size_t mine = round + me;
      const std::vector<std::string> all = group->all_gather_bytes(mine < n_chunks ? pack(chunk_of(mine)) : "");
      for (size_t k = 0; k < ranks && round + k < n_chunks; ++k) place(round + k, unpack(all[k]));
    }
    if (on_done) on_done(std::min(pairs.size(), (round + ranks) * chunk));
  }
  return out;
}

AutoSxsSummary run_autosxs(const AutoSxsConfig& config) {
  if (config.output.empty()) fail("--output is required");
  size_t skipped = 0;
  std::vector<std::string> problems;
  std::vector<AutoSxsRow> rows = read_autosxs_input(config.input, config.columns, config.skip_invalid, &skipped, &problems);
  if (config.max_rows > 0 && rows.size() > size_t(config.max_rows)) rows.resize(size_t(config.max_rows));
  // Under a launcher every rank has read the rows (and failed on the same bad one); the ranks
  // share the judging, rank 0 alone logs and writes.
  dist::Group* group = dist::job();
  const bool lead = !group || group->rank() == 0;
  if (lead && skipped > 0) {
    std::fprintf(stderr, "[rlhf] %zu invalid rows left out (--skip-invalid); the first: %s\n", skipped,
                 problems.empty() ? "" : problems[0].c_str());
  }
  if (lead)
    std::fprintf(stderr, "[rlhf] autosxs: %zu pairs from %s, task %s%s\n", rows.size(), config.input.c_str(),
                 task_name(config.judge.task), group ? fmt::format(", on {} ranks", group->size()).c_str() : "");
  Judge judge(config.judge);
  if (lead) std::fprintf(stderr, "[rlhf] judge: %s\n", judge.reference().c_str());
  std::vector<PairToJudge> pairs;
  for (const auto& r : rows) pairs.push_back({r.context, r.response_a, r.response_b, r.instruction});
  std::optional<Progress> progress;
  if (config.progress && lead) progress.emplace("judging", static_cast<int64_t>(pairs.size()), "pair");
  std::vector<JudgedPair> judged = judge.judge(
      pairs,
      [&](size_t done) {
        if (progress) progress->update(static_cast<int64_t>(done));
      },
      group);
  if (progress) progress->finish();
  std::vector<Judgment> judgments;
  for (size_t i = 0; i < rows.size(); ++i) {
    Judgment j{.id = rows[i].id, .context = rows[i].context, .response_a = rows[i].response_a,
               .response_b = rows[i].response_b, .verdict = judged[i].verdict,
               .prob_a_first = judged[i].prob_a_first, .prob_a_second = judged[i].prob_a_second,
               .explanation = judged[i].explanation, .human = rows[i].human};
    judgments.push_back(std::move(j));
  }
  AutoSxsSummary summary = summarize(judgments, judge.reference(), config.judge.task);
  summary.invalid_rows_skipped = skipped;
  if (group) group->barrier();  // every rank has checked the output folder before rank 0 writes it
  if (!lead) return summary;
  if (config.in_place) write_autosxs_files(config.output, judgments, summary);
  else write_autosxs_output(config.output, judgments, summary);
  return summary;
}

}  // namespace rlhf::eval
