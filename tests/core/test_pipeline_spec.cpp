// The pipeline spec and plan: defaults, every kind of error named by its key, steps from
// epochs, and cache keys that change only downstream of a changed parameter.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "model/tiny_model.h"
#include "rlhf/pipeline/plan.h"
#include "rlhf/pipeline/spec.h"
#include "rlhf/util/error.h"
#include "test_util.h"

namespace rlhf::pipeline {
namespace {

namespace fs = std::filesystem;

std::string error_of(const std::string& yaml) {
  try {
    parse_spec(yaml, "spec.yaml", "/data");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const char* kMinimal = "preference_dataset: prefs.jsonl\nprompt_dataset: prompts.jsonl\n";

TEST(PipelineSpec, DefaultsAreTheSeeds) {
  PipelineSpec s = parse_spec(kMinimal, "spec.yaml", "/data");
  EXPECT_EQ(s.preference_dataset, "/data/prefs.jsonl");  // relative to the spec's folder
  EXPECT_EQ(s.prompt_dataset, "/data/prompts.jsonl");
  EXPECT_EQ(s.prompt_sequence_length(), 512);
  EXPECT_EQ(s.target_sequence_length(), 64);
  EXPECT_EQ(s.reward.train_steps, 1000);
  EXPECT_EQ(s.policy.train_steps, 1000);
  EXPECT_DOUBLE_EQ(s.reward.learning_rate_multiplier, 1.0);
  EXPECT_DOUBLE_EQ(s.policy.learning_rate_multiplier, 1.0);
  EXPECT_DOUBLE_EQ(s.policy.kl_coeff, 0.1);
  EXPECT_EQ(s.reward.lora.rank, 4);
  EXPECT_EQ(s.policy.lora.rank, 1);
  EXPECT_EQ(s.policy.ppo_epochs, 4);
  EXPECT_DOUBLE_EQ(s.policy.lam, 0.95);
  EXPECT_FALSE(s.rlaif.enabled);
  EXPECT_FALSE(s.autosxs.enabled);
  auto j = s.to_json();
  EXPECT_EQ(j["kl_coeff"], 0.1);
  EXPECT_EQ(j["advanced"]["cliprange"], 0.2);
}

TEST(PipelineSpec, ReadsEveryBlock) {
  PipelineSpec s = parse_spec(R"(
prompt_dataset: /abs/prompts.jsonl
eval_dataset: eval.jsonl
instruction: "Summarize in less than 50 words."
reward_model_epochs: 2
reinforcement_learning_epochs: 0.5
kl_coeff: 0
rlaif:
  prompt_dataset: pp.jsonl
  rule: max-words=50
  temperatures: [0.5, 1.5]
  min_confidence: 0.5
autosxs:
  task: question_answering
  explanation_tokens: 0
advanced:
  prompt_format: chat
  ppo_epochs: 2
  reinforcement_learning_batch_size: 8
  reinforcement_learning_micro_batch_size: 4
  num_mini_batches: 2
  export_format: none
  seed: 7
)",
                              "spec.yaml", "/data");
  EXPECT_EQ(s.prompt_dataset, "/abs/prompts.jsonl");
  EXPECT_EQ(s.instruction(), "Summarize in less than 50 words.");
  EXPECT_EQ(s.policy.instruction, "Summarize in less than 50 words.");  // a key both trainers have sets both
  EXPECT_DOUBLE_EQ(s.reward.epochs, 2);
  EXPECT_DOUBLE_EQ(s.policy.epochs, 0.5);
  EXPECT_DOUBLE_EQ(s.policy.kl_coeff, 0);
  EXPECT_TRUE(s.rlaif.enabled);
  EXPECT_EQ(s.rlaif.prompt_dataset, "/data/pp.jsonl");
  EXPECT_EQ(s.rlaif.temperatures, (std::vector<double>{0.5, 1.5}));
  EXPECT_TRUE(s.autosxs.enabled);
  EXPECT_EQ(s.autosxs.task, "question_answering");
  EXPECT_EQ(s.prompt_format(), "chat");
  EXPECT_EQ(s.policy.prompt_format, "chat");
  EXPECT_EQ(s.policy.num_mini_batches, 2);
  EXPECT_EQ(s.policy.batch_size, 8);
  EXPECT_EQ(s.reward.batch_size, 64);
  EXPECT_EQ(s.reward.seed, 7u);
  EXPECT_EQ(s.policy.seed, 7u);
  EXPECT_EQ(s.advanced.export_format, "none");
}

TEST(PipelineSpec, ErrorsNameTheKey) {
  struct Case {
    std::string yaml, needle;
  };
  const std::string base = kMinimal;
  std::vector<Case> cases = {
      {base + "kl_coef: 0.1\n", "key 'kl_coef' is unknown (did you mean 'kl_coeff'?)"},
      {base + "advanced:\n  ppo_epoch: 2\n", "key 'advanced.ppo_epoch' is unknown (did you mean 'advanced.ppo_epochs'?)"},
      {base + "kl_coeff: lots\n", "spec.yaml:3: key 'kl_coeff': must be a number"},
      {base + "kl_coeff: -1\n", "key 'kl_coeff': must be a number in [0, 1000000] (it is -1)"},
      {base + "kl_coeff: .nan\n", "key 'kl_coeff': must be a number"},
      {base + "reward_model_train_steps: 0\n", "key 'reward_model_train_steps': must be an integer at least 1 (it is 0)"},
      {base + "reward_model_train_steps: -3\n", "key 'reward_model_train_steps': must be an integer at least 1 (it is -3)"},
      {base + "advanced:\n  seed: -1\n", "key 'advanced.seed': must be a whole number"},
      {base + "advanced:\n  dtype: fp16\n", "spec.yaml:4: key 'advanced.dtype': is \"fp16\"; it must be one of fp32, bf16"},
      {base + "advanced:\n  threads: 100000\n", "key 'advanced.threads': must be an integer in [0, 1024] (it is 100000)"},
      {base + "advanced:\n  adaptive_kl: true\nkl_coeff: 0\n", "key 'advanced.adaptive_kl': needs a positive kl_coeff"},
      {base + "kl_coeff: 0.1\nkl_coeff: 0.3\n", "spec.yaml:4: key 'kl_coeff' appears twice (first on line 3)"},
      {base + "advanced:\n  device: gpu\n", "key 'advanced.device': is \"gpu\"; it must be cpu, cuda or cuda:N"},
      {base + "reward_model_train_steps: 1.5\n", "key 'reward_model_train_steps': must be an integer"},
      {base + "reward_model_train_steps: \"10\"\n", "key 'reward_model_train_steps': must be an integer at least 1, not the quoted text"},
      {base + "target_sequence_length: 1\n", "key 'target_sequence_length'"},
      {base + "reward_model_train_steps: 10\nreward_model_epochs: 2\n", "key 'reward_model_epochs': give the train steps or the epochs, not both"},
      {base + "instruction: [a, b]\n", "key 'instruction': must be one value, not a list"},
      {base + "advanced: 3\n", "key 'advanced': must be a mapping"},
      {base + "advanced:\n  prompt_format: html\n", "key 'advanced.prompt_format': is \"html\"; it must be one of raw, chat, auto"},
      {base + "advanced:\n  eos_penalty: maybe\n", "key 'advanced.eos_penalty': must be true or false"},
      {base + "advanced:\n  reinforcement_learning_batch_size: 6\n  reinforcement_learning_micro_batch_size: 2\n  num_mini_batches: 4\n",
       "key 'advanced.num_mini_batches': must divide"},
      {base + "advanced:\n  reward_model_batch_size: 4\n  reward_model_micro_batch_size: 8\n", "key 'advanced.reward_model_micro_batch_size'"},
      {base + "autosxs:\n  task: poetry\n", "key 'autosxs.task'"},
      {base + "autosxs:\n  judge: x\n", "key 'autosxs': needs eval_dataset"},
      {"prompt_dataset: p.jsonl\n", "key 'preference_dataset': is required"},
      {"preference_dataset: p.jsonl\n", "key 'prompt_dataset': is required"},
      {"prompt_dataset: p.jsonl\nrlaif:\n  prompt_dataset: q.jsonl\n", "key 'rlaif.rule': give one labeler"},
      {"prompt_dataset: p.jsonl\nrlaif:\n  prompt_dataset: q.jsonl\n  rule: max-words=x\n", "key 'rlaif.rule': --rule max-words=x"},
      {"prompt_dataset: p.jsonl\nrlaif:\n  rule: prefer-shorter\n", "key 'rlaif.prompt_dataset': is required"},
      {"prompt_dataset: p.jsonl\nrlaif:\n  prompt_dataset: q.jsonl\n  rule: prefer-shorter\n  temperatures: [1]\n",
       "key 'rlaif.temperatures': must be a list of two"},
      {base + "rlaif:\n  prompt_dataset: q.jsonl\n  rule: prefer-shorter\n", "key 'preference_dataset': give preference_dataset or an rlaif block"},
      {"- a\n- b\n", "must be a mapping"},
      {"", "the spec is empty"},
      {base + "kl_coeff: [\n", "not valid YAML"},
  };
  for (const auto& c : cases) {
    std::string e = error_of(c.yaml);
    EXPECT_NE(e.find(c.needle), std::string::npos) << "spec:\n" << c.yaml << "\nerror: " << e;
  }
}

// A spec with a byte that is not UTF-8 (a fuzzed spec) was read, and writing it as JSON then
// threw; it is refused, naming the line and byte. UTF-8 text beyond ASCII reads and prints.
TEST(PipelineSpec, TextMustBeUtf8) {
  const std::string fuzzed = "method: dpo\npreference_dataset: prefs.jsonl\nprompt_dataset: promp\xa7ts.jsonl\n"
                             "large_model_reference: smollm2-135m-instruct\ninstruction: \"Answer briefly.\"\n";
  EXPECT_NE(error_of(fuzzed).find("spec.yaml:3: invalid UTF-8 at byte 65 of the file"), std::string::npos)
      << error_of(fuzzed);
  EXPECT_NE(error_of(std::string(kMinimal) + "instruction: \"caf\xc3\"\n").find("spec.yaml:3: invalid UTF-8"),
            std::string::npos);
  const PipelineSpec s = parse_spec(std::string(kMinimal) + "instruction: \"R\xc3\xa9sum\xc3\xa9 \xe2\x80\x94 briefly\"\n",
                                    "spec.yaml", "/data");
  EXPECT_EQ(s.instruction(), "R\xc3\xa9sum\xc3\xa9 \xe2\x80\x94 briefly");
  EXPECT_NE(s.to_json().dump().find("R\xc3\xa9sum\xc3\xa9"), std::string::npos);
}

// A fuzzed spec whose key was a mapping (`{...}: value`) escaped as yaml-cpp's conversion
// error; it is refused, naming the line.
TEST(PipelineSpec, AKeyMustBeAName) {
  const std::string fuzzed = "{\"preference_dataset\": &e.jsonl\", \"lace\": \"smollm2-135m-instruct\", \"ced\": "
                             "{\"inferenc(e_batch_size\": 8}}:\n  pmdpqo_e_";
  EXPECT_NE(error_of(fuzzed).find("spec.yaml:1: a key in the spec is a mapping, not a name"), std::string::npos)
      << error_of(fuzzed);
  EXPECT_NE(error_of(std::string(kMinimal) + "advanced:\n  [a, b]: 1\n").find("a key in 'advanced' is a list"),
            std::string::npos)
      << error_of(std::string(kMinimal) + "advanced:\n  [a, b]: 1\n");
}

TEST(PipelineSpec, MethodAndRewards) {
  using V = std::vector<std::string>;
  PipelineSpec d = parse_spec(kMinimal, "spec.yaml", "/data");
  EXPECT_EQ(d.method, "ppo");
  EXPECT_TRUE(d.trains_reward_model());
  // grpo: train-policy's method, its defaults (kl_coeff 0) and its keys.
  PipelineSpec g = parse_spec(std::string(kMinimal) + "method: grpo\nadvanced:\n  num_generations: 4\n  scale_rewards: batch\n",
                              "spec.yaml", "/data");
  EXPECT_EQ(g.method, "grpo");
  EXPECT_EQ(g.policy.method, "grpo");
  EXPECT_EQ(g.policy.num_generations, 4);
  EXPECT_EQ(g.policy.scale_rewards, "batch");
  EXPECT_DOUBLE_EQ(g.policy.kl_coeff, 0.0);
  EXPECT_DOUBLE_EQ(parse_spec(std::string(kMinimal) + "method: rloo\nkl_coeff: 0.2\n", "spec.yaml", "/data").policy.kl_coeff, 0.2);
  // rewards: a YAML list of rules, commas kept; no reward model needed.
  PipelineSpec r = parse_spec("prompt_dataset: q.jsonl\nmethod: grpo\nrewards:\n  - max-words=50\n  - 'regex=^(Yes|No),'\n",
                              "spec.yaml", "/data");
  EXPECT_EQ(r.policy.reward_rule, (V{"max-words=50", "regex=^(Yes|No),"}));
  EXPECT_FALSE(r.trains_reward_model());
  EXPECT_EQ(r.to_json()["method"], "grpo");
  EXPECT_EQ(parse_spec("prompt_dataset: q.jsonl\nrewards: prefer-shorter\n", "spec.yaml", "/data").policy.reward_rule,
            V{"prefer-shorter"});
  // With preference pairs as well the reward model is trained and scores beside the rules.
  EXPECT_TRUE(parse_spec(std::string(kMinimal) + "rewards: [max-words=50]\n", "spec.yaml", "/data").trains_reward_model());
  // dpo: train-dpo's keys; no prompt_dataset needed; the reward model only with the pairs.
  PipelineSpec p = parse_spec(
      "preference_dataset: p.jsonl\nmethod: dpo\nadvanced:\n  dpo_beta: 0.3\n"
      "  dpo_label_smoothing: 0.1\n  dtype: fp32\ninstruction: Be brief.\n",
      "spec.yaml", "/data");
  EXPECT_TRUE(p.dpo_method());
  EXPECT_EQ(p.policy.method, "ppo");  // train-policy is not run
  EXPECT_DOUBLE_EQ(p.dpo.beta, 0.3);
  EXPECT_EQ(parse_spec("preference_dataset: p.jsonl\nmethod: dpo\nadvanced:\n  dpo_loss_type: ipo\n", "spec.yaml", "/data")
                .dpo.loss_type,
            "ipo");
  EXPECT_DOUBLE_EQ(p.dpo.label_smoothing, 0.1);
  EXPECT_EQ(p.dpo.dtype, "fp32");                // shared keys set every trainer
  EXPECT_EQ(p.dpo.instruction, "Be brief.");
  EXPECT_TRUE(p.trains_reward_model());
  EXPECT_EQ(p.to_json()["advanced"]["dpo_beta"], 0.3);
  // Errors name file, line and key.
  struct Case {
    std::string yaml, needle;
  };
  const std::string base = kMinimal;
  const std::vector<Case> cases = {
      {base + "method: sft\n", "spec.yaml:3: key 'method': is \"sft\"; it must be one of ppo, grpo, rloo, dpo"},
      {base + "rewards:\n  - max-words=5\n  - shortest\n", "spec.yaml:5: key 'rewards': rule \"shortest\" is not a rule"},
      {base + "rewards: [max-words=0]\n", "spec.yaml:3: key 'rewards': rule max-words=0: the word limit"},
      {base + "rewards:\n  - regex=([\n", "spec.yaml:4: key 'rewards': rule regex=([: bad pattern"},
      {base + "rewards:\n  a: 1\n", "spec.yaml:4: key 'rewards': must be a list of rules"},
      {base + "rewards: [[a]]\n", "key 'rewards': must be a list of rules, each a text"},
      {base + "rewards: ['']\n", "key 'rewards': holds an empty value"},
      {base + "rewards: [prefer-shorter]\nreward_rules: [prefer-shorter]\n", "key 'rewards': give rewards or reward_rules, not both"},
      {base + "method: dpo\nrewards: [prefer-shorter]\n", "key 'rewards': are for the online methods"},
      {"prompt_dataset: q.jsonl\nmethod: dpo\n", "key 'preference_dataset': is required by method dpo"},
      {"prompt_dataset: q.jsonl\nmethod: grpo\n", "key 'preference_dataset': is required (or an rlaif block that labels one, or rewards"},
      {"rewards: [prefer-shorter]\n", "key 'prompt_dataset': is required: the prompts ppo completes"},
      {base + "method: dpo\nadvanced:\n  dpo_label_smoothing: 0.7\n", "spec.yaml:5: key 'advanced.dpo_label_smoothing': must be"},
      {base + "method: dpo\nadvanced:\n  dpo_loss_type: kto\n", "key 'advanced.dpo_loss_type': is \"kto\""},
      {base + "method: grpo\nadvanced:\n  num_generations: 1\n", "key 'advanced.num_generations': grpo compares"},
      // One weight per reward: here the reward model (trained on kMinimal's pairs) and one rule.
      {base + "rewards: [prefer-shorter]\nadvanced:\n  reward_weights: 1,2,3\n",
       "spec.yaml:5: key 'advanced.reward_weights': gives 3 weight(s) for 2 reward(s)"},
      {base + "rewards: [prefer-shorter]\nadvanced:\n  reward_weights: 1,x\n",
       "key 'advanced.reward_weights': \"x\" is not a number"},
  };
  for (const auto& c : cases) {
    const std::string e = error_of(c.yaml);
    EXPECT_NE(e.find(c.needle), std::string::npos) << "spec:\n" << c.yaml << "\nerror: " << e;
  }
}

TEST(PipelineSpec, StepsFromEpochs) {
  auto steps = [](int64_t rows, int64_t batch, double epochs) {
    RewardTrainConfig c;
    c.batch_size = batch, c.epochs = epochs;
    PolicyTrainConfig p;
    p.batch_size = batch, p.epochs = epochs;
    EXPECT_EQ(c.steps_for(rows), p.steps_for(rows));
    return c.steps_for(rows);
  };
  EXPECT_EQ(steps(100, 64, 1), 2);
  EXPECT_EQ(steps(128, 64, 2), 4);
  EXPECT_EQ(steps(3000, 64, 1), 47);
  EXPECT_EQ(steps(10, 64, 0.5), 1);
  EXPECT_EQ(steps(200, 8, 0.5), 13);
  RewardTrainConfig c;
  EXPECT_EQ(c.steps_for(100), c.train_steps);  // no epochs: the steps
}

// The spec's defaults are the single commands' (the config structs' initialisers), every key.
TEST(PipelineSpec, DefaultsAreTheCommands) {
  PipelineSpec s = parse_spec(kMinimal, "spec.yaml", "/data");
  const RewardTrainConfig r;
  const PolicyTrainConfig p;
  for (const auto& row : reward_settings().rows)
    EXPECT_EQ(setting_json(reward_settings().ref(row, s.reward)), setting_json(reward_settings().ref(row, r))) << row.name;
  for (const auto& row : policy_settings().rows)
    EXPECT_EQ(setting_json(policy_settings().ref(row, s.policy)), setting_json(policy_settings().ref(row, p))) << row.name;
  EXPECT_EQ(s.reward.checkpoint_every, 100);  // train-reward's, not another copy
  EXPECT_EQ(s.policy.checkpoint_every, 10);
  // A key both trainers have whose defaults differ shows both; given once, it sets both.
  auto j = s.to_json();
  EXPECT_EQ(j["advanced"]["checkpoint_every"]["train_reward"], 100);
  EXPECT_EQ(j["advanced"]["checkpoint_every"]["train_policy"], 10);
  PipelineSpec t = parse_spec(std::string(kMinimal) + "advanced:\n  checkpoint_every: 5\n", "spec.yaml", "/data");
  EXPECT_EQ(t.reward.checkpoint_every, 5);
  EXPECT_EQ(t.policy.checkpoint_every, 5);
  EXPECT_EQ(t.to_json()["advanced"]["checkpoint_every"], 5);
}

// Every key of the report's order is one the spec reads, and every trainer key is in it.
TEST(PipelineSpec, KeyOrderCoversTheTables) {
  const auto& order = spec_key_order();
  for (const auto* rows : {&reward_settings().rows}) (void)rows;
  for (const auto& r : reward_settings().rows)
    EXPECT_NE(std::find(order.begin(), order.end(), r.spec_key), order.end()) << r.spec_key;
  for (const auto& r : policy_settings().rows)
    EXPECT_NE(std::find(order.begin(), order.end(), r.spec_key), order.end()) << r.spec_key;
  std::set<std::string> seen(order.begin(), order.end());
  EXPECT_EQ(seen.size(), order.size());
}

// A tiny model and data next to a spec.
struct TinyRun {
  fs::path dir;
  explicit TinyRun(const fs::path& d) : dir(d) {
    rlhf::testing::write_tiny_hf_model(dir / "model");
    rlhf::testing::write_marker_preferences(dir / "prefs.jsonl", 10, 3);
    std::ofstream p(dir / "prompts.jsonl");
    for (int i = 0; i < 12; ++i) p << nlohmann::json{{"input_text", "say: word " + std::to_string(i) + " ->"}}.dump() << "\n";
  }
  std::string spec(const std::string& extra = "") const {
    return "preference_dataset: prefs.jsonl\nprompt_dataset: prompts.jsonl\neval_dataset: prompts.jsonl\n"
           "large_model_reference: model\nprompt_sequence_length: 32\ntarget_sequence_length: 8\n"
           "reward_model_epochs: 2\nreinforcement_learning_train_steps: 3\n" + extra;
  }
  Plan compile(const std::string& yaml) const {
    std::ofstream(dir / "spec.yaml") << yaml;
    return compile_plan(read_spec((dir / "spec.yaml").string()), (dir / "run").string());
  }
};

TEST(PipelinePlan, StagesParametersAndKeys) {
  TinyRun t(rlhf::testing::scratch_dir());
  Plan p = t.compile(t.spec("advanced:\n  reward_model_batch_size: 4\n  reward_model_micro_batch_size: 4\n"));
  std::vector<std::string> names;
  for (const auto& s : p.stages) names.push_back(s.name);
  EXPECT_EQ(names, (std::vector<std::string>{"validate", "train_reward", "train_policy", "infer_untuned", "infer_tuned",
                                             "sxs", "export"}));
  EXPECT_EQ(p.checks.preference_pairs, 10u);
  EXPECT_EQ(p.checks.prompts, 12u);
  EXPECT_EQ(p.find("train_reward")->params["train_steps"], 6);  // ceil(10 / 4) × 2
  EXPECT_EQ(p.find("train_policy")->params["kl_coeff"], 0.1);
  EXPECT_NE(p.format().find("train_policy: RL tuning"), std::string::npos);

  // The same spec gives the same keys; a changed parameter changes its stage and downstream.
  Plan same = t.compile(t.spec("advanced:\n  reward_model_batch_size: 4\n  reward_model_micro_batch_size: 4\n"));
  for (size_t i = 0; i < p.stages.size(); ++i) EXPECT_EQ(p.stages[i].key, same.stages[i].key) << p.stages[i].name;
  Plan kl = t.compile(t.spec("kl_coeff: 0.2\nadvanced:\n  reward_model_batch_size: 4\n  reward_model_micro_batch_size: 4\n"));
  for (const char* unchanged : {"validate", "train_reward", "infer_untuned"})
    EXPECT_EQ(p.find(unchanged)->key, kl.find(unchanged)->key) << unchanged;
  for (const char* changed : {"train_policy", "infer_tuned", "sxs", "export"})
    EXPECT_NE(p.find(changed)->key, kl.find(changed)->key) << changed;
  // A changed data file changes the stages that read it.
  std::ofstream(t.dir / "prefs.jsonl", std::ios::app)
      << nlohmann::json{{"input_text", "x"}, {"candidate_0", "a"}, {"candidate_1", "b"}, {"choice", 0}}.dump() << "\n";
  Plan data = t.compile(t.spec("advanced:\n  reward_model_batch_size: 4\n  reward_model_micro_batch_size: 4\n"));
  EXPECT_NE(p.find("train_reward")->key, data.find("train_reward")->key);
  EXPECT_EQ(p.find("infer_untuned")->key, data.find("infer_untuned")->key);
}

TEST(PipelinePlan, CompileRejectsBadDataAndImpossibleLengths) {
  TinyRun t(rlhf::testing::scratch_dir());
  auto error_of_compile = [&](const std::string& yaml) -> std::string {
    try {
      t.compile(yaml);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  std::string y = t.spec();
  y.replace(y.find("prompt_sequence_length: 32"), 26, "prompt_sequence_length: 510");
  std::string e = error_of_compile(y);
  EXPECT_NE(e.find("key 'prompt_sequence_length'"), std::string::npos) << e;
  EXPECT_NE(e.find("context of 512"), std::string::npos) << e;
  std::ofstream(t.dir / "bad.jsonl") << R"({"input_text": "ok"})" << "\n" << R"({"text": "no"})" << "\n";
  y = t.spec();
  y.replace(y.find("prompt_dataset: prompts.jsonl"), 29, "prompt_dataset: bad.jsonl");
  e = error_of_compile(y);
  EXPECT_NE(e.find("key 'prompt_dataset'"), std::string::npos) << e;
  EXPECT_NE(e.find("bad.jsonl:2"), std::string::npos) << e;
  y = t.spec();
  y.replace(y.find("large_model_reference: model"), 28, "large_model_reference: no-such-model");
  e = error_of_compile(y);
  EXPECT_NE(e.find("key 'large_model_reference'"), std::string::npos) << e;
  y = t.spec();
  y.replace(y.find("eval_dataset: prompts.jsonl"), 27, "eval_dataset: missing/*.jsonl");
  e = error_of_compile(y);
  EXPECT_NE(e.find("key 'eval_dataset'"), std::string::npos) << e;
}

TEST(PipelinePlan, CompilesTheCourseRun) {
  const fs::path course = rlhf::testing::source_dir().parent_path() / "shared" / "data" / "course";
  if (!fs::exists(course)) GTEST_SKIP() << "the course data (../shared/data/course) is absent";
  auto model = rlhf::testing::default_model_gguf();
  if (!model) GTEST_SKIP() << "the default model is absent: run scripts/setup";
  auto dir = rlhf::testing::scratch_dir();
  const std::string yaml = fmt::format(
      "preference_dataset: {0}/sample_preference.jsonl\nprompt_dataset: {0}/sample_prompt.jsonl\n"
      "eval_dataset: {0}/sample_prompt.jsonl\nlarge_model_reference: {1}\n"
      "instruction: \"Summarize in less than 50 words\"\nreward_model_train_steps: 1410\n"
      "reinforcement_learning_train_steps: 320\nkl_coeff: 0.1\n",
      course.string(), *model);
  std::ofstream(dir / "course.yaml") << yaml;
  Plan p = compile_plan(read_spec((dir / "course.yaml").string()));
  EXPECT_EQ(p.find("train_reward")->params["train_steps"], 1410);
  EXPECT_EQ(p.find("train_policy")->params["train_steps"], 320);
  EXPECT_EQ(p.find("train_policy")->params["kl_coeff"], 0.1);
  EXPECT_EQ(p.find("train_policy")->params["instruction"], "Summarize in less than 50 words");
  EXPECT_EQ(p.checks.preference_pairs, 5u);
  EXPECT_EQ(p.checks.prompts, 6u);
  EXPECT_EQ(p.checks.model_format, "gguf");
}

}  // namespace
}  // namespace rlhf::pipeline
