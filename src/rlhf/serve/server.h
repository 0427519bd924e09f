// Server: the HTTP side of `rlhf serve`, an OpenAI-compatible API over the continuous-batching
// engine (serve/engine.h) on cpp-httplib. Endpoints (docs/serve.md says more):
//   GET  /health               {"status":"ok"}, never behind the key
//   GET  /metrics              Prometheus text
//   GET  /v1/models            the base and its adapters; GET /v1/models/{id} one of them
//   POST /v1/chat/completions  the base's chat template; stream: Server-Sent Events
//   POST /v1/completions       raw text prompts (one or a list)
// Every error has OpenAI's shape {"error":{"message","type","param","code"}}: 400 for a bad
// request (the field named in param), 401 without the key, 404 for an unknown model or route,
// 413 for a body over the limit (checked before it is read), 503 when the queue is full or
// the server is shutting down.
//
// Stop strings are matched on the decoded text (StreamDecoder), the text cut before the match
// and the sequence cancelled; a stream holds back text that could be the start of one. A
// client that goes away mid-stream cancels its sequences at once (the next write fails; while
// nothing is written, a ": ping" comment every 2 s finds out). Nothing in a request reaches
// the filesystem. Torch-free.
#pragma once
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "rlhf/serve/api.h"

namespace rlhf::serve {

class ServingModel;

struct ServerConfig {
  std::string host = "127.0.0.1";  // loopback; any other address needs api_key or insecure_no_auth
  int port = 8080;                 // 0 = a free port (bind() says which)
  std::string api_key;             // "" = none: every client is served
  bool insecure_no_auth = false;   // allow a non-loopback host without a key
  int64_t max_queue = 256;         // sequences waiting for a decode slot; more get 503
  int64_t max_batch = 32;          // sequences decoded together
  double grace_seconds = 30;       // shutdown: how long in-flight requests may take to finish
  bool group_by_adapter = false;   // each decode step runs one adapter's rows (EngineOptions)
  RequestLimits limits;            // body size, max_tokens, messages, n, ...
  size_t http_threads = 0;         // connections served at once; 0 = max(80, max_batch + 16)
};

// Throws rlhf::Error for a configuration the server refuses to start with: a host other than
// loopback without an API key (unless insecure_no_auth), or a limit out of range.
void check_server_config(const ServerConfig& config);

class Server {
 public:
  // Checks the configuration and starts the engine on the model (which must outlive it).
  Server(const ServingModel& model, const ServerConfig& config);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port (port 0: a free one) and returns the port. Throws rlhf::Error.
  int bind();
  // Serves on the bound socket until shutdown() ends it.
  void run();
  // Graceful stop, from any thread: new requests get 503, the engine finishes what it holds
  // within `grace` (what is left then ends with an error), the responses are written, then
  // run() returns. Idempotent; returns when done.
  void shutdown(std::chrono::milliseconds grace);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// `rlhf serve`: binds, prints "[rlhf] serving on http://HOST:PORT" to stderr, serves until
// SIGTERM or SIGINT, then shuts down with config.grace_seconds and returns 0. A second signal
// during the shutdown exits at once (128 + the signal).
int serve_until_signal(const ServingModel& model, const ServerConfig& config);

}  // namespace rlhf::serve
