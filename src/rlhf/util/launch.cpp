#include "rlhf/util/launch.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <thread>

#include "rlhf/util/error.h"

namespace rlhf {
namespace {

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

// A whole number from an environment variable, in [lo, hi].
int env_int(const char* name, const std::string& text, int lo, int hi) {
  int v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size())
    fail("environment variable {}=\"{}\": not a whole number", name, text);
  if (v < lo || v > hi) fail("environment variable {}={}: must be in [{}, {}]", name, v, lo, hi);
  return v;
}

int required_int(const char* name, int lo, int hi, const char* launcher) {
  auto v = env(name);
  if (!v) fail("environment variable {} is not set ({} sets it)", name, launcher);
  return env_int(name, *v, lo, hi);
}

void read_master(DistEnv& d, const char* launcher) {
  auto addr = env("MASTER_ADDR");
  auto port = env("MASTER_PORT");
  if (!addr) fail("environment variable MASTER_ADDR is not set: {} ranks meet at MASTER_ADDR:MASTER_PORT", launcher);
  if (!port) fail("environment variable MASTER_PORT is not set: {} ranks meet at MASTER_ADDR:MASTER_PORT", launcher);
  d.master_addr = *addr;
  d.master_port = env_int("MASTER_PORT", *port, 1, 65535);
}

// A TCP port free on the loopback now (the kernel's pick).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) fail("cannot open a socket to find a free port: {}", std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    const int e = errno;
    ::close(fd);
    fail("cannot find a free port on 127.0.0.1: {}", std::strerror(e));
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

volatile sig_atomic_t g_stop_signal = 0;
void on_stop(int sig) { g_stop_signal = sig; }

struct Child {
  pid_t pid = -1;
  int out = -1;           // read end of the child's stdout and stderr
  std::string pending;    // a line not yet ended
  bool done = false;
  int code = 0;
};

// Writes whole lines of `buf` prefixed by the rank; keeps an unfinished line in `pending`.
void relay(Child& c, int rank, std::string_view buf, bool flush) {
  c.pending.append(buf);
  size_t start = 0;
  for (size_t nl; (nl = c.pending.find('\n', start)) != std::string::npos; start = nl + 1)
    std::fprintf(stderr, "[rank %d] %.*s\n", rank, static_cast<int>(nl - start), c.pending.data() + start);
  c.pending.erase(0, start);
  if (flush && !c.pending.empty()) {
    std::fprintf(stderr, "[rank %d] %s\n", rank, c.pending.c_str());
    c.pending.clear();
  }
  std::fflush(stderr);
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

int parse_dist_timeout(const std::string& text, const std::string& source) {
  int v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < 1 || v > 86400)
    fail("{} \"{}\": the seconds a collective waits for the other ranks must be a whole number in [1, 86400]", source,
         text);
  return v;
}

DistEnv read_dist_env() {
  DistEnv d;
  if (auto t = env("RLHF_DIST_TIMEOUT")) d.timeout_seconds = env_int("RLHF_DIST_TIMEOUT", *t, 1, 86400);
  if (env("RANK") || env("WORLD_SIZE")) {
    d.launcher = "torchrun";
    d.world_size = required_int("WORLD_SIZE", 1, 1 << 20, "torchrun");
    d.rank = required_int("RANK", 0, d.world_size - 1, "torchrun");
    d.local_world_size = env("LOCAL_WORLD_SIZE") ? required_int("LOCAL_WORLD_SIZE", 1, d.world_size, "torchrun") : 1;
    d.local_rank = env("LOCAL_RANK") ? required_int("LOCAL_RANK", 0, d.local_world_size - 1, "torchrun") : 0;
  } else if (env("SLURM_PROCID") && (env("SLURM_STEP_ID") || env("SLURM_STEPID"))) {
    // Only a job step (srun) makes ranks: a batch script also sees SLURM_PROCID=0 and the
    // allocation's SLURM_NTASKS, yet it is one process.
    d.launcher = "slurm";
    const char* tasks = env("SLURM_STEP_NUM_TASKS") ? "SLURM_STEP_NUM_TASKS" : "SLURM_NTASKS";
    d.world_size = required_int(tasks, 1, 1 << 20, "srun");
    d.rank = required_int("SLURM_PROCID", 0, d.world_size - 1, "srun");
    d.local_rank = env("SLURM_LOCALID") ? required_int("SLURM_LOCALID", 0, d.world_size - 1, "srun") : 0;
    // SLURM_NTASKS_PER_NODE is "4" or "4(x2)"; its leading number is the local count.
    if (auto per_node = env("SLURM_NTASKS_PER_NODE")) {
      int v = 0;
      std::from_chars(per_node->data(), per_node->data() + per_node->size(), v);
      d.local_world_size = v > 0 ? v : 1;
    }
    if (d.local_rank >= d.local_world_size) d.local_world_size = d.local_rank + 1;
  } else {
    return d;
  }
  if (d.world_size > 1) read_master(d, d.launcher == "slurm" ? "Slurm" : "torchrun");
  return d;
}

int run_local_ranks(int nproc, const std::vector<std::string>& argv) {
  if (nproc < 1 || nproc > 1024) fail("--nproc-per-node {}: must be in [1, 1024]", nproc);
  if (env("RANK") || env("WORLD_SIZE"))
    fail("--nproc-per-node inside a job that already has RANK/WORLD_SIZE set (torchrun starts the ranks itself); "
         "drop one of them");
  const int port = free_port();
  const std::string self = "/proc/self/exe";
  std::vector<Child> children(static_cast<size_t>(nproc));
  struct sigaction sa{};
  sa.sa_handler = on_stop;
  sigemptyset(&sa.sa_mask);
  struct sigaction old_int{}, old_term{};
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);

