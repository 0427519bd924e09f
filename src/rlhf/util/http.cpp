#include "rlhf/util/http.h"

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "rlhf/util/error.h"

namespace rlhf::http {

bool is_loopback(const std::string& host) {
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  if (!host.starts_with("127.")) return false;
  int parts = 0;
  for (size_t i = 0; i <= host.size();) {
    size_t j = host.find('.', i);
    if (j == std::string::npos) j = host.size();
    int v = -1;
    auto [end, ec] = std::from_chars(host.data() + i, host.data() + j, v);
    if (ec != std::errc() || end != host.data() + j || v < 0 || v > 255) return false;
    ++parts;
    i = j + 1;
  }
  return parts == 4;
}

bool equal_constant_time(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

std::string_view bearer_token(std::string_view authorization) {
  constexpr std::string_view prefix = "Bearer ";
  if (authorization.size() <= prefix.size() || authorization.substr(0, prefix.size()) != prefix) return {};
  return authorization.substr(prefix.size());
}

std::string url_host(const std::string& host) {
  return host.find(':') != std::string::npos && !host.starts_with("[") ? "[" + host + "]" : host;
}

std::string random_token() {
  std::random_device rd;  // the kernel's random source on Linux
  std::string out;
  for (int i = 0; i < 4; ++i) out += fmt::format("{:08x}", static_cast<uint32_t>(rd()));
  return out;
}

void Listener::watch(httplib::Server& server) {
  server.set_socket_options([this](socket_t sock) {
    httplib::default_socket_options(sock);
    fd_ = sock;
  });
}

int Listener::bind(httplib::Server& server, const std::string& host, int port) {
  int bound = port;
  if (port == 0) {
    bound = server.bind_to_any_port(host);
    if (bound < 0) fail("cannot listen on {} (is it an address of this machine?)", host);
  } else if (!server.bind_to_port(host, port)) {
    fail("cannot listen on {}:{} (is the port in use, or the host not an address of this machine?)", host, port);
  }
  if (fd_ >= 0 && ::listen(fd_, SOMAXCONN) != 0) fail("cannot listen on {}:{}: {}", host, bound, std::strerror(errno));
  return bound;
}

std::string internal_error(std::exception_ptr ep) {
  try {
    std::rethrow_exception(ep);
  } catch (const std::exception& e) {
    return fmt::format("internal error: {}", e.what());
  } catch (...) {
  }
  return "internal error";
}

std::string signal_name(int sig) {
  if (sig == SIGTERM) return "SIGTERM";
  if (sig == SIGINT) return "SIGINT";
  return fmt::format("signal {}", sig);
}

namespace {

// The handler only writes the signal's number to a pipe (async-signal-safe); a thread reads
// it and calls on_signal.
int g_signal_pipe[2] = {-1, -1};
std::atomic<int> g_signals{0};

extern "C" void on_stop_signal(int sig) {
  if (g_signals.fetch_add(1) > 0) {
    constexpr char msg[] = "[rlhf] second signal: exiting now\n";
    ssize_t ignored = ::write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)ignored;
    ::_exit(128 + sig);
  }
  const unsigned char b = static_cast<unsigned char>(sig);
  ssize_t ignored = ::write(g_signal_pipe[1], &b, 1);
  (void)ignored;
}

}  // namespace

void run_until_signal(const std::function<void()>& serve, const std::function<void(int sig)>& on_signal) {
  if (g_signal_pipe[0] < 0 && ::pipe(g_signal_pipe) != 0) fail("cannot create a pipe: {}", std::strerror(errno));
  g_signals = 0;
  ::signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  std::thread watcher([&] {
    unsigned char b = 0;
    for (;;) {
      const ssize_t n = ::read(g_signal_pipe[0], &b, 1);
      if (n < 0 && errno == EINTR) continue;
      break;
    }
    if (b != 0) on_signal(b);  // 0: the server ended on its own
  });
  auto wake_watcher = [] {
    // After a signal the watcher has already read its byte; otherwise this ends it.
    const unsigned char zero = 0;
    if (g_signals.fetch_add(1) == 0) {
      ssize_t ignored = ::write(g_signal_pipe[1], &zero, 1);
      (void)ignored;
    }
  };
  try {
    serve();
  } catch (...) {
    wake_watcher();
    watcher.join();
    throw;
  }
  wake_watcher();
  watcher.join();
}

}  // namespace rlhf::http
