// The OpenAI-compatible API of `rlhf serve`, without the HTTP: request bodies of
// /v1/chat/completions and /v1/completions parsed and checked into plain structs, and the
// JSON of responses, stream chunks and errors in OpenAI's shapes. Torch-free.
//
// Parsing follows OpenAI: fields it does not know are ignored; a field with a wrong type or
// out of range is a 400 whose `param` names the field ("max_tokens", "messages[2].role").
// Fields that would change the result in a way this server does not do (echo, suffix,
// penalties, logit_bias, token-id prompts) are refused with 400 rather than ignored.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rlhf::serve {

// What the server answers for a request it does not serve: the HTTP status and OpenAI's
// error fields. `type` defaults from the status (invalid_request_error for 4xx,
// authentication_error for 401, overloaded for 503, server_error for 5xx).
struct ApiError : std::runtime_error {
  int status;
  std::string type, param, code;
  ApiError(int status, std::string message, std::string param = "", std::string code = "", std::string type = "");
};

struct RequestLimits {
  size_t max_body_bytes = 1 << 20;
  int64_t max_tokens = 4096;     // max_tokens / max_completion_tokens at most
  size_t max_messages = 256;
  int64_t max_n = 16;
  size_t max_stop = 4;
  int32_t max_top_logprobs = 20;
  size_t max_prompts = 64;       // prompts of one /v1/completions request
};

struct ChatMessage {
  std::string role, content;  // role: system | user | assistant ("developer" reads as system)
};

struct SamplingRequest {
  std::optional<int64_t> max_tokens;  // max_tokens or max_completion_tokens (the latter wins)
  double temperature = 1.0, top_p = 1.0;
  std::optional<uint64_t> seed;       // a negative seed is taken modulo 2^64
  std::vector<std::string> stop;      // string or list in the request; none empty
  int64_t n = 1;
  bool logprobs = false;
  int32_t top_logprobs = 0;           // chat: logprobs bool + top_logprobs; completions: logprobs int
  bool stream = false, include_usage = false;  // stream_options.include_usage (with stream only)
};

struct ChatRequest {
  std::string model;
  std::vector<ChatMessage> messages;
  SamplingRequest sampling;
};

struct CompletionRequest {
  std::string model;
  std::vector<std::string> prompts;  // a string prompt is one
  SamplingRequest sampling;
};

// Throw ApiError(400, ..., param = the field) for bad JSON, missing, mistyped or out-of-range
// fields; ApiError(413) when the body exceeds limits.max_body_bytes.
ChatRequest parse_chat_request(std::string_view body, const RequestLimits& limits);
CompletionRequest parse_completion_request(std::string_view body, const RequestLimits& limits);

// {"error":{"message","type","param","code"}}; param and code are null when empty.
std::string error_json(const ApiError& e);

// ---- responses ------------------------------------------------------------------------------

// One generated token for logprobs: its raw bytes (possibly part of a UTF-8 character), its
// log-probability, and the most likely alternatives at its position (bytes, logprob), best first.
struct TokenLogprob {
  std::string bytes;
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;
};

// One choice of a finished (non-streamed) response.
struct Choice {
  int64_t index = 0;
  std::string text;
  std::string finish_reason;                       // "stop" or "length"
  std::optional<std::vector<TokenLogprob>> logprobs;  // when asked
};

struct Usage {
  int64_t prompt_tokens = 0, completion_tokens = 0;
};

// What every response and chunk of one request repeats.
struct ResponseHeader {
  std::string id;      // "chatcmpl-..." or "cmpl-..."
  int64_t created = 0; // unix seconds
  std::string model;
};

// object "chat.completion": choices[{index, message{role:"assistant", content}, logprobs, finish_reason}], usage.
// Chat logprobs: {"content": [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}.
std::string chat_completion_json(const ResponseHeader& h, const std::vector<Choice>& choices, const Usage& usage);

// object "text_completion": choices[{index, text, logprobs, finish_reason}], usage.
// Completion logprobs: {tokens, token_logprobs, top_logprobs: [{token: logprob}], text_offset},
// text_offset counting bytes from the start of the choice's text.
std::string text_completion_json(const ResponseHeader& h, const std::vector<Choice>& choices, const Usage& usage);

// One streamed piece of one choice. `role` ("assistant") goes in the first chat chunk's
// delta; `finish_reason` in the last. `text_offset` is where `text` starts in the choice's
// whole text (completions' logprobs).
struct ChunkPiece {
  int64_t index = 0;
  std::string text;
  std::optional<std::string> role;
  std::optional<std::string> finish_reason;
  std::optional<std::vector<TokenLogprob>> logprobs;
  size_t text_offset = 0;
};

// object "chat.completion.chunk": choices[{index, delta{role?, content?}, logprobs, finish_reason}].
std::string chat_chunk_json(const ResponseHeader& h, const ChunkPiece& piece);
// object "text_completion" (as OpenAI streams it): choices[{index, text, logprobs, finish_reason}].
std::string completion_chunk_json(const ResponseHeader& h, const ChunkPiece& piece);
// The last chunk when stream_options.include_usage: choices [] and usage.
std::string usage_chunk_json(const ResponseHeader& h, bool chat, const Usage& usage);

// One Server-Sent Events message: "data: <json>\n\n".
std::string sse_event(std::string_view json);
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

}  // namespace rlhf::serve
