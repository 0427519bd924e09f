#include "rlhf/train/trained_folder.h"

#include <cmath>
#include <filesystem>
#include <limits>

#include "rlhf/model/peft_config.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"
#include "rlhf/util/json_file.h"

namespace rlhf {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kRewardFormat = "rlhf.reward_model";
constexpr const char* kPolicyFormat = "rlhf.policy";

std::string in_dir(const std::string& dir, const char* name) { return (fs::path(dir) / name).string(); }

// Typed fields of a manifest; errors name the source and the dotted field.
struct Reader {
  const std::string& source;

  const json& field(const json& j, const char* name, const std::string& path) const {
    if (!j.is_object() || !j.contains(name)) fail("{}: field '{}{}' is missing", source, path, name);
    return j.at(name);
  }
  const json& object(const json& j, const char* name, const std::string& path) const {
    const json& v = field(j, name, path);
    if (!v.is_object()) fail("{}: field '{}{}' must be an object", source, path, name);
    return v;
  }
  std::string str(const json& j, const char* name, const std::string& path) const {
    const json& v = field(j, name, path);
    if (!v.is_string()) fail("{}: field '{}{}' must be a string", source, path, name);
    return v.get<std::string>();
  }
  int64_t integer(const json& j, const char* name, const std::string& path) const {
    const json& v = field(j, name, path);
    if (!v.is_number_integer()) fail("{}: field '{}{}' must be an integer", source, path, name);
    return v.get<int64_t>();
  }
  int32_t token_id(const json& j, const char* name, const std::string& path) const {
    const int64_t v = integer(j, name, path);
    if (v < -1 || v > std::numeric_limits<int32_t>::max()) fail("{}: field '{}{}' = {} is not a token id", source, path, name, v);
    return static_cast<int32_t>(v);
  }
  double number(const json& j, const char* name, const std::string& path) const {
    const json& v = field(j, name, path);
    if (!v.is_number()) fail("{}: field '{}{}' must be a number", source, path, name);
    return v.get<double>();
  }
};

void check_lora_matches(const TrainedFolder& f, const PeftLoraConfig& peft, const std::string& peft_path) {
  if (f.lora.rank != peft.rank)
    fail("{}: field 'r' = {} but {} records LoRA rank {} (field 'lora.rank')", peft_path, peft.rank, f.manifest_path(),
         f.lora.rank);
  if (std::abs(f.lora.alpha - peft.alpha) > 1e-9 * peft.alpha)
    fail("{}: field 'lora_alpha' = {} but {} records alpha {} (field 'lora.alpha')", peft_path, peft.alpha,
         f.manifest_path(), f.lora.alpha);
}

}  // namespace

const char* trained_folder_kind_name(TrainedFolder::Kind kind) {
  switch (kind) {
    case TrainedFolder::Kind::RewardModel: return "reward";
    case TrainedFolder::Kind::Policy: return "policy";
    case TrainedFolder::Kind::Peft: return "peft";
  }
  return "?";
}

std::string TrainedFolder::manifest_path() const {
  switch (kind) {
    case Kind::RewardModel: return in_dir(dir, kRewardModelManifest);
    case Kind::Policy: return in_dir(dir, kPolicyManifest);
    case Kind::Peft: break;
  }
  return adapter_config_path();
}
std::string TrainedFolder::adapter_config_path() const { return in_dir(dir, kAdapterConfigFile); }
std::string TrainedFolder::adapter_weights_path() const { return in_dir(dir, kAdapterWeightsFile); }
std::string TrainedFolder::reward_head_path() const { return in_dir(dir, kRewardHeadFile); }

std::vector<std::string> TrainedFolder::content_files() const {
  std::vector<std::string> files = {manifest_path(), adapter_weights_path()};
  if (kind == Kind::RewardModel) files.push_back(reward_head_path());
  return files;
}

std::string TrainedFolder::base_to_load() const {
  std::error_code ec;
  if (!base_path.empty() && fs::exists(base_path, ec)) return base_path;
  if (!base_reference.empty()) return base_reference;
  if (!base_path.empty()) return base_path;
  fail("{}: names no base model ({}); pass --model", manifest_path(),
       kind == Kind::Peft ? "field 'base_model_name_or_path' is empty" : "field 'base_model.reference' is empty");
}

void TrainedFolder::check_base(const std::string& reference, const std::string& path, const std::string& sha256,
                               const std::string& flag) const {
  if (base_sha256.empty() || sha256 == base_sha256) return;
  fail("{}: the base model {} ({}) is not the one this adapter was trained on (sha256 {} != {} recorded in {}); pass {} "
       "with the right model",
       dir, reference, path, sha256.substr(0, 12),
       base_sha256.substr(0, 12), manifest_path(), flag);
}

