#include "rlhf/serve/server.h"

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "rlhf/serve/engine.h"
#include "rlhf/serve/serving_model.h"
#include "rlhf/text/tokenizer.h"
#include "rlhf/text/utf8.h"
#include "rlhf/util/error.h"
#include "rlhf/util/http.h"

namespace rlhf::serve {
namespace {

using http::equal_constant_time;
using http::is_loopback;
using http::url_host;

using Clock = std::chrono::steady_clock;
using ms = std::chrono::milliseconds;
using ojson = nlohmann::ordered_json;
using HandlerResponse = httplib::Server::HandlerResponse;

constexpr const char* kJson = "application/json";
constexpr const char* kChatPath = "/v1/chat/completions";
constexpr const char* kCompletionsPath = "/v1/completions";
constexpr const char* kModelsPath = "/v1/models";
// A stream that has written nothing for this long writes an SSE comment: a client that went
// away is found out by the failed write, and proxies see the connection alive.
constexpr auto kPingInterval = ms(2000);
// After the engine has finished (or cut) every sequence, how long the responses may take to
// be written before the listener stops.
constexpr auto kWriteDrain = ms(10000);

// Text from a request, fit to quote in a message.
std::string shown(std::string_view s, size_t limit = 128) {
  std::string out = text::utf8::sanitize(s.substr(0, limit));
  if (s.size() > limit) out += "...";
  return out;
}

std::string dump(const ojson& j) { return j.dump(-1, ' ', false, ojson::error_handler_t::replace); }

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  if (e.status == 503) res.set_header("Retry-After", "1");
  res.set_content(error_json(e), kJson);
}

// The lowest-cost label for a path: the known endpoints, else "other" (paths are the
// client's to choose; labels must stay few).
std::string endpoint_label(const std::string& path) {
  for (const char* p : {kChatPath, kCompletionsPath, kModelsPath, "/health", "/metrics"})
    if (path == p) return p;
  if (path.starts_with("/v1/models/")) return "/v1/models/{id}";
  return "other";
}

struct Metrics {
  std::mutex mu;
  std::map<std::pair<std::string, int>, uint64_t> requests;  // (endpoint, status) -> count

  void count(const std::string& path, int status) {
    std::lock_guard<std::mutex> lock(mu);
    ++requests[{endpoint_label(path), status}];
  }