  const pid_t launcher = ::getpid();
  for (int r = 0; r < nproc; ++r) {
    int fds[2];
    if (::pipe(fds) != 0) fail("cannot make a pipe for rank {}: {}", r, std::strerror(errno));
    const pid_t pid = ::fork();
    if (pid < 0) fail("cannot start rank {}: {}", r, std::strerror(errno));
    if (pid == 0) {
      // A launcher killed outright (SIGKILL) takes its ranks with it.
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != launcher) ::_exit(128 + SIGTERM);
      ::dup2(fds[1], STDOUT_FILENO);
      ::dup2(fds[1], STDERR_FILENO);
      ::close(fds[0]);
      ::close(fds[1]);
      ::setenv("RANK", std::to_string(r).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      // The cores shared among the ranks, unless the user said otherwise.
      const long cores = std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN));
      ::setenv("OMP_NUM_THREADS", std::to_string(std::max(1L, cores / nproc)).c_str(), 0);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(self.c_str(), args.data());
      std::fprintf(stderr, "cannot run %s: %s\n", self.c_str(), std::strerror(errno));
      ::_exit(127);
    }
    ::close(fds[1]);
    ::fcntl(fds[0], F_SETFL, ::fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    children[static_cast<size_t>(r)].pid = pid;
    children[static_cast<size_t>(r)].out = fds[0];
  }

  int first_failure = 0;
  int failed_rank = -1;
  bool stopping = false;
  auto stop_all = [&](int sig) {
    for (auto& c : children)
      if (!c.done) ::kill(c.pid, sig);
  };
  auto stop_deadline = std::chrono::steady_clock::time_point::max();
  size_t running = children.size();
  char buf[4096];
  while (running > 0) {
    std::vector<pollfd> fds;
    std::vector<int> owner;
    for (int r = 0; r < nproc; ++r)
      if (children[r].out >= 0) {
        fds.push_back({children[r].out, POLLIN, 0});
        owner.push_back(r);
      }
    ::poll(fds.data(), fds.size(), 100);
    for (size_t k = 0; k < fds.size(); ++k) {
      Child& c = children[static_cast<size_t>(owner[k])];
      if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      for (;;) {
        const ssize_t n = ::read(c.out, buf, sizeof buf);
        if (n > 0) {
          relay(c, owner[k], std::string_view(buf, static_cast<size_t>(n)), false);
          continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
          relay(c, owner[k], {}, true);
          ::close(c.out);
          c.out = -1;
        }
        break;
      }
    }
    for (int r = 0; r < nproc; ++r) {
      Child& c = children[static_cast<size_t>(r)];
      if (c.done) continue;
      int status = 0;
      if (::waitpid(c.pid, &status, WNOHANG) != c.pid) continue;
      c.done = true;
      c.code = exit_code(status);
      --running;
      if (c.code != 0 && failed_rank < 0 && !stopping) {
        failed_rank = r;
        first_failure = c.code;
        std::fprintf(stderr, "[rlhf] rank %d of %d exited with %s %d; stopping the other ranks\n", r, nproc,
                     WIFSIGNALED(status) ? "signal" : "code", WIFSIGNALED(status) ? WTERMSIG(status) : c.code);
        stopping = true;
        stop_all(SIGTERM);
        stop_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      }
    }
    if (g_stop_signal && !stopping) {
      stopping = true;
      first_failure = 128 + g_stop_signal;
      stop_all(g_stop_signal);
      stop_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    }
    if (stopping && std::chrono::steady_clock::now() > stop_deadline) {
      stop_all(SIGKILL);
      stop_deadline = std::chrono::steady_clock::time_point::max();
    }
  }
  // What the ranks wrote last, up to the end of their pipes.
  for (int r = 0; r < nproc; ++r) {
    Child& c = children[static_cast<size_t>(r)];
    if (c.out < 0) continue;
    ssize_t n;
    while ((n = ::read(c.out, buf, sizeof buf)) > 0) relay(c, r, std::string_view(buf, static_cast<size_t>(n)), false);
    relay(c, r, {}, true);
    ::close(c.out);
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return first_failure;
}

}  // namespace rlhf
