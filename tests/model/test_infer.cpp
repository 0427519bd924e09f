// Bulk inference on tiny models: one line per input in order with the input's fields, batch
// invariance of greedy completions, resume after a kill to the same bytes, torn lines,
// refused mismatches, adapters, bad input; and the default model on the course prompts.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "rlhf/eval/infer.h"
#include "rlhf/model/loader.h"
#include "rlhf/model/model.h"
#include "rlhf/train/adapter_io.h"
#include "rlhf/train/trained_folder.h"
#include "rlhf/util/error.h"
#include "test_util.h"
#include "tiny_model.h"

namespace {

using rlhf::testing::read_jsonl;
namespace fs = std::filesystem;
using nlohmann::json;
using rlhf::testing::read_text;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    out.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return out;
}

// A tiny model and `n` prompts of different lengths, each with an id and an extra field.
struct Fixture {
  fs::path dir, model, prompts;
};

Fixture make_fixture(int n) {
  torch::set_num_threads(1);
  Fixture f;
  f.dir = rlhf::testing::scratch_dir();
  f.model = f.dir / "model";
  f.prompts = f.dir / "prompts.jsonl";
  rlhf::testing::write_tiny_hf_model(f.model);
  std::mt19937 rng(5);
  const char* words[] = {"cat", "dog", "sun", "sea", "red", "map", "pen", "cup", "box", "hat", "owl", "fig"};
  std::ofstream p(f.prompts);
  for (int i = 0; i < n; ++i) {
    std::string text = "say:";
    const int len = 1 + static_cast<int>(rng() % 6);
    for (int w = 0; w < len; ++w) text += std::string(" ") + words[rng() % 12];
    p << json{{"id", i}, {"input_text", text}, {"note", "row " + std::to_string(i)}}.dump() << "\n";
  }
  return f;
}

rlhf::eval::InferConfig config_for(const Fixture& f, const std::string& out) {
  rlhf::eval::InferConfig c;
  c.model = f.model.string();
  c.input = f.prompts.string();
  c.output = (f.dir / out).string();
  c.prompt_sequence_length = 64;
  c.sampling.max_new_tokens = 12;
  c.batch_size = 4;
  c.progress = false;
  return c;
}

std::string infer_cmd(const Fixture& f, const fs::path& out, const std::string& extra = "") {
  return rlhf::testing::cli() + " infer --model " + f.model.string() + " --input " + f.prompts.string() +
         " --output " + out.string() + " --prompt-sequence-length 64 --threads 1 --no-progress " + extra;
}

TEST(Infer, OneLinePerInputInOrderWithTheInputFields) {
  Fixture f = make_fixture(10);
  auto c = config_for(f, "out.jsonl");
  c.instruction = "Repeat.";
  c.instruction_set = true;
  auto r = rlhf::eval::run_inference(c);
  EXPECT_EQ(r.rows, 10u);
  EXPECT_EQ(r.resumed_rows, 0u);
  EXPECT_GT(r.new_tokens, 0);
  EXPECT_GT(r.tokens_per_second, 0);
  EXPECT_FALSE(fs::exists(c.output + ".partial"));
  auto in = read_jsonl(f.prompts);
  auto out = read_jsonl(c.output);
  ASSERT_EQ(out.size(), in.size());
  const std::string sha = rlhf::model_content_hash(f.model.string());
  for (size_t i = 0; i < out.size(); ++i) {
    const json& o = out[i];
    EXPECT_EQ(o["id"], in[i]["id"]);
    EXPECT_EQ(o["note"], in[i]["note"]);
    EXPECT_EQ(o["input_text"], in[i]["input_text"]);
    EXPECT_EQ(o["inputs"]["inputs_pretokenized"], "Repeat.\n\n" + in[i]["input_text"].get<std::string>());
    ASSERT_TRUE(o["prediction"].is_string());
    ASSERT_TRUE(o["stopped"].is_boolean());
    EXPECT_EQ(o["model"]["reference"], f.model.string());
    EXPECT_EQ(o["model"]["sha256"], sha);
    EXPECT_FALSE(o["model"].contains("adapter"));
    const json& s = o["settings"];
    EXPECT_EQ(s["instruction"], "Repeat.");
    EXPECT_EQ(s["prompt_format"], "raw");
    EXPECT_EQ(s["prompt_sequence_length"], 64);
    EXPECT_EQ(s["max_new_tokens"], 12);
    EXPECT_EQ(s["temperature"], 0.0);
    EXPECT_EQ(s["batch_size"], 4);
    EXPECT_EQ(s["seed"], 0);
    // The default, auto, recorded as what it resolved to on this machine.
    EXPECT_EQ(s["dtype"], rlhf::dtype_name(rlhf::resolve_dtype("auto", torch::kCPU, rlhf::detect_cpu_features()).dtype));
  }
  // The input's own field order comes first in each line.
  const std::string first = lines_of(read_text(c.output))[0];
  EXPECT_EQ(first.rfind("{\"id\":0,\"input_text\":", 0), 0u) << first;
}