  std::string render(const EngineStats& s) {
    std::string out;
    out += "# HELP rlhf_requests_total HTTP requests answered, by endpoint and status code.\n";
    out += "# TYPE rlhf_requests_total counter\n";
    {
      std::lock_guard<std::mutex> lock(mu);
      for (const auto& [key, n] : requests)
        out += fmt::format("rlhf_requests_total{{endpoint=\"{}\",code=\"{}\"}} {}\n", key.first, key.second, n);
    }
    auto metric = [&](const char* name, const char* type, const char* help, auto value) {
      out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
    };
    metric("rlhf_prompt_tokens_total", "counter", "Prompt tokens read by prefill (a prompt of n choices counts n times).",
           s.prompt_tokens);
    metric("rlhf_generated_tokens_total", "counter", "Tokens generated.", s.generated_tokens);
    metric("rlhf_queue_length", "gauge", "Sequences waiting for a decode slot.", s.queued);
    metric("rlhf_running_sequences", "gauge", "Sequences in the decode batch.", s.running);
    const double occupancy = s.decode_steps && s.max_batch
                                 ? static_cast<double>(s.decode_rows) / static_cast<double>(s.decode_steps) /
                                       static_cast<double>(s.max_batch)
                                 : 0.0;
    metric("rlhf_batch_occupancy", "gauge", "Rows per decode step over max_batch, averaged over the steps since start.",
           occupancy);
    metric("rlhf_max_batch", "gauge", "Sequences decoded together at most.", s.max_batch);
    return out;
  }
};

// ---- stop strings -------------------------------------------------------------------------------

// Where the earliest stop string starts in `text`, or npos.
size_t find_stop(std::string_view text, const std::vector<std::string>& stops) {
  size_t best = std::string_view::npos;
  for (const auto& s : stops) best = std::min(best, text.find(s));
  return best;
}

// Length of the longest end of `text` that is the start (not the whole) of a stop string:
// text a stream must hold back until the next token says whether the stop string follows.
size_t stop_prefix_at_end(std::string_view text, const std::vector<std::string>& stops) {
  size_t held = 0;
  for (const auto& s : stops)
    for (size_t k = std::min(s.size() - 1, text.size()); k > held; --k)
      if (text.substr(text.size() - k) == std::string_view(s).substr(0, k)) {
        held = k;
        break;
      }
  return held;
}

// ---- one request ----------------------------------------------------------------------------------

enum class Kind { Chat, Completion };

// One choice as it is generated: the text decoded so far, what of it is released to the client.
struct ChoiceState {
  ChoiceState(const text::Tokenizer& tok, std::shared_ptr<SequenceStream> s, int64_t i)
      : stream(std::move(s)), index(i), decoder(tok, /*skip_special=*/true) {}
  std::shared_ptr<SequenceStream> stream;
  int64_t index;
  text::StreamDecoder decoder;
  std::string pending;                        // decoded, not released yet
  std::vector<TokenLogprob> pending_logprobs;  // of the tokens not released yet
  std::string text;                            // released (kept whole for a full response)
  std::vector<TokenLogprob> logprobs;          // released (full response)
  size_t released_bytes = 0;
  int64_t generated = 0;                       // tokens the model produced (a stop id included)
  std::optional<std::string> finish_reason;
  std::optional<std::string> error;
  bool role_sent = false;
  bool finish_sent = false;
  bool done() const { return finish_reason || error; }
};

struct Job {
  Kind kind = Kind::Chat;
  ResponseHeader header;
  SamplingRequest sampling;
  const text::Tokenizer* tokenizer = nullptr;
  std::vector<std::unique_ptr<ChoiceState>> choices;
  int64_t prompt_tokens = 0;  // once per prompt
  size_t next_wait = 0;       // round-robin start of the waits
  Clock::time_point last_write = Clock::now();

  bool done() const {
    return std::all_of(choices.begin(), choices.end(), [](const auto& c) { return c->done(); });
  }
  void cancel_all() {
    for (auto& c : choices)
      if (!c->done()) c->stream->cancel();
  }
  Usage usage() const {
    Usage u{prompt_tokens, 0};
    for (const auto& c : choices) u.completion_tokens += c->generated;
    return u;
  }
};

// Cuts c.pending before the first stop string, if one has appeared; true when it did.
bool cut_at_stop(ChoiceState& c, const std::vector<std::string>& stops) {
  if (stops.empty()) return false;
  const size_t at = find_stop(c.pending, stops);
  if (at == std::string::npos) return false;
  c.pending.resize(at);
  c.finish_reason = "stop";
  return true;
}

void absorb(Job& job, ChoiceState& c, const SequenceStream::Update& u) {
  if (c.done()) return;  // tokens after a stop string (its cancel lands at the next token)
  const auto& stops = job.sampling.stop;
  for (size_t k = 0; k < u.tokens.size(); ++k) {
    const TokenEvent& ev = u.tokens[k];
    ++c.generated;
    if (k + 1 == u.tokens.size() && u.finish == Finish::kStop) break;  // the stop id: counted, not shown
    if (job.sampling.logprobs) {
      TokenLogprob t{job.tokenizer->token_bytes(ev.token), ev.logprob, {}};
      for (const auto& [id, lp] : ev.top) t.top.emplace_back(job.tokenizer->token_bytes(id), lp);
      c.pending_logprobs.push_back(std::move(t));
    }
    c.pending += c.decoder.push(ev.token);
    if (cut_at_stop(c, stops)) {
      c.stream->cancel();
      return;
    }
  }
  if (!u.finish) return;
  c.pending += c.decoder.flush();
  if (cut_at_stop(c, stops)) return;
  switch (*u.finish) {
    case Finish::kStop:
    case Finish::kCancelled: c.finish_reason = "stop"; break;
    case Finish::kLength: c.finish_reason = "length"; break;
    case Finish::kError: c.error = u.error.empty() ? std::string("generation failed") : u.error; break;
  }
}

// What of c.pending may go to the client now: all of it once the choice is done, else all
// but an end that could begin a stop string (its tokens' logprobs wait with it).
std::pair<std::string, std::vector<TokenLogprob>> release(Job& job, ChoiceState& c) {
  const size_t held = c.done() ? 0 : stop_prefix_at_end(c.pending, job.sampling.stop);
  std::string out = c.pending.substr(0, c.pending.size() - held);
  c.pending.erase(0, out.size());
  std::vector<TokenLogprob> lps;
  if (held == 0) lps = std::exchange(c.pending_logprobs, {});
  c.released_bytes += out.size();
  return {std::move(out), std::move(lps)};
}

// Waits up to `timeout` for any choice to move and absorbs what arrived; true if anything did.
bool pump(Job& job, ms timeout) {
  std::vector<ChoiceState*> open;
  for (auto& c : job.choices)
    if (!c->done()) open.push_back(c.get());
  if (open.empty()) return false;
  bool moved = false;
  const size_t start = job.next_wait++ % open.size();
  // One pass without waiting, then a wait on one of them (taking turns) when nothing came.
  for (size_t k = 0; k < open.size(); ++k) {
    ChoiceState& c = *open[(start + k) % open.size()];
    SequenceStream::Update u = c.stream->wait(open.size() == 1 ? timeout : ms(0));
    if (!u.tokens.empty() || u.finish) {
      absorb(job, c, u);
      moved = true;
    }
  }
  if (!moved && open.size() > 1) {
    ChoiceState& c = *open[start];
    SequenceStream::Update u = c.stream->wait(std::min(timeout, ms(20)));
    if (!u.tokens.empty() || u.finish) {
      absorb(job, c, u);
      moved = true;
    }
  }
  return moved;
}

}  // namespace