json TrainedFolder::to_json() const {
  if (kind == Kind::Peft) fail("{}: a peft adapter folder has no manifest to write (adapter_config.json is peft's)", dir);
  json j = {
      {"format", kind == Kind::RewardModel ? kRewardFormat : kPolicyFormat},
      {"version", 1},
      {"base_model", {{"reference", base_reference}, {"path", base_path}, {"format", base_format}, {"sha256", base_sha256}}},
      {"lora", {{"rank", lora.rank}, {"alpha", lora.alpha > 0 ? lora.alpha : double(lora.rank)}, {"dropout", lora.dropout},
                {"targets", lora.targets}}},
      {"encoding", {{"prompt_format", data::prompt_format_name(encode.format)},
                    {"instruction", encode.instruction},
                    {"prompt_sequence_length", encode.prompt_sequence_length},
                    {"target_sequence_length", encode.target_sequence_length},
                    {"eos_id", eos_id},
                    {"pad_id", pad_id}}},
      {"training", training},
  };
  if (kind == Kind::RewardModel) j["head"] = {{"hidden_size", hidden_size}, {"position", "eos"}};
  return j;
}

TrainedFolder TrainedFolder::from_json(const json& j, const std::string& source) {
  if (!j.is_object()) fail("{}: not a JSON object", source);
  const Reader r{source};
  TrainedFolder f;
  const std::string format = r.str(j, "format", "");
  if (format == kRewardFormat) f.kind = Kind::RewardModel;
  else if (format == kPolicyFormat) f.kind = Kind::Policy;
  else fail("{}: field 'format' is \"{}\", not \"{}\" or \"{}\"", source, format, kRewardFormat, kPolicyFormat);
  if (r.integer(j, "version", "") != 1) fail("{}: field 'version': only version 1 is understood", source);

  const json& base = r.object(j, "base_model", "");
  f.base_reference = r.str(base, "reference", "base_model.");
  f.base_path = r.str(base, "path", "base_model.");
  f.base_format = r.str(base, "format", "base_model.");
  f.base_sha256 = r.str(base, "sha256", "base_model.");

  const json& lora = r.object(j, "lora", "");
  f.lora.rank = r.integer(lora, "rank", "lora.");
  if (f.lora.rank <= 0) fail("{}: field 'lora.rank' must be positive (got {})", source, f.lora.rank);
  f.lora.alpha = r.number(lora, "alpha", "lora.");
  if (!(f.lora.alpha > 0)) fail("{}: field 'lora.alpha' must be positive (got {})", source, f.lora.alpha);
  f.lora.dropout = r.number(lora, "dropout", "lora.");
  const json& targets = r.field(lora, "targets", "lora.");
  if (!targets.is_array() || targets.empty()) fail("{}: field 'lora.targets' must be a non-empty array", source);
  f.lora.targets.clear();
  for (const auto& t : targets) {
    if (!t.is_string()) fail("{}: field 'lora.targets' must hold strings", source);
    f.lora.targets.push_back(t.get<std::string>());
  }

  if (f.kind == Kind::RewardModel) {
    f.hidden_size = r.integer(r.object(j, "head", ""), "hidden_size", "head.");
    if (f.hidden_size <= 0) fail("{}: field 'head.hidden_size' must be positive (got {})", source, f.hidden_size);
  }

  const json& enc = r.object(j, "encoding", "");
  try {
    f.encode.format = data::parse_prompt_format(r.str(enc, "prompt_format", "encoding."));
  } catch (const Error& e) {
    fail("{}: field 'encoding.prompt_format': {}", source, e.what());
  }
  f.encode.instruction = r.str(enc, "instruction", "encoding.");
  f.encode.prompt_sequence_length = r.integer(enc, "prompt_sequence_length", "encoding.");
  f.encode.target_sequence_length = r.integer(enc, "target_sequence_length", "encoding.");
  if (f.encode.prompt_sequence_length < 1)
    fail("{}: field 'encoding.prompt_sequence_length' must be positive (got {})", source, f.encode.prompt_sequence_length);
  if (f.encode.target_sequence_length < 2)
    fail("{}: field 'encoding.target_sequence_length' must be at least 2 (got {})", source, f.encode.target_sequence_length);
  f.eos_id = r.token_id(enc, "eos_id", "encoding.");
  f.pad_id = r.token_id(enc, "pad_id", "encoding.");
  if (auto t = j.find("training"); t != j.end()) f.training = *t;
  return f;
}

