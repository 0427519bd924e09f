#include "rlhf/train/reward_model.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <numeric>

#include "rlhf/train/adapter_io.h"
#include "rlhf/train/tensor_file.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"

namespace rlhf {

PairBatch pack_pairs(std::span<const data::PreferencePair* const> pairs, int32_t pad_id, torch::Device device) {
  const int64_t n = static_cast<int64_t>(pairs.size());
  auto length = [&](int64_t i) {
    const auto& p = *pairs[i];
    return static_cast<int64_t>(p.prompt.size() + p.chosen.size() + p.rejected.size());
  };
  // Rows as wide as the longest pair; the pairs placed first-fit, longest first.
  int64_t L = 0;
  for (int64_t i = 0; i < n; ++i) L = std::max(L, length(i));
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return length(a) > length(b); });
  std::vector<int64_t> used;                 // tokens used per row
  std::vector<std::pair<int64_t, int64_t>> at(n);  // pair -> (row, offset)
  for (int64_t i : order) {
    size_t r = 0;
    while (r < used.size() && used[r] + length(i) > L) ++r;
    if (r == used.size()) used.push_back(0);
    at[i] = {static_cast<int64_t>(r), used[r]};
    used[r] += length(i);
  }
  const int64_t R = static_cast<int64_t>(used.size());
  // Per token: which pair of its row (-1 = padding) and which part (0 prompt, 1 chosen, 2 rejected).
  std::vector<int64_t> tokens(R * L, pad_id), positions(R * L, 0), owner(R * L, -1), part(R * L, -1);
  std::vector<int64_t> chosen_end(n), rejected_end(n), from, target, of;
  PairBatch out;
  for (int64_t i = 0; i < n; ++i) {
    const auto& p = *pairs[i];
    if (p.chosen.empty() || p.rejected.empty()) fail("{}: empty completion after encoding", p.where);
    const int64_t P = p.prompt.size(), C = p.chosen.size(), Rj = p.rejected.size();
    const int64_t base = at[i].first * L + at[i].second;
    auto put = [&](int64_t k, int32_t tok, int64_t pos, int64_t which) {
      tokens[base + k] = tok, positions[base + k] = pos, owner[base + k] = i, part[base + k] = which;
    };
    for (int64_t k = 0; k < P; ++k) put(k, p.prompt[k], k, 0);
    for (int64_t k = 0; k < C; ++k) put(P + k, p.chosen[k], P + k, 1);
    for (int64_t k = 0; k < Rj; ++k) put(P + C + k, p.rejected[k], P + k, 2);
    for (int64_t k = P > 0 ? 0 : 1; k < C; ++k)
      from.push_back(k == 0 ? base + P - 1 : base + P + k - 1), target.push_back(p.chosen[k]), of.push_back(2 * i);
    for (int64_t k = P > 0 ? 0 : 1; k < Rj; ++k)
      from.push_back(k == 0 ? base + P - 1 : base + P + C + k - 1), target.push_back(p.rejected[k]), of.push_back(2 * i + 1);
    chosen_end[i] = base + P + C - 1;
    rejected_end[i] = base + P + C + Rj - 1;
    out.real_tokens += P + C + Rj;
  }
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  auto own = torch::from_blob(owner.data(), {R, L}, i64).clone();
  auto prt = torch::from_blob(part.data(), {R, L}, i64).clone();
  auto q_own = own.unsqueeze(2), k_own = own.unsqueeze(1);  // [R, L, 1], [R, 1, L]
  auto q_prt = prt.unsqueeze(2), k_prt = prt.unsqueeze(1);
  auto idx = torch::arange(L, i64);
  auto causal = idx.view({1, 1, L}) <= idx.view({1, L, 1});  // key j <= query i
  // A key is visible when it is not after the query, belongs to the query's pair, and is
  // either the prompt or the query's own completion.
  auto mask = causal & (k_own >= 0) & (k_own == q_own) & ((k_prt == 0) | (k_prt == q_prt));
  mask = mask | torch::eye(L, torch::TensorOptions().dtype(torch::kBool)).unsqueeze(0);  // padding sees itself
  out.tokens = torch::from_blob(tokens.data(), {R, L}, i64).clone().to(device);
  out.positions = torch::from_blob(positions.data(), {R, L}, i64).clone().to(device);
  out.attn_mask = mask.unsqueeze(1).to(device);
  out.chosen_end = torch::from_blob(chosen_end.data(), {n}, i64).clone().to(device);
  out.rejected_end = torch::from_blob(rejected_end.data(), {n}, i64).clone().to(device);
  const int64_t N = static_cast<int64_t>(from.size());
  out.completion_from = torch::from_blob(from.data(), {N}, i64).clone().to(device);
  out.completion_token = torch::from_blob(target.data(), {N}, i64).clone().to(device);
  out.completion_of = torch::from_blob(of.data(), {N}, i64).clone().to(device);
  return out;
}