TEST(Infer, GreedyBatchesEqualOnePromptAtATime) {
  Fixture f = make_fixture(9);
  auto m = rlhf::eval::load_generation_model(f.model.string(), "", {});
  rlhf::data::Encoder enc(*m->base->tokenizer, m->base->chat_template, m->eos_id, m->encode);
  std::vector<std::vector<int32_t>> ids;
  for (const auto& row : rlhf::data::read_prompt_dataset(f.prompts.string())) ids.push_back(enc.prompt_ids(row.prompt));
  rlhf::SamplingConfig greedy{.temperature = 0.0, .top_k = 0, .top_p = 1.0, .max_new_tokens = 16, .seed = 0};
  auto batched = rlhf::eval::complete_prompts(*m, ids, greedy, 5);
  auto single = rlhf::eval::complete_prompts(*m, ids, greedy, 1);
  ASSERT_EQ(batched.size(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(batched[i].tokens, single[i].tokens) << "prompt " << i;
    EXPECT_EQ(batched[i].text, single[i].text) << "prompt " << i;
    EXPECT_EQ(batched[i].stopped, single[i].stopped) << "prompt " << i;
  }
  // start_row: the batch holding it is generated whole; earlier rows are left empty.
  rlhf::SamplingConfig sampled = greedy;
  sampled.temperature = 0.9;
  sampled.seed = 3;
  auto all = rlhf::eval::complete_prompts(*m, ids, sampled, 4);
  std::vector<size_t> firsts;
  auto tail = rlhf::eval::complete_prompts(
      *m, ids, sampled, 4, [&](size_t first, const std::vector<rlhf::eval::Completion>&) { firsts.push_back(first); }, 6);
  EXPECT_EQ(firsts, (std::vector<size_t>{6, 8}));
  for (size_t i = 0; i < 6; ++i) EXPECT_TRUE(tail[i].tokens.empty());
  for (size_t i = 6; i < ids.size(); ++i) EXPECT_EQ(tail[i].tokens, all[i].tokens) << "prompt " << i;
}

TEST(Infer, ResumeAfterKillWritesTheSameBytes) {
  Fixture f = make_fixture(40);
  const std::string opts = "--batch-size 4 --temperature 0.9 --top-p 0.95 --seed 11 --max-new-tokens 48";
  const fs::path whole = f.dir / "whole.jsonl", killed = f.dir / "killed.jsonl";
  const fs::path partial = f.dir / "killed.jsonl.partial";
  ASSERT_EQ(rlhf::testing::run(infer_cmd(f, whole, opts) + " 2>/dev/null"), 0);
  pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", ("exec " + infer_cmd(f, killed, opts) + " 2>/dev/null").c_str(), (char*)nullptr);
    _exit(127);
  }
  size_t lines_at_kill = 0;
  for (int i = 0; i < 30000; ++i) {  // at most a minute
    std::error_code ec;
    if (fs::exists(partial, ec) && fs::file_size(partial, ec) > 0) {
      kill(pid, SIGKILL);
      lines_at_kill = lines_of(read_text(partial)).size();
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run finished before it could be killed";
  ASSERT_FALSE(fs::exists(killed));
  ASSERT_GT(lines_at_kill, 0u);
  ASSERT_LT(lines_at_kill, 40u);
  int rc = 0;
  std::string log = rlhf::testing::capture(infer_cmd(f, killed, opts), &rc, true);
  ASSERT_EQ(rc, 0) << log;
  EXPECT_NE(log.find("continuing"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(partial));
  EXPECT_EQ(read_text(killed), read_text(whole));
  EXPECT_EQ(read_jsonl(killed).size(), 40u);
}

TEST(Infer, TornLastLineOfThePartialIsDropped) {
  Fixture f = make_fixture(10);
  auto c = config_for(f, "whole.jsonl");
  c.sampling.temperature = 0.8;
  c.sampling.seed = 4;
  rlhf::eval::run_inference(c);
  const std::string whole = read_text(c.output);
  auto lines = lines_of(whole);
  ASSERT_EQ(lines.size(), 10u);
  // Five whole lines (batch 1 half done) and half of the sixth.
  std::string part;
  for (int i = 0; i < 5; ++i) part += lines[i] + "\n";
  part += lines[5].substr(0, lines[5].size() / 2);
  auto d = c;
  d.output = (f.dir / "resumed.jsonl").string();
  std::ofstream(d.output + ".partial", std::ios::binary) << part;
  auto r = rlhf::eval::run_inference(d);
  EXPECT_EQ(r.resumed_rows, 5u);
  EXPECT_EQ(read_text(d.output), whole);
  EXPECT_FALSE(fs::exists(d.output + ".partial"));
}

TEST(Infer, MismatchesAreRefusedWithoutRestart) {
  Fixture f = make_fixture(8);
  auto c = config_for(f, "out.jsonl");
  rlhf::eval::run_inference(c);
  const std::string done = read_text(c.output);
  auto lines = lines_of(done);

  // A complete output with the same settings: nothing to do, the file is untouched.
  const auto mtime = fs::last_write_time(c.output);
  auto r = rlhf::eval::run_inference(c);
  EXPECT_EQ(r.resumed_rows, 8u);
  EXPECT_EQ(r.new_tokens, 0);
  EXPECT_EQ(fs::last_write_time(c.output), mtime);

  // The same complete output with other settings: refused, then overwritten with restart.
  auto hot = c;
  hot.sampling.temperature = 1.0;
  try {
    rlhf::eval::run_inference(hot);
    ADD_FAILURE() << "a complete output with other settings was overwritten";
  } catch (const rlhf::Error& e) {
    EXPECT_NE(std::string(e.what()).find("temperature"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--restart"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_text(c.output), done);

  // A .partial with other settings: refused, left as it is; restart starts over.
  std::string part = lines[0] + "\n" + lines[1] + "\n";
  fs::remove(c.output);
  std::ofstream(c.output + ".partial", std::ios::binary) << part;
  try {
    rlhf::eval::run_inference(hot);
    ADD_FAILURE() << "a .partial with other settings was continued";
  } catch (const rlhf::Error& e) {
    EXPECT_NE(std::string(e.what()).find("line 1: settings differ: temperature"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_text(c.output + ".partial"), part);
  EXPECT_FALSE(fs::exists(c.output));

  // A changed input row at index 1: refused.
  auto moved = c;
  moved.input = (f.dir / "moved.jsonl").string();
  {
    auto in = lines_of(read_text(f.prompts));
    std::swap(in[1], in[2]);
    std::ofstream o(moved.input);
    for (auto& l : in) o << l << "\n";
  }
  try {
    rlhf::eval::run_inference(moved);
    ADD_FAILURE() << "a .partial of other inputs was continued";
  } catch (const rlhf::Error& e) {
    EXPECT_NE(std::string(e.what()).find("line 2:"), std::string::npos) << e.what();
  }

  hot.restart = true;
  rlhf::eval::run_inference(hot);
  auto out = read_jsonl(c.output);
  ASSERT_EQ(out.size(), 8u);
  for (const auto& o : out) EXPECT_EQ(o["settings"]["temperature"], 1.0);
  EXPECT_FALSE(fs::exists(c.output + ".partial"));
}

// A rank-4 adapter with non-zero weights on the tiny model, saved as a train-policy folder.
void write_policy_folder(const Fixture& f, const fs::path& dir, const std::string& sha256) {
  auto base = rlhf::load_model(f.model.string());
  rlhf::LoraConfig lora;
  lora.rank = 4;
  lora.alpha = 8;
  auto& ad = base->net->add_adapter("p", lora, 1);
  {
    torch::NoGradGuard no_grad;
    auto gen = at::detail::createCPUGenerator(9);
    for (auto& layer : ad.b)
      for (auto& t : layer)
        if (t.defined()) t.copy_(torch::randn(t.sizes(), gen) * 0.5);
  }
  fs::create_directories(dir);
  rlhf::save_adapter(dir.string(), ad, {.base_reference = f.model.string(), .task_type = "CAUSAL_LM", .modules_to_save = {}});
  rlhf::TrainedFolder info;
  info.kind = rlhf::TrainedFolder::Kind::Policy;
  info.base_reference = f.model.string();
  info.base_path = fs::absolute(f.model).string();
  info.base_format = "hf";
  info.base_sha256 = sha256;
  info.lora = lora;
  info.encode.instruction = "Policy says:";
  info.encode.prompt_sequence_length = 48;
  info.encode.target_sequence_length = 12;
  info.eos_id = 256;
  info.pad_id = 257;
  rlhf::write_policy_folder_manifest(dir.string(), info);
}

TEST(Infer, AnAdapterChangesTheOutputAndIsRecorded) {
  Fixture f = make_fixture(6);
  const fs::path policy = f.dir / "policy";
  write_policy_folder(f, policy, rlhf::model_content_hash(f.model.string()));

  auto base = config_for(f, "base.jsonl");
  base.instruction = "Policy says:";
  base.instruction_set = true;
  base.prompt_sequence_length = 48;
  rlhf::eval::run_inference(base);

  auto tuned = config_for(f, "tuned.jsonl");
  tuned.model = "";  // the policy's recorded base
  tuned.adapter = policy.string();
  tuned.prompt_sequence_length = 0;  // the policy's
  rlhf::eval::run_inference(tuned);
  auto a = read_jsonl(base.output), b = read_jsonl(tuned.output);
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), 6u);
  int differ = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    differ += a[i]["prediction"] != b[i]["prediction"];
    EXPECT_EQ(a[i]["inputs"], b[i]["inputs"]);  // the policy's instruction was used
    EXPECT_EQ(b[i]["settings"]["instruction"], "Policy says:");
    EXPECT_EQ(b[i]["settings"]["prompt_sequence_length"], 48);
    EXPECT_EQ(b[i]["model"]["adapter"], fs::absolute(policy).lexically_normal().string());
    EXPECT_EQ(b[i]["model"]["adapter_sha256"].get<std::string>().size(), 64u);
    EXPECT_EQ(b[i]["model"]["sha256"], a[i]["model"]["sha256"]);
  }
  EXPECT_GT(differ, 0);

  // The same adapter as a plain peft folder: no encoding settings, the base named in it.
  const fs::path peft = f.dir / "peft";
  fs::create_directories(peft);
  fs::copy_file(policy / "adapter_model.safetensors", peft / "adapter_model.safetensors");
  fs::copy_file(policy / "adapter_config.json", peft / "adapter_config.json");
  auto plain = base;
  plain.model = "";
  plain.adapter = peft.string();
  plain.output = (f.dir / "peft.jsonl").string();
  rlhf::eval::run_inference(plain);
  auto p = read_jsonl(plain.output);
  ASSERT_EQ(p.size(), 6u);
  for (size_t i = 0; i < p.size(); ++i) EXPECT_EQ(p[i]["prediction"], b[i]["prediction"]);

  // A policy trained on another base: refused before any output.
  const fs::path wrong = f.dir / "wrong";
  write_policy_folder(f, wrong, std::string(64, '0'));
  auto bad = tuned;
  bad.adapter = wrong.string();
  bad.output = (f.dir / "wrong.jsonl").string();
  try {
    rlhf::eval::run_inference(bad);
    ADD_FAILURE() << "an adapter of another base was used";
  } catch (const rlhf::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not the one this adapter was trained on"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(bad.output));
  EXPECT_FALSE(fs::exists(bad.output + ".partial"));
}

// --model org/name is found in the Hugging Face cache (HF_HUB_CACHE here), as huggingface_hub
// lays it out, and recorded by that name; one not cached names where it was looked for.
TEST(Infer, AHubIdResolvesFromTheHuggingFaceCache) {
  Fixture f = make_fixture(2);
  const std::string commit = "0123456789abcdef0123456789abcdef01234567";
  const fs::path repo = f.dir / "hub" / "models--tiny-org--tiny-llama";
  fs::create_directories(repo / "refs");
  fs::create_directories(repo / "snapshots");
  fs::copy(f.model, repo / "snapshots" / commit, fs::copy_options::recursive);
  std::ofstream(repo / "refs" / "main") << commit;
  const std::string env = "HF_HUB_CACHE=" + (f.dir / "hub").string() + " ";
  const fs::path out = f.dir / "out.jsonl";
  ASSERT_EQ(rlhf::testing::run(env + rlhf::testing::cli() + " infer --model tiny-org/tiny-llama --input " +
                               f.prompts.string() + " --output " + out.string() +
                               " --threads 1 --max-new-tokens 4 --no-progress 2>/dev/null"),
            0);
  auto rows = read_jsonl(out);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["model"]["reference"], "tiny-org/tiny-llama");
  EXPECT_EQ(rows[0]["model"]["sha256"], rlhf::model_content_hash(f.model.string()));
  int rc = 0;
  std::string log = rlhf::testing::capture(env + rlhf::testing::cli() + " infer --model tiny-org/absent --input " +
                                               f.prompts.string() + " --output " + (f.dir / "no.jsonl").string(),
                                           &rc, true);
  EXPECT_NE(rc, 0);
  EXPECT_NE(log.find((f.dir / "hub" / "models--tiny-org--absent").string()), std::string::npos) << log;
  EXPECT_NE(log.find("hf download tiny-org/absent"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(f.dir / "no.jsonl"));
}

TEST(Infer, BadInputNamesFileLineAndFieldAndLeavesNoOutput) {
  Fixture f = make_fixture(3);
  const fs::path bad = f.dir / "bad.jsonl";
  std::ofstream(bad) << "{\"input_text\": \"fine\"}\n{\"input_text\": \"cut\n{\"id\": 3}\n";
  const fs::path out = f.dir / "out.jsonl";
  int rc = 0;
  std::string log = rlhf::testing::capture(rlhf::testing::cli() + " infer --model " + f.model.string() + " --input " +
                                               bad.string() + " --output " + out.string() + " --threads 1",
                                           &rc, true);
  EXPECT_NE(rc, 0);
  EXPECT_NE(log.find("bad.jsonl:2"), std::string::npos) << log;
  EXPECT_NE(log.find("bad.jsonl:3"), std::string::npos) << log;
  EXPECT_NE(log.find("input_text"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out.string() + ".partial"));

  // --skip-invalid completes the valid row only.
  ASSERT_EQ(rlhf::testing::run(rlhf::testing::cli() + " infer --model " + f.model.string() + " --input " + bad.string() +
                               " --output " + out.string() + " --threads 1 --skip-invalid --max-new-tokens 4 2>/dev/null"),
            0);
  auto rows = read_jsonl(out);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0]["input_text"], "fine");
}

TEST(Infer, DefaultModelSummarizesTheCoursePrompts) {
  auto gguf = rlhf::testing::default_model_gguf();
  if (!gguf) GTEST_SKIP() << "default model absent: run scripts/setup";
  const fs::path sample = rlhf::testing::source_dir() / "../shared/data/course/sample_prompt.jsonl";
  if (!fs::exists(sample)) GTEST_SKIP() << "../shared (the course data) is absent";
  const fs::path out = rlhf::testing::scratch_dir() / "summaries.jsonl";
  int rc = 0;
  std::string log = rlhf::testing::capture(rlhf::testing::cli() + " infer --input " + sample.string() + " --output " +
                                               out.string() +
                                               " --instruction \"Summarize in less than 50 words.\" --max-new-tokens 32"
                                               " --batch-size 6 --threads 1 --no-progress",
                                           &rc, true);
  ASSERT_EQ(rc, 0) << log;
  EXPECT_NE(log.find("prompts/s"), std::string::npos) << log;
  auto in = read_jsonl(sample), got = read_jsonl(out);
  ASSERT_EQ(got.size(), 6u);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i]["input_text"], in[i]["input_text"]);
    EXPECT_FALSE(got[i]["prediction"].get<std::string>().empty()) << i;
    EXPECT_EQ(got[i]["model"]["reference"], "smollm2-135m-instruct");
  }
}

}  // namespace
