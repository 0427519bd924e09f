// Helpers shared by the tests: where the sources and the dev venv are, scratch folders,
// running the reference implementations (Python, dev only) and the rlhf binary.
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/util/error.h"

namespace rlhf::testing {

inline std::filesystem::path source_dir() { return RLHF_SOURCE_DIR; }

// A fresh, empty scratch folder under the build tree, named after the running test.
inline std::filesystem::path scratch_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::filesystem::path p = std::filesystem::path(RLHF_BINARY_DIR) / "test-scratch" /
                            (std::string(info->test_suite_name()) + "." + info->name());
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

// The dev venv's python (scripts/setup --dev), or nothing when it is absent.
inline std::optional<std::string> venv_python() {
  auto p = source_dir() / ".venv" / "bin" / "python";
  if (std::filesystem::exists(source_dir() / ".venv" / ".ready") && std::filesystem::exists(p))
    return p.string();
  return std::nullopt;
}

// The embedded default model file, or nothing when scripts/setup has not fetched it.
inline std::optional<std::string> default_model_gguf() {
  const char* cache = std::getenv("RLHF_CACHE");
  std::filesystem::path dir;
  if (cache) dir = cache;
  else if (const char* x = std::getenv("XDG_CACHE_HOME")) dir = std::filesystem::path(x) / "rlhf";
  else dir = std::filesystem::path(std::getenv("HOME") ? std::getenv("HOME") : "/") / ".cache" / "rlhf";
  auto p = dir / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf";
  if (std::filesystem::exists(p)) return p.string();
  return std::nullopt;
}

inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Runs a shell command; returns its exit status (stdout/stderr go to the test log).
inline int run(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

// Runs a command and captures stdout (stderr is appended when merge_stderr).
inline std::string capture(const std::string& cmd, int* status = nullptr, bool merge_stderr = false) {
  std::string full = cmd + (merge_stderr ? " 2>&1" : "");
  FILE* pipe = popen(full.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while (pipe && (n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  int rc = pipe ? pclose(pipe) : -1;
  if (status) *status = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
  return out;
}

inline std::string cli() { return RLHF_CLI; }

// The device of the model tests that honour it: RLHF_TEST_DEVICE ("cpu", "cuda", "cuda:N"), cpu
// when unset (bench/gpu/check.sh sets it). A std::string converts to torch::Device.
inline std::string test_device() {
  const char* d = std::getenv("RLHF_TEST_DEVICE");
  return d && *d ? std::string(d) : std::string("cpu");
}
inline bool test_device_is_cpu() { return test_device() == "cpu"; }

// The rows of a JSONL file (blank lines skipped).
inline std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& p) {
  std::vector<nlohmann::json> rows;
  std::ifstream f(p);
  for (std::string line; std::getline(f, line);)
    if (line.find_first_not_of(" \t\r") != std::string::npos) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

// The message of the rlhf::Error that f throws, or "(no error)".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const rlhf::Error& e) {
    return e.what();
  }
  return "(no error)";
}

// GPT-2's byte-to-unicode spelling of one byte (the symbols of byte-level BPE), as UTF-8.
inline std::string byte_char(int b) {
  int n = 0;
  auto printable = [](int x) { return (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF); };
  for (int x = 0; x < b; ++x) n += !printable(x);
  char32_t cp = printable(b) ? char32_t(b) : char32_t(0x100 + n);
  std::string s;
  if (cp < 0x80) s += char(cp);
  else s += char(0xC0 | (cp >> 6)), s += char(0x80 | (cp & 0x3F));
  return s;
}

}  // namespace rlhf::testing

// Skips the current test when the dev venv is absent, saying how to get it.
#define RLHF_REQUIRE_VENV(var)                                                                \
  auto var##_opt = ::rlhf::testing::venv_python();                                            \
  if (!var##_opt) GTEST_SKIP() << "reference implementations absent: run scripts/setup --dev"; \
  const std::string var = *var##_opt
