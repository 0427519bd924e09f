// The server's request parsing: the bytes as the body of /v1/chat/completions and of
// /v1/completions, under the default limits and under tight ones. A refusal is an
// serve::ApiError with a 4xx status whose error JSON can be written; a request that parses
// holds only what the limits allow.
#include <cstdint>
#include <string_view>

#include "fuzz_input.h"
#include "rlhf/serve/api.h"
#include "rlhf/util/error.h"

namespace {

void refused(const rlhf::serve::ApiError& e) {
  rlhf::fuzz::check(e.status >= 400 && e.status < 500, "a refused request is a 4xx");
  rlhf::fuzz::check(!e.type.empty(), "an error has a type");
  (void)rlhf::serve::error_json(e);
}

void check_sampling(const rlhf::serve::SamplingRequest& s, const rlhf::serve::RequestLimits& limits) {
  rlhf::fuzz::check(!s.max_tokens || (*s.max_tokens >= 0 && *s.max_tokens <= limits.max_tokens), "max_tokens in range");
  rlhf::fuzz::check(s.n >= 1 && s.n <= limits.max_n, "n in range");
  rlhf::fuzz::check(s.stop.size() <= limits.max_stop, "stop count in range");
  for (const auto& stop : s.stop) rlhf::fuzz::check(!stop.empty(), "no empty stop string");
  rlhf::fuzz::check(s.top_logprobs >= 0 && s.top_logprobs <= limits.max_top_logprobs, "top_logprobs in range");
}

void parse(std::string_view body, const rlhf::serve::RequestLimits& limits) {
  try {
    const rlhf::serve::ChatRequest r = rlhf::serve::parse_chat_request(body, limits);
    rlhf::fuzz::check(!r.messages.empty() && r.messages.size() <= limits.max_messages, "message count in range");
    for (const auto& m : r.messages)
      rlhf::fuzz::check(m.role == "system" || m.role == "user" || m.role == "assistant", "a known role");
    check_sampling(r.sampling, limits);
  } catch (const rlhf::serve::ApiError& e) {
    refused(e);
  }
  try {
    const rlhf::serve::CompletionRequest r = rlhf::serve::parse_completion_request(body, limits);
    rlhf::fuzz::check(!r.prompts.empty() && r.prompts.size() <= limits.max_prompts, "prompt count in range");
    check_sampling(r.sampling, limits);
  } catch (const rlhf::serve::ApiError& e) {
    refused(e);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  parse(body, rlhf::serve::RequestLimits{});
  rlhf::serve::RequestLimits tight;
  tight.max_body_bytes = 512;
  tight.max_tokens = 16;
  tight.max_messages = 2;
  tight.max_n = 2;
  tight.max_stop = 1;
  tight.max_top_logprobs = 2;
  tight.max_prompts = 2;
  parse(body, tight);
  return 0;
}