TrainedFolder read_trained_folder(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail("{}: no such folder", dir);
  const bool reward = fs::exists(in_dir(dir, kRewardModelManifest), ec);
  const bool policy = fs::exists(in_dir(dir, kPolicyManifest), ec);
  const bool peft = fs::exists(in_dir(dir, kAdapterConfigFile), ec);
  if (reward && policy)
    fail("{}: holds both {} and {}; a trained folder holds one model", dir, kRewardModelManifest, kPolicyManifest);
  if (!reward && !policy && !peft) {
    // A pipeline run's stage folder (RUN/train_policy, RUN/train_reward) holds its model in model/.
    const std::string inner = in_dir(dir, "model");
    if (fs::exists(in_dir(inner, kRewardModelManifest), ec) || fs::exists(in_dir(inner, kPolicyManifest), ec) ||
        fs::exists(in_dir(inner, kAdapterConfigFile), ec))
      return read_trained_folder(inner);
    fail("{}: not a trained folder: no {} (train-reward), {} (train-policy) or {} (peft adapter); was training "
         "finished?",
         dir, kRewardModelManifest, kPolicyManifest, kAdapterConfigFile);
  }

  TrainedFolder f;
  if (reward || policy) {
    const std::string manifest = in_dir(dir, reward ? kRewardModelManifest : kPolicyManifest);
    f = TrainedFolder::from_json(read_json_file(manifest, kMaxManifestBytes), manifest);
    const TrainedFolder::Kind want = reward ? TrainedFolder::Kind::RewardModel : TrainedFolder::Kind::Policy;
    if (f.kind != want)
      fail("{}: field 'format' is \"{}\", not \"{}\"", manifest, f.kind == TrainedFolder::Kind::RewardModel ? kRewardFormat : kPolicyFormat,
           reward ? kRewardFormat : kPolicyFormat);
  } else {
    f.kind = TrainedFolder::Kind::Peft;
  }
  f.dir = dir;

  const std::string peft_path = f.adapter_config_path();
  if (!fs::exists(peft_path, ec))
    fail("{}: {} is missing (an adapter folder holds {} and {}; a train-policy folder also {})", dir, kAdapterConfigFile,
         kAdapterConfigFile, kAdapterWeightsFile, kPolicyManifest);
  const PeftLoraConfig p = read_peft_lora_config(peft_path);
  f.task_type = p.task_type;
  if (f.kind == TrainedFolder::Kind::Peft) {
    f.lora.rank = p.rank;
    f.lora.alpha = p.alpha;
    f.lora.dropout = p.dropout;
    f.lora.targets = p.targets;
    f.base_reference = p.base_model;
  } else {
    check_lora_matches(f, p, peft_path);
  }
  if (!fs::exists(f.adapter_weights_path(), ec)) fail("{}: {} is missing", dir, kAdapterWeightsFile);
  if (f.kind == TrainedFolder::Kind::RewardModel && !fs::exists(f.reward_head_path(), ec))
    fail("{}: {} is missing", dir, kRewardHeadFile);
  return f;
}

void write_trained_folder_manifest(const std::string& dir, const TrainedFolder& folder) {
  if (folder.kind == TrainedFolder::Kind::Peft)
    fail("{}: a peft adapter folder has no manifest to write (adapter_config.json is written with the adapter)", dir);
  const char* name = folder.kind == TrainedFolder::Kind::RewardModel ? kRewardModelManifest : kPolicyManifest;
  write_file_atomic(in_dir(dir, name), folder.to_json().dump(2) + "\n");
}

void write_policy_folder_manifest(const std::string& dir, const TrainedFolder& folder) {
  if (folder.kind != TrainedFolder::Kind::Policy)
    fail("{}: {} holds a policy, not a {} folder", dir, kPolicyManifest, trained_folder_kind_name(folder.kind));
  write_trained_folder_manifest(dir, folder);
}

void write_reward_model_info(const std::string& dir, const RewardModelInfo& info) {
  if (info.kind != TrainedFolder::Kind::RewardModel)
    fail("{}: {} holds a reward model, not a {} folder", dir, kRewardModelManifest, trained_folder_kind_name(info.kind));
  write_trained_folder_manifest(dir, info);
}

RewardModelInfo read_reward_model_info(const std::string& dir) {
  std::error_code ec;
  if (fs::is_directory(dir, ec) && !fs::exists(in_dir(dir, kRewardModelManifest), ec)) {
    if (fs::exists(in_dir(dir, kPolicyManifest), ec))
      fail("{}: holds a policy ({}), not a reward model ({})", dir, kPolicyManifest, kRewardModelManifest);
    fail("{}: not a reward model folder (no {}; was training finished?)", dir, kRewardModelManifest);
  }
  return read_trained_folder(dir);
}

}  // namespace rlhf
