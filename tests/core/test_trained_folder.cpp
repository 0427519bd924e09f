// Trained folders (train/trained_folder.h): each kind written and read back with every
// field, the manifests in their on-disk layout, and broken folders refused with the file and
// the field named.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "rlhf/model/peft_config.h"
#include "rlhf/train/trained_folder.h"
#include "rlhf/util/error.h"
#include "rlhf/util/json_file.h"
#include "test_util.h"

namespace rlhf {
namespace {

using rlhf::testing::error_of;

namespace fs = std::filesystem;
using nlohmann::json;

TrainedFolder sample(TrainedFolder::Kind kind) {
  TrainedFolder f;
  f.kind = kind;
  f.base_reference = "tiny";
  f.base_path = "/models/tiny";
  f.base_format = "hf";
  f.base_sha256 = std::string(64, 'a');
  f.lora.rank = 4;
  f.lora.alpha = 8;
  f.lora.dropout = 0.05;
  f.lora.targets = {"q_proj", "v_proj"};
  f.encode.format = data::PromptFormat::Chat;
  f.encode.instruction = "Summarize:";
  f.encode.prompt_sequence_length = 96;
  f.encode.target_sequence_length = 24;
  f.eos_id = 2;
  f.pad_id = 3;
  if (kind == TrainedFolder::Kind::RewardModel) f.hidden_size = 64;
  f.training = {{"summary", {{"steps", 7}}}};
  return f;
}

// The adapter files a trainer writes before its manifest (contents are not read here).
void write_adapter_files(const fs::path& dir, const TrainedFolder& f, const std::string& task_type) {
  fs::create_directories(dir);
  PeftLoraConfig p;
  p.rank = f.lora.rank;
  p.alpha = f.lora.alpha;
  p.dropout = f.lora.dropout;
  p.targets = f.lora.targets;
  p.base_model = f.base_reference;
  p.task_type = task_type;
  write_peft_lora_config((dir / kAdapterConfigFile).string(), p);
  std::ofstream(dir / kAdapterWeightsFile) << "weights";
  if (f.kind == TrainedFolder::Kind::RewardModel) std::ofstream(dir / kRewardHeadFile) << "head";
}

fs::path write_folder(const fs::path& dir, const TrainedFolder& f) {
  write_adapter_files(dir, f, f.kind == TrainedFolder::Kind::RewardModel ? "SEQ_CLS" : "CAUSAL_LM");
  if (f.kind == TrainedFolder::Kind::RewardModel) write_reward_model_info(dir.string(), f);
  else write_policy_folder_manifest(dir.string(), f);
  return dir;
}

void expect_same(const TrainedFolder& got, const TrainedFolder& want) {
  EXPECT_EQ(got.kind, want.kind);
  EXPECT_EQ(got.base_reference, want.base_reference);
  EXPECT_EQ(got.base_path, want.base_path);
  EXPECT_EQ(got.base_format, want.base_format);
  EXPECT_EQ(got.base_sha256, want.base_sha256);
  EXPECT_EQ(got.lora.rank, want.lora.rank);
  EXPECT_DOUBLE_EQ(got.lora.alpha, want.lora.alpha);
  EXPECT_DOUBLE_EQ(got.lora.dropout, want.lora.dropout);
  EXPECT_EQ(got.lora.targets, want.lora.targets);
  EXPECT_EQ(got.encode.format, want.encode.format);
  EXPECT_EQ(got.encode.instruction, want.encode.instruction);
  EXPECT_EQ(got.encode.prompt_sequence_length, want.encode.prompt_sequence_length);
  EXPECT_EQ(got.encode.target_sequence_length, want.encode.target_sequence_length);
  EXPECT_EQ(got.eos_id, want.eos_id);
  EXPECT_EQ(got.pad_id, want.pad_id);
  EXPECT_EQ(got.hidden_size, want.hidden_size);
  EXPECT_EQ(got.training, want.training);
}

TEST(TrainedFolder, RewardModelRoundTripsInItsLayout) {
  const fs::path dir = testing::scratch_dir() / "rm";
  const TrainedFolder want = sample(TrainedFolder::Kind::RewardModel);
  write_folder(dir, want);
  const TrainedFolder got = read_trained_folder(dir.string());
  expect_same(got, want);
  EXPECT_EQ(got.dir, dir.string());
  EXPECT_EQ(got.task_type, "SEQ_CLS");
  EXPECT_EQ(got.manifest_path(), (dir / "reward_model.json").string());
  EXPECT_EQ(got.content_files(), (std::vector<std::string>{(dir / "reward_model.json").string(),
                                                           (dir / "adapter_model.safetensors").string(),
                                                           (dir / "reward_head.safetensors").string()}));
  expect_same(read_reward_model_info(dir.string()), want);

  const json j = read_json_file((dir / "reward_model.json").string());
  EXPECT_EQ(j["format"], "rlhf.reward_model");
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["base_model"]["sha256"], want.base_sha256);
  EXPECT_EQ(j["head"]["hidden_size"], 64);
  EXPECT_EQ(j["head"]["position"], "eos");
  EXPECT_EQ(j["encoding"]["prompt_format"], "chat");
  EXPECT_EQ(j["encoding"]["eos_id"], 2);
  EXPECT_EQ(j["lora"]["targets"], json({"q_proj", "v_proj"}));
  // No temporary file is left beside the manifest.
  for (const auto& e : fs::directory_iterator(dir)) EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
}

TEST(TrainedFolder, PolicyRoundTripsAsRlhfPolicyWithoutAHead) {
  const fs::path dir = testing::scratch_dir() / "policy";
  const TrainedFolder want = sample(TrainedFolder::Kind::Policy);
  write_folder(dir, want);
  const TrainedFolder got = read_trained_folder(dir.string());
  expect_same(got, want);
  EXPECT_EQ(got.manifest_path(), (dir / "policy.json").string());
  EXPECT_EQ(got.content_files().size(), 2u);
  const json j = read_json_file((dir / "policy.json").string());
  EXPECT_EQ(j["format"], "rlhf.policy");
  EXPECT_FALSE(j.contains("head"));
  EXPECT_FALSE(fs::exists(dir / "reward_model.json"));

  // A policy folder is not a reward model, and the writers refuse the wrong kind.
  EXPECT_NE(error_of([&] { read_reward_model_info(dir.string()); }).find("holds a policy"), std::string::npos);
  EXPECT_NE(error_of([&] { write_reward_model_info(dir.string(), want); }).find("reward_model.json"), std::string::npos);
  EXPECT_NE(error_of([&] { write_policy_folder_manifest(dir.string(), sample(TrainedFolder::Kind::RewardModel)); })
                .find("policy.json"),
            std::string::npos);
}

// A pipeline run's stage folder (RUN/train_policy) stands for the model in its model/ subfolder.
TEST(TrainedFolder, AStageFolderStandsForItsModelSubfolder) {
  const fs::path stage = testing::scratch_dir() / "train_policy";
  const TrainedFolder want = sample(TrainedFolder::Kind::Policy);
  write_folder(stage / "model", want);
  const TrainedFolder got = read_trained_folder(stage.string());
  expect_same(got, want);
  EXPECT_EQ(got.dir, (stage / "model").string());
  EXPECT_EQ(got.manifest_path(), (stage / "model" / "policy.json").string());
  // A folder with neither a model nor a model/ holding one is still refused, named.
  fs::create_directories(stage.parent_path() / "empty" / "model");
  EXPECT_NE(error_of([&] { read_trained_folder((stage.parent_path() / "empty").string()); }).find("not a trained folder"),
            std::string::npos);
}

TEST(TrainedFolder, PeftFolderIsDetectedFromAdapterConfig) {
  const fs::path dir = testing::scratch_dir() / "peft";
  TrainedFolder want = sample(TrainedFolder::Kind::Peft);
  want.lora.alpha = 0;  // absent: alpha = rank
  fs::create_directories(dir);
  std::ofstream(dir / kAdapterWeightsFile) << "weights";
  std::ofstream(dir / kAdapterConfigFile)
      << R"({"peft_type": "LORA", "r": 2, "target_modules": ["q_proj"], "base_model_name_or_path": "org/base",
             "task_type": "CAUSAL_LM", "lora_dropout": 0.1})";
  const TrainedFolder got = read_trained_folder(dir.string());
  EXPECT_EQ(got.kind, TrainedFolder::Kind::Peft);
  EXPECT_STREQ(trained_folder_kind_name(got.kind), "peft");
  EXPECT_EQ(got.lora.rank, 2);
  EXPECT_DOUBLE_EQ(got.lora.alpha, 2.0);
  EXPECT_DOUBLE_EQ(got.lora.dropout, 0.1);
  EXPECT_EQ(got.lora.targets, std::vector<std::string>{"q_proj"});
  EXPECT_EQ(got.base_reference, "org/base");
  EXPECT_EQ(got.base_to_load(), "org/base");
  EXPECT_TRUE(got.base_sha256.empty());
  EXPECT_EQ(got.eos_id, -1);
  EXPECT_EQ(got.task_type, "CAUSAL_LM");
  EXPECT_EQ(got.manifest_path(), (dir / "adapter_config.json").string());
  got.check_base("x", "/x", std::string(64, 'b'), "--model");  // nothing recorded: no check
  // A peft folder has no manifest of ours to write.
  EXPECT_NE(error_of([&] { write_trained_folder_manifest(dir.string(), got); }).find("peft"), std::string::npos);
}