SequenceBatch pack_sequences(const std::vector<std::vector<int32_t>>& seqs, int32_t pad_id, bool left_pad,
                             torch::Device device) {
  const int64_t B = static_cast<int64_t>(seqs.size());
  int64_t L = 0;
  for (const auto& s : seqs) L = std::max<int64_t>(L, s.size());
  if (L == 0) fail("cannot score empty sequences");
  std::vector<int64_t> tokens(B * L, pad_id), last(B);
  std::vector<uint8_t> real(B * L, 0);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = seqs[b].size(), off = left_pad ? L - n : 0;
    for (int64_t i = 0; i < n; ++i) tokens[b * L + off + i] = seqs[b][i], real[b * L + off + i] = 1;
    last[b] = off + n - 1;
  }
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  auto key_mask = torch::from_blob(real.data(), {B, L}, torch::kUInt8).to(torch::kBool);
  SequenceBatch out;
  out.tokens = torch::from_blob(tokens.data(), {B, L}, i64).clone().to(device);
  out.positions = positions_from_mask(key_mask).to(device);
  out.attn_mask = make_attention_mask(key_mask, 0, L).to(device);
  out.last = torch::from_blob(last.data(), {B}, i64).clone().to(device);
  return out;
}

RewardModel::RewardModel(Transformer& net, const LoraConfig& lora, uint64_t seed)
    : net_(net), adapter_(&net.add_adapter(kAdapterName, lora, seed)) {
  auto gen = at::detail::createCPUGenerator(seed ^ 0x5eedf00dULL);
  const int64_t H = net.config().hidden_size;
  weight_ = torch::empty({H}, torch::kFloat32).normal_(0.0, 0.02, gen).to(net.device()).set_requires_grad(true);
  bias_ = torch::zeros({1}, torch::TensorOptions().dtype(torch::kFloat32).device(net.device())).set_requires_grad(true);
}

torch::Tensor RewardModel::head(const torch::Tensor& hidden, const torch::Tensor& index) const {
  const int64_t B = hidden.size(0), H = hidden.size(2);
  auto at = hidden.gather(1, index.view({B, 1, 1}).expand({B, 1, H})).squeeze(1);  // [B, H]
  return torch::mv(at.to(torch::kFloat32), weight_) + bias_;
}

torch::Tensor RewardModel::hidden(const torch::Tensor& tokens, const torch::Tensor& positions,
                                  const torch::Tensor& attn_mask, bool train) const {
  ForwardArgs args;
  args.tokens = tokens;
  args.positions = positions;
  args.attn_mask = attn_mask;
  args.adapters = {adapter_};
  args.train = train;
  return net_.hidden(args);
}

torch::Tensor RewardModel::score(const SequenceBatch& batch, bool train) const {
  return head(hidden(batch.tokens, batch.positions, batch.attn_mask, train), batch.last);
}

std::pair<torch::Tensor, torch::Tensor> RewardModel::score_pairs(const PairBatch& batch, bool train) const {
  auto hidden = this->hidden(batch.tokens, batch.positions, batch.attn_mask, train);  // [R, L, H]
  auto flat = hidden.reshape({-1, hidden.size(2)});  // [R·L, H]
  auto reward_at = [&](const torch::Tensor& index) {
    return torch::mv(flat.index_select(0, index).to(torch::kFloat32), weight_) + bias_;
  };
  return {reward_at(batch.chosen_end), reward_at(batch.rejected_end)};
}

std::map<std::string, torch::Tensor> RewardModel::parameters() const {
  auto out = adapter_->named_parameters();
  out["score.weight"] = weight_;
  out["score.bias"] = bias_;
  return out;
}

void RewardModel::shift_bias(double delta) {
  torch::NoGradGuard no_grad;
  bias_.add_(delta);
}

void RewardModel::save_weights(const std::string& dir, const std::string& base_reference) const {
  save_adapter(dir, *adapter_, {.base_reference = base_reference, .task_type = "SEQ_CLS", .modules_to_save = {"score"}});
  save_tensors(dir + "/reward_head.safetensors",
               {{"score.weight", weight_.view({1, -1})}, {"score.bias", bias_}}, {{"format", "pt"}});
}

void RewardModel::load_weights(const std::string& dir) {
  load_adapter(dir, const_cast<LoraAdapter&>(*adapter_));
  const std::string head_path = dir + "/reward_head.safetensors";
  auto head = load_tensors(head_path, net_.device());
  for (const char* name : {"score.weight", "score.bias"})
    if (!head.count(name)) fail("{}: tensor '{}' is missing", head_path, name);
  auto w = weight_.view({1, -1});
  copy_checked(w, head["score.weight"], head_path + ": tensor 'score.weight'");
  copy_checked(bias_, head["score.bias"], head_path + ": tensor 'score.bias'");
}

torch::Tensor reward_pair_losses(const torch::Tensor& chosen, const torch::Tensor& rejected, double margin,
                                 double centering) {
  auto loss = -torch::log_sigmoid(chosen - rejected - margin);
  if (centering != 0) loss = loss + centering * (chosen + rejected).pow(2);
  return loss;
}

}  // namespace rlhf
