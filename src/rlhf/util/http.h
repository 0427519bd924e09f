// What the HTTP servers (`rlhf serve`, `rlhf annotate`) share on top of cpp-httplib: which
// hosts are loopback, token checks that leak no timing, a listening socket with a deep accept
// queue, and a run loop that stops on SIGTERM/SIGINT. A file that includes <httplib.h> must be
// compiled with httplib's flags (CMakeLists.txt lists those files).
#pragma once
#include <exception>
#include <functional>
#include <string>
#include <string_view>

namespace httplib {
class Server;
}

namespace rlhf::http {

// "localhost", "::1" and 127.0.0.0/8 written as a dotted quad.
bool is_loopback(const std::string& host);

// Compares in time that depends on the lengths only, never on where the bytes differ.
bool equal_constant_time(std::string_view a, std::string_view b);

// The token of an "Authorization: Bearer TOKEN" header value; "" when it has another form.
std::string_view bearer_token(std::string_view authorization);

// A host as it goes in a URL (an IPv6 address in brackets).
std::string url_host(const std::string& host);

// 32 lowercase hex digits from the system's random source (128 bits), for secrets.
std::string random_token();

// Binds an httplib server and deepens its accept queue. Call watch() before bind().
class Listener {
 public:
  // Remembers the listening socket when the server creates it.
  void watch(httplib::Server& server);
  // Binds host:port (port 0: a free one) and returns the port. Debian's compiled httplib
  // listens with a backlog of 5: listen() again with SOMAXCONN, so a burst of clients waits
  // to be accepted instead of having its connections dropped. Throws rlhf::Error.
  int bind(httplib::Server& server, const std::string& host, int port);

 private:
  int fd_ = -1;
};

// Runs `serve` (which blocks until the server stops) on this thread. The first SIGTERM or
// SIGINT calls `on_signal(sig)` on another thread (it should make `serve` return); a second
// one exits at once with 128 + sig. SIGPIPE is ignored: a client gone mid-write is a failed
// write. One at a time per process.
void run_until_signal(const std::function<void()>& serve, const std::function<void(int sig)>& on_signal);

// "internal error: WHAT" for an exception a handler let out (what a 500 answer says).
std::string internal_error(std::exception_ptr ep);

// "SIGTERM", "SIGINT" or "signal N".
std::string signal_name(int sig);

}  // namespace rlhf::http
