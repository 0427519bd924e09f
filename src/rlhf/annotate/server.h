// The HTTP side of `rlhf annotate` (docs/annotate.md): the annotator and admin pages and the
// small JSON API behind them, over a Session, on cpp-httplib (util/http.h). Every API request
// carries a token in "Authorization: Bearer"; a POST must be JSON (415 otherwise) and may not
// come from another site's page (403 for a foreign Origin or Sec-Fetch-Site: cross-site).
// Errors are {"error": {"message", "field"}}. Nothing in a request names a file. Torch-free.
#pragma once
#include <cstddef>
#include <memory>
#include <string>

namespace rlhf::annotate {

class Session;

struct ServerConfig {
  std::string host = "127.0.0.1";  // loopback; any other address serves other machines too
  int port = 8081;                 // 0 = a free one (bind() says which)
  size_t max_body_bytes = 64 * 1024;
};

class Server {
 public:
  Server(Session& session, const ServerConfig& config);  // the session must outlive it
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int bind();     // binds host:port and returns the port; throws rlhf::Error
  void run();     // serves until stop()
  void stop();    // from any thread

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// `rlhf annotate`: binds, prints each annotator's link, the admin link and "[rlhf] annotating
// on http://HOST:PORT" to stderr, serves until SIGTERM or SIGINT, returns 0.
int annotate_until_signal(Session& session, const ServerConfig& config);

}  // namespace rlhf::annotate
