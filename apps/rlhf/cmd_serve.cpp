// rlhf serve: an OpenAI-compatible HTTP server over a base model and its LoRA adapters,
// with continuous batching (docs/serve.md).
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "rlhf/model/model.h"
#include "rlhf/serve/server.h"
#include "rlhf/serve/serving_model.h"

namespace rlhf::cli {
namespace {

struct ServeFlags {
  CommonFlags common;
  std::vector<std::string> adapters;
  serve::ServerConfig config;
  CLI::Option* api_key = nullptr;
  CLI::Option* model = nullptr;
};

int run_serve(ServeFlags& f) {
  serve::ServerConfig& c = f.config;
  if (f.api_key->count() == 0)
    if (const char* env = std::getenv("RLHF_API_KEY")) c.api_key = env;
  serve::check_server_config(c);  // before the model loads: a refused host fails at once
  serve::ServingModelOptions o;
  // With adapters and no --model, the first adapter's recorded base.
  o.model = (!f.adapters.empty() && f.model->count() == 0) ? std::string() : f.common.model;
  o.dtype = f.common.dtype;
  o.device = f.common.device;
  for (const auto& a : f.adapters) o.adapters.push_back(serve::parse_adapter_spec(a));
  apply_threads(f.common.threads);
  auto model = serve::ServingModel::load(o);
  return serve::serve_until_signal(*model, c);
}

}  // namespace

Command add_serve(CLI::App& app) {
  auto f = std::make_shared<ServeFlags>();
  serve::ServerConfig& c = f->config;
  auto* s = app.add_subcommand("serve", "serve a model and its adapters over an OpenAI-compatible HTTP API");
  add_common(s, f->common);
  f->model = s->get_option("--model");
  s->add_option("--adapter", f->adapters,
                "NAME=DIR: serve the LoRA adapter in DIR (train-policy, train-dpo or peft folder) as model NAME "
                "(repeat for more; without --model, the base is the first adapter's)");
  s->add_option("--host", c.host, "address to listen on (other than loopback: needs --api-key or --insecure-no-auth)")
      ->capture_default_str();
  s->add_option("--port", c.port, "port (0 = a free one; the line '[rlhf] serving on ...' says which)")
      ->capture_default_str()
      ->check(whole_in(0, 65535));
  f->api_key = s->add_option("--api-key", c.api_key,
                             "clients must send 'Authorization: Bearer KEY' (default: RLHF_API_KEY, else none)");
  s->add_flag("--insecure-no-auth", c.insecure_no_auth, "serve a non-loopback --host without an API key");
  s->add_option("--max-queue", c.max_queue, "sequences waiting for a decode slot; more are answered 503")
      ->capture_default_str()
      ->check(whole_in(1, 1 << 20));
  s->add_option("--max-batch", c.max_batch, "sequences decoded together")->capture_default_str()->check(whole_in(1, 4096));
  s->add_option("--grace-seconds", c.grace_seconds,
                "on SIGTERM/SIGINT: how long requests in flight may take to finish")
      ->capture_default_str()
      ->check(real_in(0.0, 86400.0));
  s->add_flag("--group-by-adapter", c.group_by_adapter,
              "each decode step runs the rows of one adapter (default: one batch mixes adapters)");
  s->add_option("--max-body-bytes", c.limits.max_body_bytes, "largest request body; larger ones get 413")
      ->capture_default_str()
      ->check(whole_in(1024, int64_t(1) << 32));
  s->add_option("--max-tokens-limit", c.limits.max_tokens, "largest max_tokens a request may ask for")
      ->capture_default_str()
      ->check(whole_in(1, 1 << 24));
  s->add_option("--max-messages", c.limits.max_messages, "most messages in a chat request")
      ->capture_default_str()
      ->check(whole_in(1, 1 << 20));
  s->add_option("--max-n", c.limits.max_n, "most choices (n) in a request")->capture_default_str()->check(whole_in(1, 1024));
  return {s, [f] { return run_serve(*f); }};
}

}  // namespace rlhf::cli
