#include "rlhf/pipeline/plan.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include <fmt/format.h>

#include "rlhf/data/dataset.h"
#include "rlhf/data/encode.h"
#include "rlhf/data/remote.h"
#include "rlhf/data/reward_rules.h"
#include "rlhf/model/loader.h"
#include "rlhf/model/registry.h"
#include "rlhf/util/build_id.h"
#include "rlhf/util/error.h"
#include "rlhf/util/hash.h"

namespace rlhf::pipeline {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The content hash of a dataset's files: local files by their bytes (sha256_files); objects in
// storage, which are not read twice for it, by what identifies their content there (URI, size,
// modification time, ETag or generation: data::remote_fingerprint), in the files' order.
std::string dataset_hash(const std::vector<std::string>& files) {
  if (std::none_of(files.begin(), files.end(), [](const std::string& f) { return data::is_remote_path(f); }))
    return sha256_files(files);
  Sha256 s;
  for (const auto& f : files) {
    const std::string part = data::is_remote_path(f) ? "object\n" + data::remote_fingerprint(f)
                                                      : "file\n" + sha256_files({f}) + "\n";
    s.update(part.data(), part.size());
  }
  return s.hex();
}

StageInput dataset_input(const std::string& name, const std::string& spec) {
  return {name, spec, dataset_hash(data::expand_paths(spec))};
}

uint64_t path_bytes(const std::string& path) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return fs::file_size(path, ec);
  uint64_t n = 0;
  if (fs::is_directory(path, ec))
    for (const auto& e : fs::recursive_directory_iterator(path, ec))
      if (e.is_regular_file(ec)) n += e.file_size(ec);
  return n;
}

// Free bytes where the run directory is (or would be created).
uint64_t free_bytes(const std::string& run_dir) {
  fs::path p = fs::absolute(run_dir);
  while (!p.empty() && !fs::exists(p)) p = p.parent_path();
  struct statvfs st {};
  if (p.empty() || statvfs(p.c_str(), &st) != 0) return UINT64_MAX;
  return uint64_t(st.f_bavail) * uint64_t(st.f_frsize);
}

std::string human_bytes(uint64_t b) {
  if (b >= (uint64_t(1) << 30)) return fmt::format("{:.1f} GiB", double(b) / double(uint64_t(1) << 30));
  return fmt::format("{:.0f} MiB", double(b) / double(1 << 20));
}

// What a key is the hash of; `deps` differs between the plan key and the run key.
json key_material(const Stage& s, const json& deps) {
  json k = {{"stage", s.name}, {"program", build_id()}, {"params", s.params}, {"inputs", json::object()}, {"deps", deps}};
  for (const auto& in : s.inputs) k["inputs"][in.name] = in.sha256;
  return k;
}

}  // namespace

std::string run_key(const Stage& stage, const json& deps) {
  for (const auto& d : stage.deps)
    if (!deps.contains(d)) fail("internal: the run key of stage {} lacks stage {}", stage.name, d);
  return sha256_hex(json{{"run", key_material(stage, deps)}}.dump());
}

const Stage* Plan::find(const std::string& name) const {
  for (const auto& s : stages)
    if (s.name == name) return &s;
  return nullptr;
}