void check_server_config(const ServerConfig& c) {
  if (c.host.empty()) fail("--host is empty");
  if (c.port < 0 || c.port > 65535) fail("--port must be in [0, 65535] (got {})", c.port);
  if (!is_loopback(c.host) && c.api_key.empty() && !c.insecure_no_auth)
    fail("--host {} accepts connections from other machines: give --api-key (or RLHF_API_KEY), or pass "
         "--insecure-no-auth to serve anyone who can reach it",
         c.host);
  if (c.max_queue < 1) fail("--max-queue must be at least 1 (got {})", c.max_queue);
  if (c.max_batch < 1) fail("--max-batch must be at least 1 (got {})", c.max_batch);
  if (!(c.grace_seconds >= 0)) fail("--grace-seconds must not be negative (got {})", c.grace_seconds);
  if (c.limits.max_body_bytes < 1024) fail("--max-body-bytes must be at least 1024 (got {})", c.limits.max_body_bytes);
  if (c.limits.max_tokens < 1) fail("--max-tokens-limit must be at least 1 (got {})", c.limits.max_tokens);
  if (c.limits.max_messages < 1) fail("--max-messages must be at least 1 (got {})", c.limits.max_messages);
  if (c.limits.max_n < 1) fail("--max-n must be at least 1 (got {})", c.limits.max_n);
}

struct Server::Impl {
  const ServingModel& model;
  ServerConfig config;
  Engine engine;
  httplib::Server http;
  Metrics metrics;
  int64_t created = static_cast<int64_t>(std::time(nullptr));
  std::atomic<bool> draining{false};
  http::Listener listener;

  std::mutex active_mu;
  std::condition_variable active_cv;
  int64_t active = 0;  // requests past admission whose response is not written yet

  std::mutex rng_mu;
  std::mt19937_64 rng{std::random_device{}()};

  std::mutex shutdown_mu;
  bool shut_down = false;

  static EngineOptions engine_options(const ServingModel& m, const ServerConfig& c) {
    EngineOptions o;
    o.max_batch = c.max_batch;
    o.max_queue = c.max_queue;
    o.pad_id = m.pad_id();
    o.group_by_adapter = c.group_by_adapter;
    return o;
  }

