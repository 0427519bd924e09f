#include "rlhf/train/reward_artifact.h"

#include <algorithm>
#include <filesystem>
#include <numeric>

#include "rlhf/model/loader.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"
#include "rlhf/util/progress.h"

namespace rlhf {

using nlohmann::json;

json RewardModelInfo::to_json() const {
  return {
      {"format", "rlhf.reward_model"},
      {"version", 1},
      {"base_model", {{"reference", base_reference}, {"path", base_path}, {"format", base_format}, {"sha256", base_sha256}}},
      {"lora", {{"rank", lora.rank}, {"alpha", lora.alpha > 0 ? lora.alpha : double(lora.rank)}, {"dropout", lora.dropout},
                {"targets", lora.targets}}},
      {"head", {{"hidden_size", hidden_size}, {"position", "eos"}}},
      {"encoding", {{"prompt_format", data::prompt_format_name(encode.format)},
                    {"instruction", encode.instruction},
                    {"prompt_sequence_length", encode.prompt_sequence_length},
                    {"target_sequence_length", encode.target_sequence_length},
                    {"eos_id", eos_id},
                    {"pad_id", pad_id}}},
      {"training", training},
  };
}

namespace {

const json& field(const json& j, const char* name, const std::string& path, const std::string& source) {
  if (!j.is_object() || !j.contains(name)) fail("{}: field '{}{}' is missing", source, path, name);
  return j.at(name);
}
std::string str(const json& j, const char* name, const std::string& path, const std::string& source) {
  const json& v = field(j, name, path, source);
  if (!v.is_string()) fail("{}: field '{}{}' must be a string", source, path, name);
  return v.get<std::string>();
}
int64_t integer(const json& j, const char* name, const std::string& path, const std::string& source) {
  const json& v = field(j, name, path, source);
  if (!v.is_number_integer()) fail("{}: field '{}{}' must be an integer", source, path, name);
  return v.get<int64_t>();
}
double number(const json& j, const char* name, const std::string& path, const std::string& source) {
  const json& v = field(j, name, path, source);
  if (!v.is_number()) fail("{}: field '{}{}' must be a number", source, path, name);
  return v.get<double>();
}

}  // namespace

RewardModelInfo RewardModelInfo::from_json(const json& j, const std::string& source) {
  if (!j.is_object()) fail("{}: not a JSON object", source);
  if (str(j, "format", "", source) != "rlhf.reward_model") fail("{}: field 'format' is not \"rlhf.reward_model\"", source);
  if (integer(j, "version", "", source) != 1) fail("{}: field 'version': only version 1 is understood", source);
  RewardModelInfo info;
  const json& base = field(j, "base_model", "", source);
  info.base_reference = str(base, "reference", "base_model.", source);
  info.base_path = str(base, "path", "base_model.", source);
  info.base_format = str(base, "format", "base_model.", source);
  info.base_sha256 = str(base, "sha256", "base_model.", source);
  const json& lora = field(j, "lora", "", source);
  info.lora.rank = integer(lora, "rank", "lora.", source);
  info.lora.alpha = number(lora, "alpha", "lora.", source);
  info.lora.dropout = number(lora, "dropout", "lora.", source);
  const json& targets = field(lora, "targets", "lora.", source);
  if (!targets.is_array() || targets.empty()) fail("{}: field 'lora.targets' must be a non-empty array", source);
  info.lora.targets.clear();
  for (const auto& t : targets) {
    if (!t.is_string()) fail("{}: field 'lora.targets' must hold strings", source);
    info.lora.targets.push_back(t.get<std::string>());
  }
  info.hidden_size = integer(field(j, "head", "", source), "hidden_size", "head.", source);
  const json& enc = field(j, "encoding", "", source);
  try {
    info.encode.format = data::parse_prompt_format(str(enc, "prompt_format", "encoding.", source));
  } catch (const Error& e) {
    fail("{}: field 'encoding.prompt_format': {}", source, e.what());
  }
  info.encode.instruction = str(enc, "instruction", "encoding.", source);
  info.encode.prompt_sequence_length = integer(enc, "prompt_sequence_length", "encoding.", source);
  info.encode.target_sequence_length = integer(enc, "target_sequence_length", "encoding.", source);
  info.eos_id = static_cast<int32_t>(integer(enc, "eos_id", "encoding.", source));
  info.pad_id = static_cast<int32_t>(integer(enc, "pad_id", "encoding.", source));
  if (j.contains("training")) info.training = j["training"];
  return info;
}

void write_reward_model_info(const std::string& dir, const RewardModelInfo& info) {
  write_file_atomic(dir + "/reward_model.json", info.to_json().dump(2) + "\n");
}

RewardModelInfo read_reward_model_info(const std::string& dir) {
  const std::string path = dir + "/reward_model.json";
  if (!std::filesystem::exists(path))
    fail("{}: not a reward model folder (no reward_model.json; was training finished?)", dir);
  json j;
  try {
    j = json::parse(read_file(path, 16u << 20));
  } catch (const json::parse_error& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
  return RewardModelInfo::from_json(j, path);
}

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
  const std::string hash = model_content_hash(m->base->path);
  if (hash != m->info.base_sha256)
    fail("{}: the base model {} ({}) is not the one this reward model was trained on (sha256 {} != {}); "
         "pass --large-model-reference with the right model",
         dir, ref, m->base->path, hash.substr(0, 12), m->info.base_sha256.substr(0, 12));
  if (m->base->config.hidden_size != m->info.hidden_size)
    fail("{}: head width {} does not match the base model's hidden size {}", dir, m->info.hidden_size,
         m->base->config.hidden_size);
  m->reward = std::make_unique<RewardModel>(*m->base->net, m->info.lora, /*seed=*/0);
  m->reward->load_weights(dir);
  m->encoder = std::make_unique<data::Encoder>(*m->base->tokenizer, m->base->chat_template, m->info.eos_id, m->info.encode);
  return m;
}

std::vector<float> score_rows(const LoadedRewardModel& m, const std::vector<data::ScoredRow>& rows,
                              int64_t batch_size, bool progress) {
  std::vector<std::vector<int32_t>> seqs(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    seqs[i] = m.encoder->prompt_ids(rows[i].prompt);
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
  for (size_t start = 0; start < order.size(); start += batch_size) {
    const size_t end = std::min(order.size(), start + static_cast<size_t>(batch_size));
    std::vector<std::vector<int32_t>> batch;
    for (size_t i = start; i < end; ++i) batch.push_back(seqs[order[i]]);
    auto sb = pack_sequences(batch, m.info.pad_id, /*left_pad=*/false, m.base->net->device());
    auto r = m.reward->score(sb).to(torch::kCPU);
    for (size_t i = start; i < end; ++i) out[order[i]] = r[static_cast<int64_t>(i - start)].item<float>();
    if (bar) bar->update(static_cast<int64_t>(end));
  }
  if (bar) bar->finish();
  return out;
}

}  // namespace rlhf