TEST(TrainedFolder, BaseToLoadPrefersTheRecordedPathWhileItExists) {
  const fs::path dir = testing::scratch_dir();
  TrainedFolder f = sample(TrainedFolder::Kind::Policy);
  f.base_path = (dir / "gone").string();
  EXPECT_EQ(f.base_to_load(), "tiny");
  fs::create_directories(dir / "here");
  f.base_path = (dir / "here").string();
  EXPECT_EQ(f.base_to_load(), f.base_path);
  f.base_reference.clear();
  f.base_path.clear();
  EXPECT_NE(error_of([&] { f.base_to_load(); }).find("names no base model"), std::string::npos);

  f = sample(TrainedFolder::Kind::Policy);
  f.check_base("tiny", "/models/tiny", f.base_sha256, "--model");
  const std::string e = error_of([&] { f.check_base("tiny", "/models/tiny", std::string(64, 'b'), "--model"); });
  EXPECT_NE(e.find("is not the one this adapter was trained on (sha256 bbbbbbbbbbbb != aaaaaaaaaaaa"), std::string::npos) << e;
  EXPECT_NE(e.find("pass --model"), std::string::npos) << e;
}

// Each broken reward model folder: the error names the file and the field (or the file that
// is missing).
TEST(TrainedFolder, BrokenFoldersNameTheFileAndTheField) {
  const fs::path root = testing::scratch_dir();
  int n = 0;
  auto broken = [&](const std::function<void(const fs::path&, json&)>& edit) {
    const fs::path dir = write_folder(root / std::to_string(n++), sample(TrainedFolder::Kind::RewardModel));
    json j = read_json_file((dir / "reward_model.json").string());
    edit(dir, j);
    if (!j.is_null()) std::ofstream(dir / "reward_model.json") << j.dump(2);
    return error_of([&] { read_trained_folder(dir.string()); });
  };
  auto expect_has = [](const std::string& e, std::initializer_list<const char*> needles) {
    for (const char* s : needles) EXPECT_NE(e.find(s), std::string::npos) << "missing '" << s << "' in: " << e;
  };

  expect_has(broken([](const fs::path&, json& j) { j["base_model"].erase("sha256"); }),
             {"reward_model.json", "field 'base_model.sha256' is missing"});
  expect_has(broken([](const fs::path&, json& j) { j["lora"]["rank"] = "four"; }),
             {"reward_model.json", "field 'lora.rank' must be an integer"});
  expect_has(broken([](const fs::path&, json& j) { j["lora"]["targets"] = json::array(); }),
             {"reward_model.json", "field 'lora.targets'"});
  expect_has(broken([](const fs::path&, json& j) { j["encoding"]["prompt_format"] = "markdown"; }),
             {"reward_model.json", "field 'encoding.prompt_format'"});
  expect_has(broken([](const fs::path&, json& j) { j.erase("head"); }), {"reward_model.json", "field 'head' is missing"});
  expect_has(broken([](const fs::path&, json& j) { j["format"] = "rlhf.policy"; }),
             {"reward_model.json", "field 'format'"});
  expect_has(broken([](const fs::path&, json& j) { j["version"] = 2; }), {"reward_model.json", "field 'version'"});
  expect_has(broken([](const fs::path&, json& j) { j["lora"]["rank"] = 8; }),
             {"adapter_config.json", "field 'r' = 4", "rank 8"});
  expect_has(broken([](const fs::path&, json& j) { j["lora"]["alpha"] = 4.0; }),
             {"adapter_config.json", "field 'lora_alpha' = 8"});
  // Garbled, truncated and oversized manifests.
  expect_has(broken([](const fs::path& d, json& j) {
               j = nullptr;
               std::ofstream(d / "reward_model.json") << "{\"format\": \"rlhf.reward_model\", \"version\": 1, \"base_mo";
             }),
             {"reward_model.json", "not valid JSON"});
  expect_has(broken([](const fs::path& d, json& j) {
               j = nullptr;
               std::ofstream(d / "reward_model.json") << "[1, 2]";
             }),
             {"reward_model.json", "not a JSON object"});
  expect_has(broken([](const fs::path& d, json& j) {
               j = nullptr;
               std::ofstream(d / "reward_model.json") << std::string(kMaxManifestBytes + 1, ' ') << "{}";
             }),
             {"reward_model.json", "more than the"});
  // Files the manifest needs beside it.
  expect_has(broken([](const fs::path& d, json&) { fs::remove(d / "reward_head.safetensors"); }),
             {"reward_head.safetensors is missing"});
  expect_has(broken([](const fs::path& d, json&) { fs::remove(d / "adapter_model.safetensors"); }),
             {"adapter_model.safetensors is missing"});
  expect_has(broken([](const fs::path& d, json&) { fs::remove(d / "adapter_config.json"); }),
             {"adapter_config.json is missing"});
  expect_has(broken([](const fs::path& d, json&) { std::ofstream(d / "adapter_config.json") << R"({"r": 4, "use_dora": true})"; }),
             {"adapter_config.json", "field 'use_dora'"});
}

TEST(TrainedFolder, AFolderWithoutItsManifestHoldsNoModel) {
  const fs::path dir = testing::scratch_dir() / "unfinished";
  fs::create_directories(dir);
  std::ofstream(dir / "reward_head.safetensors") << "head";
  std::string e = error_of([&] { read_trained_folder(dir.string()); });
  EXPECT_NE(e.find("not a trained folder"), std::string::npos) << e;
  EXPECT_NE(e.find("reward_model.json"), std::string::npos) << e;
  e = error_of([&] { read_reward_model_info(dir.string()); });
  EXPECT_NE(e.find("not a reward model folder (no reward_model.json"), std::string::npos) << e;
  e = error_of([&] { read_trained_folder((dir / "absent").string()); });
  EXPECT_NE(e.find("no such folder"), std::string::npos) << e;
  // Both manifests: refused rather than guessed.
  write_folder(dir, sample(TrainedFolder::Kind::RewardModel));
  write_policy_folder_manifest(dir.string(), sample(TrainedFolder::Kind::Policy));
  e = error_of([&] { read_trained_folder(dir.string()); });
  EXPECT_NE(e.find("holds both"), std::string::npos) << e;
}

}  // namespace
}  // namespace rlhf