  Impl(const ServingModel& m, const ServerConfig& c)
      : model(m), config((check_server_config(c), c)), engine(m.net(), engine_options(m, c)) {
    const size_t threads = config.http_threads ? config.http_threads
                                               : std::max<size_t>(80, static_cast<size_t>(config.max_batch) + 16);
    http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    http.set_payload_max_length(config.limits.max_body_bytes);
    http.set_keep_alive_max_count(1000);
    http.set_tcp_nodelay(true);
    listener.watch(http);
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      return pre_route(req, res);
    });
    http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      const int s = res.status;
      const std::string msg = s == 404   ? fmt::format("unknown route: {} {}", shown(req.method, 16), shown(req.path))
                              : s == 413 ? std::string("the request body is over the size limit")
                              : s == 400 ? std::string("the request could not be read")
                                         : fmt::format("HTTP {}", s);
      res.set_content(error_json(ApiError(s, msg, "", s == 404 ? "unknown_route" : "")), kJson);
    });
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      send_error(res, ApiError(500, http::internal_error(ep)));
    });
    http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      metrics.count(req.path, res.status);
    });

    http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      if (draining) {
        res.status = 503;
        res.set_content(R"({"status":"shutting_down"})", kJson);
        return;
      }
      res.set_content(R"({"status":"ok"})", kJson);
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics.render(engine.stats()), "text/plain; version=0.0.4");
    });
    http.Get(kModelsPath, [this](const httplib::Request&, httplib::Response& res) {
      ojson data = ojson::array();
      for (const auto& m : model.models()) data.push_back(model_json(m));
      res.set_content(dump(ojson{{"object", "list"}, {"data", data}}), kJson);
    });
    http.Post(kChatPath, [this](const httplib::Request& req, httplib::Response& res) { handle(Kind::Chat, req, res); });
    http.Post(kCompletionsPath,
              [this](const httplib::Request& req, httplib::Response& res) { handle(Kind::Completion, req, res); });
  }

  ojson model_json(const ServedModel& m) const {
    return {{"id", m.id},
            {"object", "model"},
            {"created", created},
            {"owned_by", "rlhf"},
            {"parent", m.parent.empty() ? ojson(nullptr) : ojson(m.parent)},
            {"root", model.base().id}};
  }

  HandlerResponse pre_route(const httplib::Request& req, httplib::Response& res) {
    if (req.path == "/health") return HandlerResponse::Unhandled;
    if (!config.api_key.empty()) {
      const std::string auth = req.get_header_value("Authorization");
      const std::string_view prefix = "Bearer ";
      const bool ok = auth.size() > prefix.size() && std::string_view(auth).substr(0, prefix.size()) == prefix &&
                      equal_constant_time(std::string_view(auth).substr(prefix.size()), config.api_key);
      if (!ok) {
        send_error(res, ApiError(401,
                                 auth.empty() ? "no API key: send the header 'Authorization: Bearer KEY'"
                                              : "the API key is not valid",
                                 "", "invalid_api_key"));
        return HandlerResponse::Handled;
      }
    }
    if (req.has_header("Content-Length")) {
      const std::string v = req.get_header_value("Content-Length");
      uint64_t n = 0;
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
      if (ec == std::errc::result_out_of_range || (ec == std::errc() && n > config.limits.max_body_bytes)) {
        // The body stays unread: the connection cannot carry another request.
        res.set_header("Connection", "close");
        send_error(res, ApiError(413,
                                 fmt::format("the request body is {} bytes; the limit is {} bytes", v,
                                             config.limits.max_body_bytes),
                                 "", "request_too_large"));
        return HandlerResponse::Handled;
      }
    }
    if (draining && req.path != "/metrics") {
      res.set_header("Connection", "close");
      send_error(res, ApiError(503, "the server is shutting down", "", "shutting_down"));
      return HandlerResponse::Handled;
    }
    if (req.method == "GET" && req.path.starts_with("/v1/models/")) {
      const std::string id = req.path.substr(std::string_view("/v1/models/").size());
      if (const ServedModel* m = model.find(id)) {
        res.set_content(dump(model_json(*m)), kJson);
      } else {
        send_error(res, ApiError(404, fmt::format("the model '{}' does not exist", shown(id)), "model",
                                 "model_not_found"));
      }
      return HandlerResponse::Handled;
    }
    return HandlerResponse::Unhandled;
  }

  // ---- requests --------------------------------------------------------------------------------

  struct Active {
    Impl* impl;
    explicit Active(Impl* i) : impl(i) {
      std::lock_guard<std::mutex> lock(impl->active_mu);
      ++impl->active;
    }
    ~Active() {
      std::lock_guard<std::mutex> lock(impl->active_mu);
      --impl->active;
      impl->active_cv.notify_all();
    }
  };

  std::string random_id(const char* prefix) {
    std::lock_guard<std::mutex> lock(rng_mu);
    return fmt::format("{}{:016x}{:08x}", prefix, rng(), static_cast<uint32_t>(rng()));
  }

  uint64_t random_seed() {
    std::lock_guard<std::mutex> lock(rng_mu);
    return rng();
  }

  const ServedModel& find_model(const std::string& name) const {
    const ServedModel* m = model.find(name);
    if (!m)
      throw ApiError(404, fmt::format("the model '{}' does not exist; GET /v1/models lists the models served", shown(name)),
                     "model", "model_not_found");
    return *m;
  }

  // Parses the request, encodes its prompts, checks them against the context and queues
  // its sequences. Throws ApiError.
  std::shared_ptr<Job> start(Kind kind, const std::string& body) {
    auto job = std::make_shared<Job>();
    job->kind = kind;
    job->tokenizer = &model.tokenizer();
    std::vector<std::vector<int32_t>> prompts;
    const ServedModel* served = nullptr;
    std::string prompt_param;
    if (kind == Kind::Chat) {
      ChatRequest r = parse_chat_request(body, config.limits);
      served = &find_model(r.model);
      job->sampling = std::move(r.sampling);
      std::vector<text::ChatMessage> messages;
      for (auto& m : r.messages) messages.push_back({std::move(m.role), std::move(m.content)});
      try {
        prompts.push_back(model.encode_chat(messages));
      } catch (const Error& e) {
        throw ApiError(400, e.what(), "messages");
      }
      prompt_param = "messages";
    } else {
      CompletionRequest r = parse_completion_request(body, config.limits);
      served = &find_model(r.model);
      job->sampling = std::move(r.sampling);
      for (const auto& p : r.prompts) prompts.push_back(model.encode_text(p));
      prompt_param = "prompt";
    }
    const SamplingRequest& s = job->sampling;
    const int64_t context = model.context();
    std::vector<int64_t> max_new(prompts.size());
    for (size_t p = 0; p < prompts.size(); ++p) {
      const auto P = static_cast<int64_t>(prompts[p].size());
      const std::string which = prompts.size() > 1 ? fmt::format("prompt {} ", p) : std::string("the prompt ");
      if (P == 0) throw ApiError(400, which + "is empty: it encodes to no tokens", prompt_param);
      if (s.max_tokens) {
        if (P + *s.max_tokens > context)
          throw ApiError(400,
                         fmt::format("{}({} tokens) plus max_tokens ({}) is {} tokens; the model's context is {}", which,
                                     P, *s.max_tokens, P + *s.max_tokens, context),
                         prompt_param, "context_length_exceeded");
        max_new[p] = *s.max_tokens;
      } else {
        if (P >= context)
          throw ApiError(400,
                         fmt::format("{}is {} tokens, with no room for a completion; the model's context is {}", which,
                                     P, context),
                         prompt_param, "context_length_exceeded");
        max_new[p] = std::min(config.limits.max_tokens, context - P);
      }
      job->prompt_tokens += P;
    }
    // More sequences than the batch and the queue hold together could never be admitted.
    const int64_t total = static_cast<int64_t>(prompts.size()) * s.n;
    if (total > config.max_queue + config.max_batch)
      throw ApiError(400,
                     fmt::format("the request asks for {} completions; the server holds at most {} at once", total,
                                 config.max_queue + config.max_batch),
                     "n");
    const uint64_t seed = s.seed ? *s.seed : random_seed();
    std::vector<SequenceRequest> requests;
    for (size_t p = 0; p < prompts.size(); ++p)
      for (int64_t i = 0; i < s.n; ++i) {
        SequenceRequest q;
        q.prompt = prompts[p];
        q.adapter = served->adapter;
        q.stop_ids = served->stop_ids;
        q.temperature = s.temperature;
        q.top_p = s.top_p;
        q.seed = seed + static_cast<uint64_t>(requests.size());
        q.max_new_tokens = max_new[p];
        q.top_logprobs = s.logprobs ? s.top_logprobs : 0;
        requests.push_back(std::move(q));
      }
    std::vector<std::shared_ptr<SequenceStream>> streams;
    try {
      streams = engine.submit(std::move(requests));
    } catch (const QueueFull&) {
      throw ApiError(503,
                     draining ? std::string("the server is shutting down")
                              : fmt::format("the server is busy ({} sequences wait already); retry later",
                                            config.max_queue),
                     "", draining ? "shutting_down" : "queue_full");
    } catch (const Error& e) {
      throw ApiError(400, e.what(), prompt_param);
    }
    for (size_t k = 0; k < streams.size(); ++k)
      job->choices.push_back(std::make_unique<ChoiceState>(model.tokenizer(), streams[k], static_cast<int64_t>(k)));
    job->header = {random_id(kind == Kind::Chat ? "chatcmpl-" : "cmpl-"), static_cast<int64_t>(std::time(nullptr)),
                   served->id};
    return job;
  }

  void handle(Kind kind, const httplib::Request& req, httplib::Response& res) {
    auto active = std::make_shared<Active>(this);
    std::shared_ptr<Job> job;
    try {
      job = start(kind, req.body);
    } catch (const ApiError& e) {
      send_error(res, e);
      return;
    }
    if (job->sampling.stream) {
      stream_response(job, active, res);
      return;
    }
    try {
      while (!job->done()) pump(*job, ms(200));
    } catch (...) {
      job->cancel_all();
      throw;
    }
    std::vector<Choice> choices;
    for (auto& c : job->choices) {
      if (c->error) {
        job->cancel_all();
        send_error(res, draining ? ApiError(503, "the server shut down before the completion finished: " + *c->error, "",
                                            "shutting_down")
                                 : ApiError(500, *c->error));
        return;
      }
      auto [text, lps] = release(*job, *c);
      c->text += text;
      Choice out{c->index, std::move(c->text), *c->finish_reason, std::nullopt};
      if (job->sampling.logprobs) {
        c->logprobs.insert(c->logprobs.end(), lps.begin(), lps.end());
        out.logprobs = std::move(c->logprobs);
      }
      choices.push_back(std::move(out));
    }
    res.set_content(kind == Kind::Chat ? chat_completion_json(job->header, choices, job->usage())
                                       : text_completion_json(job->header, choices, job->usage()),
                    kJson);
  }

  // ---- streams -----------------------------------------------------------------------------------

  static std::string chunk(const Job& job, const ChunkPiece& p) {
    return sse_event(job.kind == Kind::Chat ? chat_chunk_json(job.header, p) : completion_chunk_json(job.header, p));
  }

  // Writes what the choices have released (their last chunks once done); false when the
  // client is gone.
  static bool write_progress(Job& job, httplib::DataSink& sink) {
    std::string out;
    for (auto& c : job.choices) {
      if (c->finish_sent) continue;
      if (job.kind == Kind::Chat && !c->role_sent) {
        ChunkPiece p;
        p.index = c->index;
        p.role = "assistant";
        out += chunk(job, p);
        c->role_sent = true;
      }
      if (c->error) continue;
      const size_t offset = c->released_bytes;
      auto [text, lps] = release(job, *c);
      const bool finished = c->done();
      if (!text.empty() || !lps.empty() || (finished && job.kind == Kind::Completion)) {
        ChunkPiece p;
        p.index = c->index;
        p.text = std::move(text);
        p.text_offset = offset;
        if (job.sampling.logprobs) p.logprobs = std::move(lps);
        if (finished && job.kind == Kind::Completion) {
          p.finish_reason = c->finish_reason;
          c->finish_sent = true;
        }
        out += chunk(job, p);
      }
      if (finished && !c->finish_sent) {
        ChunkPiece p;
        p.index = c->index;
        p.finish_reason = c->finish_reason;
        out += chunk(job, p);
        c->finish_sent = true;
      }
    }
    if (out.empty()) return true;
    job.last_write = Clock::now();
    return sink.write(out.data(), out.size());
  }

  void stream_response(std::shared_ptr<Job> job, std::shared_ptr<Active> active, httplib::Response& res) {
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [job](size_t, httplib::DataSink& sink) {
          if (!sink.is_writable()) {
            job->cancel_all();
            return false;
          }
          pump(*job, ms(100));
          if (!write_progress(*job, sink)) {
            job->cancel_all();
            return false;
          }
          for (const auto& c : job->choices)
            if (c->error) {
              job->cancel_all();
              const std::string e = sse_event(error_json(ApiError(500, *c->error)));
              sink.write(e.data(), e.size());
              sink.write(kSseDone.data(), kSseDone.size());
              sink.done();
              return true;
            }
          if (job->done()) {
            std::string tail;
            if (job->sampling.include_usage) tail += sse_event(usage_chunk_json(job->header, job->kind == Kind::Chat, job->usage()));
            tail += kSseDone;
            if (!sink.write(tail.data(), tail.size())) return false;
            sink.done();
            return true;
          }
          if (Clock::now() - job->last_write > kPingInterval) {
            job->last_write = Clock::now();
            constexpr std::string_view ping = ": ping\n\n";
            if (!sink.write(ping.data(), ping.size())) {
              job->cancel_all();
              return false;
            }
          }
          return true;
        },
        // Whatever ended the response (done, the client gone, the server stopping), nothing of
        // it keeps running.
        [job, active](bool) { job->cancel_all(); });
  }

  // ---- shutdown -----------------------------------------------------------------------------------

  void shutdown(ms grace) {
    std::lock_guard<std::mutex> lock(shutdown_mu);
    if (shut_down) return;
    shut_down = true;
    draining = true;
    engine.shutdown(grace);
    {
      std::unique_lock<std::mutex> a(active_mu);
      active_cv.wait_for(a, kWriteDrain, [&] { return active == 0; });
    }
    http.stop();
  }
};