Plan compile_plan(const PipelineSpec& spec, const std::string& run_dir) {
  Plan plan;
  plan.spec = spec;
  Checks& ck = plan.checks;
  const AdvancedSpec& adv = spec.advanced;
  const std::string where = spec.path;

  // The model: resolvable, its config and tokenizer readable, lengths within its context.
  const std::string model_ref = spec.large_model_reference.empty() ? std::string(kDefaultModel) : spec.large_model_reference;
  ModelFiles mf;
  try {
    mf = read_model(model_ref, /*weights=*/false);
  } catch (const Error& e) {
    fail("{}: key 'large_model_reference': {}", where, e.what());
  }
  ck.model_path = mf.path;
  ck.model_format = mf.format;
  ck.context_length = mf.config.max_position;
  ck.model_bytes = path_bytes(mf.path);
  if (spec.prompt_sequence_length() + spec.target_sequence_length() > ck.context_length)
    fail("{}: key 'prompt_sequence_length': prompt_sequence_length + target_sequence_length = {} + {} exceeds the "
         "model's context of {} tokens",
         where, spec.prompt_sequence_length(), spec.target_sequence_length(), ck.context_length);
  ck.model_sha256 = model_content_hash(mf.path);
  const StageInput model_in{"model", mf.path, ck.model_sha256};

  // Every dataset, every line.
  auto read_or_name_key = [&](const char* key, auto&& read) {
    try {
      return read();
    } catch (const Error& e) {
      fail("{}: key '{}': {}", where, key, e.what());
    }
  };
  data::PromptForms forms;  // of every prompt the run reads
  auto count = [&](const auto& rows) {
    forms.add_rows(rows);
    return rows.size();
  };
  if (!spec.preference_dataset.empty())
    ck.preference_pairs = read_or_name_key("preference_dataset", [&] {
      return count(data::read_preference_dataset(spec.preference_dataset, {.skip_invalid = spec.reward.skip_invalid}));
    });
  if (!spec.prompt_dataset.empty()) {
    const auto rows = read_or_name_key("prompt_dataset", [&] {
      return data::read_prompt_dataset(spec.prompt_dataset, {.skip_invalid = spec.policy.skip_invalid});
    });
    ck.prompts = count(rows);
    // The rule rewards that read a row field (exact-match, contains): every prompt row has it.
    const std::string rules_key = spec.given.count("rewards") ? "rewards" : "reward_rules";
    read_or_name_key(rules_key.c_str(), [&] {
      for (const auto& rule : data::parse_reward_rules(spec.policy.reward_rule, "rule"))
        if (!rule.field().empty())
          for (const auto& r : rows) rule.check_row(nlohmann::json::parse(r.json), r.where);
      return 0;
    });
  }
  if (!spec.eval_dataset.empty()) {
    ck.eval_prompts = read_or_name_key("eval_dataset", [&] {
      return count(data::read_prompt_dataset(spec.eval_dataset, {.max_rows = static_cast<size_t>(spec.policy.max_eval_prompts)}));
    });
    ck.eval_has_preferences = data::has_preference_fields(spec.eval_dataset);
  }
  if (spec.rlaif.enabled)
    ck.rlaif_prompts = read_or_name_key("rlaif.prompt_dataset", [&] { return count(data::read_prompt_dataset(spec.rlaif.prompt_dataset)); });

  // One prompt format for every stage: "auto" is resolved here, from all the datasets' prompts,
  // and the plan (its parameters, the stages' settings) carries the result.
  const std::string format = read_or_name_key("advanced.prompt_format", [&] {
    return std::string(data::prompt_format_name(data::resolve_prompt_format(spec.prompt_format(), forms, "advanced.prompt_format")));
  });
  if (format == "chat" && mf.chat_template.style == text::ChatStyle::None)
    fail("{}: key 'advanced.prompt_format': \"{}\" gives chat, but {} has no chat template; set it to raw", where,
         spec.prompt_format(), mf.path);
  if (spec.prompt_format() == "auto") ck.notes.push_back(fmt::format("prompt format auto: {} (from {} conversations and {} plain prompts)",
                                                                    format, forms.chat, forms.plain));
  plan.spec.reward.prompt_format = format;
  plan.spec.policy.prompt_format = format;
  plan.spec.dpo.prompt_format = format;

  // Judges: loadable.
  auto judge_input = [&](const char* key, const std::string& judge) {
    const std::string ref = judge.empty() ? std::string(kDefaultModel) : judge;
    ModelFiles jf;
    try {
      jf = read_model(ref, false);
    } catch (const Error& e) {
      fail("{}: key '{}': {}", where, key, e.what());
    }
    return StageInput{"judge", jf.path, jf.path == mf.path ? ck.model_sha256 : model_content_hash(jf.path)};
  };

  // Disk: the base once more for the export (float32, merged), checkpoints, logs, outputs.
  if (!run_dir.empty()) {
    const uint64_t weights_f32 = uint64_t(std::max<int64_t>(1, mf.config.hidden_size)) * 4 *
                                 uint64_t(std::max<int64_t>(1, mf.config.vocab_size)) * 2;
    const uint64_t need = (adv.export_format == "none" ? 0 : std::max(ck.model_bytes * 8, weights_f32)) + (uint64_t(256) << 20);
    const uint64_t have = free_bytes(run_dir);
    if (have < need)
      fail("{}: {} free where the run goes, about {} needed (export {}, checkpoints, logs)", run_dir, human_bytes(have),
           human_bytes(need), adv.export_format);
  }

  const json encoding = {{"instruction", spec.instruction()},
                         {"prompt_format", format},
                         {"prompt_sequence_length", spec.prompt_sequence_length()},
                         {"target_sequence_length", spec.target_sequence_length()}};
  auto with = [](json a, const json& b) {
    for (auto it = b.begin(); it != b.end(); ++it) a[it.key()] = it.value();
    return a;
  };
  const json runtime = {{"dtype", spec.dtype()}, {"device", spec.device()}, {"seed", spec.seed()}};

  // validate
  {
    Stage s{"validate", "check every dataset line and the model", {}, {model_in}, encoding, {"validate/report.json"}, ""};
    if (!spec.preference_dataset.empty()) s.inputs.push_back(dataset_input("preference_dataset", spec.preference_dataset));
    if (!spec.prompt_dataset.empty()) s.inputs.push_back(dataset_input("prompt_dataset", spec.prompt_dataset));
    if (!spec.eval_dataset.empty()) s.inputs.push_back(dataset_input("eval_dataset", spec.eval_dataset));
    if (spec.rlaif.enabled) s.inputs.push_back(dataset_input("rlaif.prompt_dataset", spec.rlaif.prompt_dataset));
    plan.stages.push_back(std::move(s));
  }
  // label
  if (spec.rlaif.enabled) {
    const RlaifSpec& r = spec.rlaif;
    Stage s{"label", "sample two candidates per prompt and label them (RLAIF)", {}, {model_in}, {}, {"label/preferences.jsonl"}, ""};
    s.inputs.push_back(dataset_input("prompt_dataset", r.prompt_dataset));
    if (!r.judge.empty()) s.inputs.push_back(judge_input("rlaif.judge", r.judge));
    s.params = with(with(encoding, runtime), {{"rule", r.rule},
                                               {"judge", r.judge},
                                               {"task", r.task},
                                               {"temperatures", r.temperatures},
                                               {"min_confidence", r.min_confidence},
                                               {"keep_ties", r.keep_ties},
                                               {"max_new_tokens", spec.target_sequence_length()},
                                               {"batch_size", adv.inference_batch_size}});
    plan.stages.push_back(std::move(s));
  }
  // train_reward: for ppo, grpo and rloo without rule rewards always; otherwise when there are
  // preference pairs to train it on (its scores then enter the policy's reward or the sxs).
  const bool reward_model = spec.trains_reward_model();
  if (reward_model) {
    Stage s{"train_reward", "train the reward model (pairwise loss, LoRA + head)", {}, {model_in}, {}, {"train_reward/model"}, ""};
    if (spec.rlaif.enabled) s.deps.push_back("label");
    else s.inputs.push_back(dataset_input("preference_dataset", spec.preference_dataset));
    // Every setting that changes the model (the settings table's result rows), steps resolved.
    json p = settings_json(reward_settings(), plan.spec.reward, /*result_only=*/true);
    if (spec.reward.epochs > 0 && spec.rlaif.enabled) p["train_steps"] = "from the labeled pairs";
    else p["train_steps"] = spec.reward.steps_for(static_cast<int64_t>(ck.preference_pairs));
    s.params = p;
    plan.stages.push_back(std::move(s));
  }
  // train_policy: train-policy (ppo, grpo, rloo: its settings include the method, the rule
  // rewards and their weights) or train-dpo on the preference pairs.
  if (spec.dpo_method()) {
    Stage s{"train_policy", "preference tuning: DPO against the base (LoRA)", {}, {model_in}, {}, {"train_policy/model"}, ""};
    if (spec.rlaif.enabled) s.deps.push_back("label");
    else s.inputs.push_back(dataset_input("preference_dataset", spec.preference_dataset));
    json p = settings_json(dpo_settings(), plan.spec.dpo, /*result_only=*/true);
    p["method"] = "dpo";
    if (spec.dpo.epochs > 0 && spec.rlaif.enabled) p["train_steps"] = "from the labeled pairs";
    else p["train_steps"] = spec.dpo.steps_for(static_cast<int64_t>(ck.preference_pairs));
    s.params = p;
    plan.stages.push_back(std::move(s));
  } else {
    Stage s{"train_policy",
            spec.policy.method == "ppo" ? "RL tuning: PPO with the KL penalty (LoRA)"
                                        : fmt::format("RL tuning: {} on groups of completions (LoRA)", spec.policy.method),
            {}, {model_in}, {}, {"train_policy/model"}, ""};
    if (reward_model) s.deps.push_back("train_reward");
    s.inputs.push_back(dataset_input("prompt_dataset", spec.prompt_dataset));
    json p = settings_json(policy_settings(), plan.spec.policy, /*result_only=*/true);
    p["train_steps"] = spec.policy.steps_for(static_cast<int64_t>(ck.prompts));
    s.params = p;
    plan.stages.push_back(std::move(s));
  }
  if (!spec.eval_dataset.empty()) {
    const json infer = with(with(encoding, runtime), {{"max_new_tokens", spec.target_sequence_length()},
                                                      {"temperature", 0.0},
                                                      {"batch_size", adv.inference_batch_size},
                                                      {"max_eval_prompts", spec.policy.max_eval_prompts}});
    const StageInput eval_in = dataset_input("eval_dataset", spec.eval_dataset);
    plan.stages.push_back({"infer_untuned", "bulk inference of the untuned model on eval_dataset", {}, {model_in, eval_in}, infer,
                           {"infer_untuned/predictions.jsonl"}, ""});
    plan.stages.push_back({"infer_tuned", "bulk inference of the tuned policy on eval_dataset", {"train_policy"},
                           {model_in, eval_in}, infer, {"infer_tuned/predictions.jsonl"}, ""});
    // Reward scores when a reward model is trained; else lengths only.
    plan.stages.push_back({"sxs", reward_model ? "side by side: untuned (A) and tuned (B), reward scores"
                                               : "side by side: untuned (A) and tuned (B), no reward model",
                           reward_model ? std::vector<std::string>{"infer_untuned", "infer_tuned", "train_reward"}
                                        : std::vector<std::string>{"infer_untuned", "infer_tuned"},
                           {}, {{"max_words", adv.max_words}},
                           {"sxs/sxs.jsonl", "sxs/sxs.csv", "sxs/sxs.html", "sxs/summary.json"}, ""});
    if (spec.autosxs.enabled) {
      const AutoSxsSpec& a = spec.autosxs;
      plan.stages.push_back({"autosxs", "AutoSxS: the judge compares untuned (A) and tuned (B)", {"sxs"},
                             {judge_input("autosxs.judge", a.judge)},
                             with(runtime, {{"judge", a.judge}, {"task", a.task}, {"explanation_tokens", a.explanation_tokens}}),
                             {"autosxs/judgments.jsonl", "autosxs/metrics.json"}, ""});
    }
  }
  if (adv.export_format != "none")
    plan.stages.push_back({"export", "merge the policy adapter into the base for other tools", {"train_policy"}, {model_in},
                           {{"format", adv.export_format}},
                           {adv.export_format == "gguf" ? "export/model.gguf" : "export/model"}, ""});

  // Plan keys, in order: each includes the plan keys of the stages it reads.
  for (auto& s : plan.stages) {
    json deps = json::object();
    for (const auto& d : s.deps) {
      const Stage* dep = plan.find(d);
      if (!dep) fail("internal: stage {} depends on {}, which is not planned", s.name, d);
      deps[d] = dep->key;
    }
    s.key = sha256_hex(key_material(s, deps).dump());
  }
  if (spec.rlaif.enabled && !spec.dpo_method() && spec.policy.kl_coeff == 0) ck.notes.push_back("kl_coeff 0: no reference model, nothing keeps the policy near the base");
  return plan;
}

