// `rlhf validate` checks data as training reads it: with no --prompt-format both validate and
// train-reward encode chat-form data with the chat template and text data as raw text; the
// flags and their checks are train-reward's own.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "tiny_model.h"

namespace rlhf {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using rlhf::testing::capture;
using rlhf::testing::cli;

// The tiny model with a ChatML template, so that both prompt formats are possible.
fs::path chat_model(const fs::path& dir) {
  rlhf::testing::write_tiny_hf_model(dir);
  json cfg = json::parse(rlhf::testing::read_text(dir / "tokenizer_config.json"));
  cfg["chat_template"] =
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
      "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  std::ofstream(dir / "tokenizer_config.json") << cfg.dump();
  return dir;
}

void write_pairs(const fs::path& path, bool chat) {
  std::ofstream f(path);
  for (int i = 0; i < 8; ++i) {
    const std::string prompt = "say: cat dog " + std::to_string(i) + " ->";
    json j = {{"chosen", " cat # dog"}, {"rejected", " cat dog sun"}};
    if (chat) j["messages"] = json::array({{{"author", "user"}, {"content", prompt}}});
    else j["prompt"] = prompt;
    f << j.dump() << "\n";
  }
}

// The prompt format validate reports for the dataset ("chat", "raw"), "" when it reports none.
std::string validate_format(const std::string& out) {
  const std::string key = "prompt format: ";
  const size_t at = out.find(key);
  if (at == std::string::npos) return "";
  const size_t from = at + key.size();
  return out.substr(from, out.find_first_of(" \n", from) - from);
}

// The prompt format train-reward records in the trained folder.
std::string trained_format(const fs::path& dir, const fs::path& model, const fs::path& data) {
  int status = 0;
  const std::string log = capture(cli() + " train-reward --preference-dataset " + data.string() +
                                      " --large-model-reference " + model.string() + " --output " + (dir / "rm").string() +
                                      " --reward-model-train-steps 1 --batch-size 4 --micro-batch-size 4"
                                      " --prompt-sequence-length 96 --target-sequence-length 8 --threads 1 --no-progress",
                                  &status, true);
  EXPECT_EQ(status, 0) << log;
  const json info = json::parse(rlhf::testing::read_text(dir / "rm" / "reward_model.json"));
  return info["encoding"]["prompt_format"].get<std::string>();
}

TEST(Validate, ReadsDataAsTrainRewardDoesByDefault) {
  auto dir = rlhf::testing::scratch_dir();
  const fs::path model = chat_model(dir / "model");
  for (bool chat : {true, false}) {
    const fs::path run = dir / (chat ? "chat" : "raw");
    fs::create_directories(run);
    write_pairs(run / "prefs.jsonl", chat);
    int status = 0;
    const std::string out =
        capture(cli() + " validate --preference-dataset " + (run / "prefs.jsonl").string() + " --model " + model.string(),
                &status, true);
    ASSERT_EQ(status, 0) << out;
    const std::string validated = validate_format(out);
    EXPECT_EQ(validated, chat ? "chat" : "raw") << out;
    EXPECT_EQ(validated, trained_format(run, model, run / "prefs.jsonl")) << out;
  }
}

TEST(Validate, DataFlagsAreTrainRewardsWithItsChecks) {
  auto dir = rlhf::testing::scratch_dir();
  write_pairs(dir / "prefs.jsonl", true);
  int status = 0;
  const std::string help = capture(cli() + " validate --help", &status, true);
  EXPECT_EQ(status, 0);
  for (const char* flag : {"--prompt-format", "--instruction", "--prompt-sequence-length", "--target-sequence-length",
                           "--skip-invalid"})
    EXPECT_NE(help.find(flag), std::string::npos) << flag << "\n" << help;
  EXPECT_NE(help.find("auto"), std::string::npos) << help;
  // An explicit format wins over the data's form.
  const fs::path model = chat_model(dir / "model");
  std::string out = capture(cli() + " validate --preference-dataset " + (dir / "prefs.jsonl").string() + " --model " +
                                model.string() + " --prompt-format raw",
                            &status, true);
  ASSERT_EQ(status, 0) << out;
  EXPECT_EQ(validate_format(out), "raw") << out;
  // Values train-reward refuses are refused here too, naming the flag.
  for (const std::string bad : {" --prompt-format html", " --prompt-sequence-length 0", " --target-sequence-length -1"}) {
    out = capture(cli() + " validate --preference-dataset " + (dir / "prefs.jsonl").string() + bad, &status, true);
    EXPECT_NE(status, 0) << bad;
    EXPECT_NE(out.find(bad.substr(1, bad.find(' ', 1) - 1)), std::string::npos) << out;
  }
}

}  // namespace
}  // namespace rlhf
