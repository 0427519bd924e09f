// The Hugging Face reference for the text layer (tests/parity/tokenizer_ref.py), run once
// per test process into the build tree and shared by the tokenizer and chat-template tests.
#pragma once
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "test_util.h"

namespace rlhf::testing {

struct TokenizerReference {
  std::filesystem::path dir;  // <name>/tokenizer.json, sp/tokenizer.model, ...
  nlohmann::json ref;         // reference.json: strings and the ids of each variant
  nlohmann::json chat;        // chat.json: rendered conversations
  std::string gguf;
  std::string unavailable;    // why the reference could not be made (then skip)
};

inline const TokenizerReference& tokenizer_reference() {
  static const TokenizerReference r = [] {
    TokenizerReference r;
    auto py = venv_python();
    auto model = default_model_gguf();
    if (!py) r.unavailable = "reference implementations absent: run scripts/setup --dev";
    else if (!model) r.unavailable = "SmolLM2-135M-Instruct GGUF absent: run scripts/setup";
    if (!r.unavailable.empty()) return r;
    r.gguf = *model;
    r.dir = std::filesystem::path(RLHF_BINARY_DIR) / "test-scratch" / "tokenizer-reference";
    std::filesystem::remove_all(r.dir);
    std::filesystem::create_directories(r.dir);
    std::string cmd = *py + " " + (source_dir() / "tests/parity/tokenizer_ref.py").string() + " '" +
                      *model + "' '" + r.dir.string() + "'";
    if (run(cmd) != 0) {
      r.unavailable = "FAILED: " + cmd;
      return r;
    }
    r.ref = nlohmann::json::parse(read_text(r.dir / "reference.json"));
    r.chat = nlohmann::json::parse(read_text(r.dir / "chat.json"));
    return r;
  }();
  return r;
}

}  // namespace rlhf::testing

// Skips the test when the reference cannot be made for lack of the venv or the model; fails
// it when the reference script itself failed.
#define RLHF_REQUIRE_TOKENIZER_REFERENCE(var)                                        \
  const auto& var = ::rlhf::testing::tokenizer_reference();                         \
  if (var.unavailable.rfind("FAILED", 0) == 0) FAIL() << var.unavailable;           \
  if (!var.unavailable.empty()) GTEST_SKIP() << var.unavailable
