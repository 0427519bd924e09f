#include "rlhf/annotate/server.h"

#include <httplib.h>

#include <charconv>
#include <cstdio>
#include <optional>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "rlhf/annotate/page.h"
#include "rlhf/annotate/session.h"
#include "rlhf/text/utf8.h"
#include "rlhf/util/error.h"
#include "rlhf/util/http.h"

namespace rlhf::annotate {
namespace {

using json = nlohmann::json;
using HandlerResponse = httplib::Server::HandlerResponse;
constexpr const char* kJson = "application/json";
constexpr const char* kPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_error(httplib::Response& res, int status, const std::string& message, const std::string& field = "",
                const json* state = nullptr) {
  res.status = status;
  json body = {{"error", {{"message", message}, {"field", field.empty() ? json(nullptr) : json(field)}}}};
  if (state) body["state"] = *state;
  res.set_content(dump(body), kJson);
}

// Text from a request, fit to quote in a message.
std::string shown(std::string_view s, size_t limit = 64) {
  std::string out = text::utf8::sanitize(s.substr(0, limit));
  if (s.size() > limit) out += "...";
  return out;
}

}  // namespace

struct Server::Impl {
  Session& session;
  ServerConfig config;
  httplib::Server http;
  http::Listener listener;

  Impl(Session& s, const ServerConfig& c) : session(s), config(c) {
    http.new_task_queue = [] { return new httplib::ThreadPool(16); };
    http.set_payload_max_length(config.max_body_bytes);
    listener.watch(http);
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      return pre_route(req, res);
    });
    http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      const int s = res.status;
      send_error(res, s,
                 s == 404   ? fmt::format("no such page: {} {}", shown(req.method, 16), shown(req.path))
                 : s == 413 ? std::string("the request body is over the size limit")
                 : s == 405 ? std::string("method not allowed")
                            : fmt::format("HTTP {}", s));
    });
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      const std::string what = http::internal_error(ep);
      std::fprintf(stderr, "[rlhf] %s\n", what.c_str());
      send_error(res, 500, what);
    });

    auto page = [](std::string_view body, const char* type) {
      return [body, type](const httplib::Request&, httplib::Response& res) {
        res.set_content(std::string(body), type);
      };
    };
    http.Get("/", page(annotator_page_html(), "text/html; charset=utf-8"));
    http.Get("/admin", page(admin_page_html(), "text/html; charset=utf-8"));
    http.Get("/static/annotate.js", page(page_script(), "text/javascript; charset=utf-8"));
    http.Get("/static/annotate.css", page(page_style(), "text/css; charset=utf-8"));
    http.Get("/health", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"status":"ok"})", kJson);
    });
    http.Get("/api/me", [this](const httplib::Request& req, httplib::Response& res) {
      if (auto who = annotator(req, res)) res.set_content(dump(session.state(*who)), kJson);
    });
    http.Post("/api/label", [this](const httplib::Request& req, httplib::Response& res) { label(req, res); });
    http.Post("/api/undo", [this](const httplib::Request& req, httplib::Response& res) {
      auto who = annotator(req, res);
      if (!who || !json_body(req, res, {})) return;
      std::optional<Refusal> refusal;
      const json state = session.undo(*who, refusal);
      if (refusal) return send_error(res, refusal->status, refusal->message, refusal->field, &state);
      res.set_content(dump(state), kJson);
    });
    http.Get("/api/admin", [this](const httplib::Request& req, httplib::Response& res) {
      const std::string auth = req.get_header_value("Authorization");  // the token views into it
      const std::string_view token = http::bearer_token(auth);
      if (!session.is_admin(token)) {
        if (session.annotator_of(token)) return send_error(res, 403, "the admin data needs the admin token");
        return send_error(res, 401, "no admin token: open the admin link (…/admin#token=…)");
      }
      res.set_content(dump(session.admin()), kJson);
    });
  }

  HandlerResponse pre_route(const httplib::Request& req, httplib::Response& res) {
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("Cache-Control", "no-store");
    res.set_header("Referrer-Policy", "no-referrer");
    res.set_header("X-Frame-Options", "DENY");
    res.set_header("Content-Security-Policy", kPolicy);
    if (req.has_header("Content-Length")) {
      const std::string v = req.get_header_value("Content-Length");
      uint64_t n = 0;
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
      if (ec == std::errc::result_out_of_range || (ec == std::errc() && n > config.max_body_bytes)) {
        res.set_header("Connection", "close");  // the body stays unread
        send_error(res, 413, fmt::format("the request body is {} bytes; the limit is {}", shown(v, 24),
                                         config.max_body_bytes));
        return HandlerResponse::Handled;
      }
    }
    if (req.method != "GET" && req.method != "HEAD") {
      // A page of another site may post here (a form, fetch without CORS): the browser says so.
      const std::string origin = req.get_header_value("Origin");
      const std::string host = req.get_header_value("Host");
      if ((!origin.empty() && origin != "http://" + host) || req.get_header_value("Sec-Fetch-Site") == "cross-site") {
        send_error(res, 403, fmt::format("a request from another site ({}) is refused", shown(origin)));
        return HandlerResponse::Handled;
      }
      const std::string type = req.get_header_value("Content-Type");
      if (!(type == kJson || type.starts_with("application/json;"))) {
        send_error(res, 415, "the body must be JSON (Content-Type: application/json)");
        return HandlerResponse::Handled;
      }
    }
    return HandlerResponse::Unhandled;
  }

  // The annotator whose token the request carries; otherwise answers 401 and returns nullopt.
  std::optional<std::string> annotator(const httplib::Request& req, httplib::Response& res) {
    const std::string auth = req.get_header_value("Authorization");
    const std::string_view token = http::bearer_token(auth);
    if (token.empty()) {
      send_error(res, 401, "no token: open your own link (it ends with #token=...)");
      return std::nullopt;
    }
    auto who = session.annotator_of(token);
    if (!who) send_error(res, 401, "the token is not one of this session's");
    return who;
  }

  // The body as a JSON object whose fields are all in `allowed`; otherwise answers 400.
  std::optional<json> json_body(const httplib::Request& req, httplib::Response& res,
                                const std::set<std::string>& allowed) {
    json body;
    try {
      body = req.body.empty() ? json::object() : json::parse(req.body);
    } catch (const json::exception&) {
      send_error(res, 400, "the body is not valid JSON");
      return std::nullopt;
    }
    if (!body.is_object()) {
      send_error(res, 400, "the body must be a JSON object");
      return std::nullopt;
    }
    for (const auto& [key, value] : body.items())
      if (!allowed.count(key)) {
        send_error(res, 400, fmt::format("unknown field '{}'", shown(key)), shown(key));
        return std::nullopt;
      }
    return body;
  }

  void label(const httplib::Request& req, httplib::Response& res) {
    auto who = annotator(req, res);
    if (!who) return;
    auto body = json_body(req, res, {"item", "choice", "rationale", "seconds"});
    if (!body) return;
    const json& b = *body;
    for (const char* f : {"item", "choice"}) {
      if (!b.contains(f)) return send_error(res, 400, fmt::format("field '{}' is missing", f), f);
      if (!b[f].is_string()) return send_error(res, 400, fmt::format("field '{}' must be a string", f), f);
    }
    if (b.contains("rationale") && !b["rationale"].is_string())
      return send_error(res, 400, "field 'rationale' must be a string", "rationale");
    if (b.contains("seconds") && !b["seconds"].is_number())
      return send_error(res, 400, "field 'seconds' must be a number", "seconds");
    std::optional<Refusal> refusal;
    const json state = session.label(*who, b["item"].get<std::string>(), b["choice"].get<std::string>(),
                                     b.value("rationale", ""), b.value("seconds", 0.0), refusal);
    if (refusal) return send_error(res, refusal->status, refusal->message, refusal->field, &state);
    res.set_content(dump(state), kJson);
  }
};