json Plan::to_json() const {
  json j = {{"program", build_id()},
            {"spec", spec.to_json()},
            {"model", {{"path", checks.model_path}, {"format", checks.model_format}, {"sha256", checks.model_sha256},
                       {"context_length", checks.context_length}}},
            {"data", {{"preference_pairs", checks.preference_pairs}, {"prompts", checks.prompts},
                      {"eval_prompts", checks.eval_prompts}, {"rlaif_prompts", checks.rlaif_prompts}}}};
  j["stages"] = json::array();
  for (const auto& s : stages) {
    json st = {{"name", s.name}, {"title", s.title}, {"deps", s.deps}, {"params", s.params}, {"outputs", s.outputs}, {"key", s.key}};
    st["inputs"] = json::object();
    for (const auto& in : s.inputs) st["inputs"][in.name] = {{"path", in.path}, {"sha256", in.sha256}};
    j["stages"].push_back(st);
  }
  return j;
}

std::string Plan::format() const {
  std::string out = fmt::format("model: {} ({}, context {} tokens, sha256 {}...)\n", checks.model_path, checks.model_format,
                                checks.context_length, checks.model_sha256.substr(0, 12));
  out += fmt::format("data: {}, {} prompts, {} eval prompts{}\n",
                     spec.rlaif.enabled ? fmt::format("preference pairs labeled from {} prompts", checks.rlaif_prompts)
                                        : fmt::format("{} preference pairs", checks.preference_pairs),
                     checks.prompts, checks.eval_prompts,
                     checks.eval_has_preferences ? " (with preference fields)" : "");
  int i = 0;
  for (const auto& s : stages) {
    out += fmt::format("\n{}. {}: {}\n", ++i, s.name, s.title);
    if (!s.deps.empty()) {
      std::string d;
      for (const auto& x : s.deps) d += (d.empty() ? "" : ", ") + x;
      out += fmt::format("   after:   {}\n", d);
    }
    for (const auto& in : s.inputs) out += fmt::format("   input:   {} = {} (sha256 {}...)\n", in.name, in.path, in.sha256.substr(0, 12));
    for (auto it = s.params.begin(); it != s.params.end(); ++it)
      out += fmt::format("   param:   {} = {}\n", it.key(), it.value().dump());
    for (const auto& o : s.outputs) out += fmt::format("   output:  {}\n", o);
    out += fmt::format("   plan key: {}\n", s.key);
  }
  out += fmt::format("\nprogram: rlhf {}; a stage's run key adds the content of the outputs it reads, at run time\n", build_id());
  for (const auto& n : checks.notes) out += "\nnote: " + n + "\n";
  return out;
}

}  // namespace rlhf::pipeline
