#include "rlhf/util/interrupt.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <utility>

namespace rlhf::interrupt {
namespace {

// The note lives in one of a few fixed buffers; set_note fills the next one and then
// publishes its index, so a handler always reads a complete line (it would take as many
// updates as there are buffers during one handler's write to tear it).
constexpr size_t kNoteBytes = 4096;
constexpr size_t kBuffers = 4;
std::array<std::array<char, kNoteBytes>, kBuffers> g_notes{};
std::array<size_t, kBuffers> g_lengths{};
std::atomic<size_t> g_current{0};
std::mutex g_writer;
bool g_tty = false;
std::string g_continue;

// The handler's write loop: util/fs.h's loop formats and throws on errors, which a signal
// handler must not do; this one gives up silently.
void write_to_stderr(const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(STDERR_FILENO, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

extern "C" void on_signal(int sig) {
  static std::atomic<bool> once{false};
  if (once.exchange(true)) return;  // a second signal while the note is written: the first exits
  // On a terminal a progress bar may hold the line: clear it first.
  if (g_tty) write_to_stderr("\r\033[K", 4);
  const size_t i = g_current.load(std::memory_order_acquire);
  write_to_stderr(g_notes[i].data(), g_lengths[i]);
  write_to_stderr("\n", 1);
  ::_exit(128 + sig);
}

bool needs_quotes(std::string_view a) {
  if (a.empty()) return true;
  return std::any_of(a.begin(), a.end(), [](char c) {
    return !(std::isalnum(static_cast<unsigned char>(c)) || std::strchr("-_./=:,+@%", c) != nullptr);
  });
}

}  // namespace

void install(std::string continue_command) {
  g_continue = std::move(continue_command);
  g_tty = ::isatty(STDERR_FILENO) != 0;
  set_note("rlhf: interrupted; nothing was kept");
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGINT);
  sigaddset(&sa.sa_mask, SIGTERM);
  sa.sa_flags = 0;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

std::string quote_command_line(int argc, const char* const* argv) {
  std::string out;
  for (int i = 0; i < argc; ++i) {
    std::string_view a = argv[i];
    if (i) out += ' ';
    if (!needs_quotes(a)) {
      out += a;
      continue;
    }
    out += '\'';
    for (char c : a) {
      if (c == '\'') out += "'\\''";
      else out += c;
    }
    out += '\'';
  }
  return out;
}

void set_note(std::string_view note) {
  std::lock_guard<std::mutex> lock(g_writer);
  const size_t next = (g_current.load(std::memory_order_relaxed) + 1) % kBuffers;
  const size_t n = std::min(note.size(), kNoteBytes);
  std::memcpy(g_notes[next].data(), note.data(), n);
  g_lengths[next] = n;
  g_current.store(next, std::memory_order_release);
}

std::string current_note() {
  std::lock_guard<std::mutex> lock(g_writer);
  const size_t i = g_current.load(std::memory_order_relaxed);
  return std::string(g_notes[i].data(), g_lengths[i]);
}

const std::string& continue_command() { return g_continue; }

void note_kept(std::string_view what_was_kept) {
  std::string note = "rlhf: interrupted; ";
  note += what_was_kept;
  if (!g_continue.empty()) note += "; continue with: " + g_continue;
  set_note(note);
}

}  // namespace rlhf::interrupt
