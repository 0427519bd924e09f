// The line printed on Ctrl-C/SIGTERM: the command line quoted as a shell would need it, the
// note kept current (a checkpoint names itself and the command that continues), and the
// handler printing exactly that line and exiting with 128 + the signal.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "rlhf/train/checkpoint.h"
#include "rlhf/util/interrupt.h"
#include "test_util.h"

namespace rlhf {
namespace {

TEST(Interrupt, QuotesTheCommandLineForTheShell) {
  const char* argv[] = {"rlhf", "infer", "--input", "my data.jsonl", "--instruction", "it's", "--top-p=0.5", ""};
  EXPECT_EQ(interrupt::quote_command_line(8, argv),
            "rlhf infer --input 'my data.jsonl' --instruction 'it'\\''s' --top-p=0.5 ''");
}

// In a child: install, set the note, raise the signal; the parent reads what was printed.
std::pair<int, std::string> interrupted_child(int sig, const std::function<void()>& before) {
  const auto err = (testing::scratch_dir() / "stderr.txt").string();
  pid_t pid = fork();
  if (pid == 0) {
    FILE* f = std::freopen(err.c_str(), "w", stderr);
    (void)f;
    interrupt::install("rlhf train-reward --output o --resume");
    before();
    ::raise(sig);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, testing::read_text(err)};
}

TEST(Interrupt, PrintsTheNoteAndExitsWith128PlusTheSignal) {
  auto [rc, text] = interrupted_child(SIGINT, [] {});
  EXPECT_EQ(rc, 130);
  EXPECT_EQ(text, "rlhf: interrupted; nothing was kept\n");
  std::tie(rc, text) = interrupted_child(SIGTERM, [] { interrupt::note_kept("3 rows kept in out.partial"); });
  EXPECT_EQ(rc, 143);
  EXPECT_EQ(text, "rlhf: interrupted; 3 rows kept in out.partial; continue with: rlhf train-reward --output o --resume\n");
}

TEST(Interrupt, ACheckpointNamesItselfInTheNote) {
  const auto root = testing::scratch_dir().string();
  interrupt::install("rlhf train-policy --output " + root + " --resume");
  checkpoint::save(root, 7, 2, {{"step", 7}, {"fingerprint", nlohmann::json::object()}}, [](const std::string&) {});
  EXPECT_EQ(interrupt::current_note(), "rlhf: interrupted; checkpoint step-0000007 kept in " + root +
                                           "; continue with: rlhf train-policy --output " + root + " --resume");
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
}

}  // namespace
}  // namespace rlhf
