#include "rlhf/train/rollout.h"

#include <algorithm>

namespace rlhf {

int64_t Rollouts::width() const {
  size_t t = 0;
  for (const auto& s : samples) t = std::max(t, s.response.size());
  return static_cast<int64_t>(t);
}

std::vector<int32_t> response_body(const Sample& s) {
  return {s.response.begin(), s.response.end() - (s.stopped ? 1 : 0)};
}

std::vector<std::vector<size_t>> micro_batches(std::vector<size_t> idx, const std::vector<Sample>& s, int64_t size) {
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
    return s[a].prompt->size() + s[a].response.size() < s[b].prompt->size() + s[b].response.size();
  });
  std::vector<std::vector<size_t>> out;
  for (size_t i = 0; i < idx.size(); i += size)
    out.emplace_back(idx.begin() + i, idx.begin() + std::min(idx.size(), i + static_cast<size_t>(size)));
  return out;
}

RolloutBatch pack_samples(const std::vector<size_t>& idx, const std::vector<Sample>& s, int32_t pad,
                          torch::Device device) {
  std::vector<const std::vector<int32_t>*> prompts, responses;
  for (size_t i : idx) prompts.push_back(s[i].prompt), responses.push_back(&s[i].response);
  return pack_rollouts(prompts, responses, pad, device);
}

torch::Tensor gather_rows(const torch::Tensor& t, const std::vector<size_t>& idx, int64_t width) {
  std::vector<int64_t> i64(idx.begin(), idx.end());
  auto index = torch::tensor(i64, torch::kInt64).to(t.device());
  return t.index_select(0, index).narrow(1, 0, width);
}

torch::Tensor gather_items(const torch::Tensor& t, const std::vector<size_t>& idx) {
  std::vector<int64_t> i64(idx.begin(), idx.end());
  return t.index_select(0, torch::tensor(i64, torch::kInt64).to(t.device()));
}

void scatter_rows(torch::Tensor& dst, const std::vector<size_t>& idx, const torch::Tensor& src) {
  for (size_t k = 0; k < idx.size(); ++k)
    dst[static_cast<int64_t>(idx[k])].narrow(0, 0, src.size(1)).copy_(src[static_cast<int64_t>(k)]);
}

uint64_t mix_seed(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
  uint64_t x = seed;
  for (uint64_t v : {a, b, c}) {
    x ^= v + 0x9e3779b97f4a7c15ULL + (x << 6) + (x >> 2);
    x = (x ^ (x >> 31)) * 0xbf58476d1ce4e5b9ULL;
  }
  return x ^ (x >> 29);
}

}  // namespace rlhf