Server::Server(Session& session, const ServerConfig& config) : impl_(std::make_unique<Impl>(session, config)) {
  if (config.host.empty()) fail("--host is empty");
  if (config.port < 0 || config.port > 65535) fail("--port must be in [0, 65535] (got {})", config.port);
}

Server::~Server() { stop(); }

int Server::bind() { return impl_->listener.bind(impl_->http, impl_->config.host, impl_->config.port); }

void Server::run() { impl_->http.listen_after_bind(); }

void Server::stop() { impl_->http.stop(); }

int annotate_until_signal(Session& session, const ServerConfig& config) {
  Server server(session, config);
  const int port = server.bind();
  const std::string base = fmt::format("http://{}:{}", http::url_host(config.host), port);
  const auto tokens = session.annotator_tokens();
  std::fprintf(stderr, "[rlhf] annotate: %zu items, %zu annotators, %lld label%s per item; %zu labels so far\n",
               session.items(), tokens.size(), static_cast<long long>(session.per_item()),
               session.per_item() == 1 ? "" : "s", session.labels_kept());
  for (const auto& w : session.warnings()) std::fprintf(stderr, "[rlhf] warning: %s\n", w.c_str());
  if (!http::is_loopback(config.host))
    std::fprintf(stderr, "[rlhf] %s accepts connections from other machines: share each link with its annotator only\n",
                 config.host.c_str());
  for (const auto& [name, token] : tokens)
    std::fprintf(stderr, "[rlhf] %s: %s/#token=%s   (%zu items)\n", name.c_str(), base.c_str(), token.c_str(),
                 session.assigned(name));
  std::fprintf(stderr, "[rlhf] admin: %s/admin#token=%s\n", base.c_str(), session.admin_token().c_str());
  std::fprintf(stderr, "[rlhf] annotating on %s\n", base.c_str());
  std::fflush(stderr);
  http::run_until_signal([&] { server.run(); },
                         [&](int sig) {
                           std::fprintf(stderr, "[rlhf] %s: stopping (every answer is already on disk)\n",
                                        http::signal_name(sig).c_str());
                           server.stop();
                         });
  std::fprintf(stderr, "[rlhf] stopped\n");
  return 0;
}

}  // namespace rlhf::annotate
