// The rlhf command line on the embedded default model, and its errors on bad input.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "rlhf/model/loader.h"
#include "test_util.h"

namespace rlhf {
namespace {

using testing::capture;
using testing::cli;

TEST(Cli, GenerateAnswersTheCapitalOfFrance) {
  auto gguf = testing::default_model_gguf();
  if (!gguf) GTEST_SKIP() << "default model absent: run scripts/setup";
  int rc = -1;
  std::string out = capture(cli() + " generate --model smollm2-135m-instruct --chat --prompt "
                                    "'What is the capital of France?' --temperature 0 --max-new-tokens 24",
                            &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_NE(out.find("Paris"), std::string::npos) << out;
}

TEST(Cli, GenerateWithSeedRepeatsAndBatchesPrompts) {
  auto gguf = testing::default_model_gguf();
  if (!gguf) GTEST_SKIP() << "default model absent: run scripts/setup";
  const std::string cmd = cli() + " generate --chat --temperature 0.8 --top-p 0.9 --seed 7 --max-new-tokens 12"
                                  " --prompt 'Name a color.' --prompt 'Name an animal.'";
  int rc1 = -1, rc2 = -1;
  std::string a = capture(cmd, &rc1), b = capture(cmd, &rc2);
  EXPECT_EQ(rc1, 0);
  EXPECT_EQ(a, b);
  EXPECT_NE(a.find("[0] "), std::string::npos) << a;
  EXPECT_NE(a.find("[1] "), std::string::npos) << a;
}

TEST(Cli, TokenizePrintsTheTokenizersIds) {
  auto gguf = testing::default_model_gguf();
  if (!gguf) GTEST_SKIP() << "default model absent: run scripts/setup";
  const std::string text = "Hello, world! 1234 <|im_end|>";
  int rc = -1;
  std::string out = capture(cli() + " tokenize --model " + *gguf + " --text '" + text + "'", &rc);
  EXPECT_EQ(rc, 0);
  ModelFiles m = read_model(*gguf, /*weights=*/false);
  std::string expect;
  for (int32_t id : m.tokenizer->encode(text)) expect += (expect.empty() ? "" : " ") + std::to_string(id);
  EXPECT_EQ(out, expect + "\n");
  EXPECT_NE(out.find(" 2\n"), std::string::npos) << "<|im_end|> is id 2: " << out;
}

TEST(Cli, ModelsListsTheDefault) {
  int rc = -1;
  std::string out = capture(cli() + " models", &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_NE(out.find("smollm2-135m-instruct"), std::string::npos) << out;
}

TEST(Cli, BadInputGivesAClearErrorAndNonZeroExit) {
  auto dir = testing::scratch_dir();
  int rc = 0;
  std::string out = capture(cli() + " generate --model /nonexistent/model.gguf --prompt hi", &rc, true);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("/nonexistent/model.gguf"), std::string::npos) << out;

  out = capture(cli() + " generate --prompt hi --temperature -1", &rc, true);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("temperature"), std::string::npos) << out;

  out = capture(cli() + " generate --no-such-flag", &rc, true);
  EXPECT_NE(rc, 0);

  // A truncated copy of a real model file: a clear error naming the file, no crash.
  if (auto gguf = testing::default_model_gguf()) {
    std::string full = testing::read_text(*gguf).substr(0, 5u << 20);
    auto cut = (dir / "truncated.gguf").string();
    std::ofstream(cut, std::ios::binary) << full;
    out = capture(cli() + " generate --model " + cut + " --prompt hi", &rc, true);
    EXPECT_EQ(rc, 1) << out;
    EXPECT_NE(out.find("truncated.gguf"), std::string::npos) << out;
  }
  // A folder without config.json.
  out = capture(cli() + " generate --model " + dir.string() + " --prompt hi", &rc, true);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("config.json"), std::string::npos) << out;
}

// A CPU build loads no CUDA library of the system: libtorch_cuda is not linked, and the two
// CUDA libraries libtorch_cpu names resolve to the stand-ins beside it.
TEST(Cli, CpuBuildLoadsNoCudaLibrary) {
#ifdef RLHF_CUDA
  GTEST_SKIP() << "CUDA build";
#else
  int rc = -1;
  std::string out = capture("ldd " + cli(), &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(out.find("libtorch_cuda"), std::string::npos) << out;
  EXPECT_EQ(out.find("not found"), std::string::npos) << out;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    for (const char* lib : {"libcudart", "libcupti", "libcublas", "libnccl", "libcudnn"}) {
      if (line.find(lib) == std::string::npos) continue;
      EXPECT_NE(line.find(".deps/libtorch/lib/"), std::string::npos) << "resolved outside the stand-ins: " << line;
    }
  }
#endif
}

}  // namespace
}  // namespace rlhf