Server::Server(const ServingModel& model, const ServerConfig& config) : impl_(std::make_unique<Impl>(model, config)) {}

Server::~Server() { shutdown(ms(0)); }

int Server::bind() { return impl_->listener.bind(impl_->http, impl_->config.host, impl_->config.port); }

void Server::run() {
  if (!impl_->http.listen_after_bind() && !impl_->draining) fail("the server stopped accepting connections");
}

void Server::shutdown(std::chrono::milliseconds grace) { impl_->shutdown(grace); }

int serve_until_signal(const ServingModel& model, const ServerConfig& config) {
  Server server(model, config);
  const int port = server.bind();
  std::string names;
  for (const auto& m : model.models()) names += (names.empty() ? "" : ", ") + m.id;
  std::fprintf(stderr, "[rlhf] serve: models %s; %s on %s; up to %lld sequences per batch, %lld waiting%s\n",
               names.c_str(), model.dtype_name().c_str(), model.device_name().c_str(),
               static_cast<long long>(config.max_batch), static_cast<long long>(config.max_queue),
               config.api_key.empty() ? "; no API key" : "; API key required");
  std::fprintf(stderr, "[rlhf] serving on http://%s:%d\n", url_host(config.host).c_str(), port);
  std::fflush(stderr);
  http::run_until_signal([&] { server.run(); },
                         [&](int sig) {
                           std::fprintf(stderr,
                                        "[rlhf] %s: finishing the requests in flight (up to %g s), then exiting\n",
                                        http::signal_name(sig).c_str(), config.grace_seconds);
                           server.shutdown(ms(static_cast<int64_t>(config.grace_seconds * 1000)));
                         });
  std::fprintf(stderr, "[rlhf] stopped\n");
  return 0;
}

}  // namespace rlhf::serve
