// What the `rlhf serve` tests share: a server process started on a free port (its address read
// from the `[rlhf] serving on http://HOST:PORT` line), stopped with a signal and reaped; the
// Python check scripts of tests/serve run against it, their one-line JSON report parsed; and
// policy folders with non-zero LoRA weights on the default model.
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/model/loader.h"
#include "rlhf/model/model.h"
#include "rlhf/model/registry.h"
#include "rlhf/train/adapter_io.h"
#include "rlhf/train/reward_artifact.h"
#include "rlhf/train/trained_folder.h"
#include "test_util.h"

namespace rlhf::testing {

// A running `rlhf serve`; killed and reaped when destroyed if still running.
class ServeProcess {
 public:
  ServeProcess() = default;
  ServeProcess(const ServeProcess&) = delete;
  ServeProcess& operator=(const ServeProcess&) = delete;
  ~ServeProcess() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  // Starts `rlhf serve --port 0 ARGS...` with its output in `log`; returns "" once it serves,
  // else what went wrong (with the log).
  std::string start(const std::vector<std::string>& args, const std::filesystem::path& log,
                    std::chrono::seconds timeout = std::chrono::seconds(240)) {
    log_ = log;
    std::vector<std::string> argv = {cli(), "serve", "--host", "127.0.0.1", "--port", "0"};
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = ::fork();
    if (pid_ < 0) return "fork failed";
    if (pid_ == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        ::close(fd);
      }
      ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
      std::vector<char*> cargs;
      for (auto& a : argv) cargs.push_back(a.data());
      cargs.push_back(nullptr);
      ::execv(cargs[0], cargs.data());
      ::_exit(127);
    }
    const std::regex line(R"(\[rlhf\] serving on http://([^:\s/]+):([0-9]+))");
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      std::smatch m;
      const std::string text = read_text(log_);
      if (std::regex_search(text, m, line)) {
        host_ = m[1].str();
        port_ = std::stoi(m[2].str());
        return "";
      }
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        reaped_ = true;
        return "rlhf serve exited before serving (status " + std::to_string(status) + "):\n" + text;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return "rlhf serve did not print its address in time:\n" + read_text(log_);
  }

  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  std::string url() const { return "http://" + host_ + ":" + std::to_string(port_); }
  std::string log() const { return read_text(log_); }

  // Waits for the process to exit: its exit code, 128 + signal, or nothing after `timeout`.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (!reaped_) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        reaped_ = true;
        exit_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        break;
      }
      if (std::chrono::steady_clock::now() >= until) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return exit_;
  }

  // SIGTERM, then the exit code (nothing when it outlived `timeout`; it is killed then).
  std::optional<int> stop(std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    if (pid_ <= 0) return std::nullopt;
    if (!reaped_) ::kill(pid_, SIGTERM);
    auto code = wait_exit(timeout);
    if (!code) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      reaped_ = true;
    }
    return code;
  }

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int exit_ = -1;
  std::string host_;
  int port_ = 0;
  std::filesystem::path log_;
};

// Runs tests/serve/SCRIPT GROUP CONFIG (config written to dir/GROUP.json) with the venv's
// python, bounded by `timeout_s`; returns its report (the last line of stdout), or a report
// whose "failures" says why there is none.
inline nlohmann::json run_serve_script(const std::string& python, const std::string& script, const std::string& group,
                                       const nlohmann::json& config, const std::filesystem::path& dir,
                                       int timeout_s = 600) {
  const auto cfg = dir / (group + ".json");
  std::ofstream(cfg) << config.dump(2);
  int rc = 0;
  const std::string out =
      capture("timeout -k 10 " + std::to_string(timeout_s) + " " + python + " " +
                  (source_dir() / "tests" / "serve" / script).string() + " " + group + " " + cfg.string(),
              &rc);
  std::string last;  // the last non-empty line
  for (size_t pos = 0; pos < out.size();) {
    size_t eol = out.find('\n', pos);
    if (eol == std::string::npos) eol = out.size();
    if (eol > pos) last = out.substr(pos, eol - pos);
    pos = eol + 1;
  }
  try {
    auto j = nlohmann::json::parse(last);
    if (j.is_object() && j.contains("failures")) return j;
  } catch (const std::exception&) {
  }
  return {{"failures", {script + " " + group + " gave no report (exit " + std::to_string(rc) + "): " + out}}};
}

// Every failure a script reported, as gtest failures.
inline void expect_no_failures(const nlohmann::json& report) {
  for (const auto& f : report["failures"]) ADD_FAILURE() << f.get<std::string>();
}

// A train-policy folder in `dir` for `model` (loaded from `gguf`): LoRA rank 4 on every
// projection with B drawn from N(0, scale^2) (seed), raw prompts led by `instruction`.
inline void write_default_policy(Model& model, const std::string& gguf, const std::string& name,
                                 const std::filesystem::path& dir, uint64_t seed, const std::string& instruction,
                                 double scale = 0.1) {
  LoraConfig lora;
  lora.rank = 4;
  lora.alpha = 8;
  auto& ad = model.net->add_adapter(name, lora, seed);
  {
    torch::NoGradGuard no_grad;
    auto gen = at::detail::createCPUGenerator(seed);
    for (auto& layer : ad.b)
      for (auto& t : layer)
        if (t.defined()) t.copy_(torch::randn(t.sizes(), gen).to(t.dtype()) * scale);
  }
  std::filesystem::create_directories(dir);
  save_adapter(dir.string(), ad, {.base_reference = model.reference, .task_type = "CAUSAL_LM", .modules_to_save = {}});
  TrainedFolder info;
  info.kind = TrainedFolder::Kind::Policy;
  info.base_reference = model.reference;
  info.base_path = std::filesystem::absolute(gguf).string();
  info.base_format = model.format;
  info.base_sha256 = model_content_hash(gguf);
  info.lora = lora;
  info.encode.instruction = instruction;
  info.encode.prompt_sequence_length = 256;
  info.encode.target_sequence_length = 16;
  info.eos_id = completion_eos_id(model);
  info.pad_id = model.pad_id;
  write_policy_folder_manifest(dir.string(), info);
}

// Two policy folders on the default model (`gguf`), dir/NAME1 and dir/NAME2, with different
// LoRA weights (seeds `seed`, `seed` + 1) and instructions.
inline void write_two_default_policies(const std::string& gguf, const std::filesystem::path& dir,
                                       const std::string& name1, const std::string& name2, uint64_t seed) {
  auto model = load_model(std::string(kDefaultModel), {torch::kFloat32, torch::kCPU});  // recorded by its name
  write_default_policy(*model, gguf, name1, dir / name1, seed, "Policy says:");
  write_default_policy(*model, gguf, name2, dir / name2, seed + 1, "Answer briefly.");
}

}  // namespace rlhf::testing

// Skips the test unless the dev venv and the default model are there.
#define RLHF_REQUIRE_SERVE(py, gguf)                                                                      \
  auto py##_opt = ::rlhf::testing::venv_python();                                                         \
  if (!py##_opt) GTEST_SKIP() << "the dev venv (the openai client) is absent: run scripts/setup --dev";   \
  auto gguf##_opt = ::rlhf::testing::default_model_gguf();                                                \
  if (!gguf##_opt) GTEST_SKIP() << "the default model is absent: run scripts/setup";                      \
  const std::string py = *py##_opt, gguf = *gguf##_opt
