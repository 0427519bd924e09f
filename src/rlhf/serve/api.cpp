#include "rlhf/serve/api.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "rlhf/text/utf8.h"

namespace rlhf::serve {
namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

// Bodies nested deeper than this are refused before they are parsed.
constexpr int kMaxJsonDepth = 64;
// Longest stop string: each new token's text is matched against every prefix of each one.
constexpr size_t kMaxStopBytes = 1024;

std::string default_type(int status) {
  if (status == 401) return "authentication_error";
  if (status == 503) return "overloaded";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

[[noreturn]] void bad(const std::string& param, const std::string& message, const std::string& code = "") {
  throw ApiError(400, message, param, code);
}

std::string type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::number_float: return "a number";
    default: return "an integer";
  }
}

// How deep `body` nests arrays and objects (strings skipped), counted up to kMaxJsonDepth + 1.
int nesting_depth(std::string_view body) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : body) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > kMaxJsonDepth) break;
    } else if (c == ']' || c == '}') --depth;
  }
  return deepest;
}

json parse_body(std::string_view body, const RequestLimits& limits) {
  if (body.size() > limits.max_body_bytes)
    throw ApiError(413, fmt::format("the request body is {} bytes; the limit is {} bytes", body.size(),
                                    limits.max_body_bytes),
                   "", "request_too_large");
  if (nesting_depth(body) > kMaxJsonDepth)
    bad("", fmt::format("the JSON body nests deeper than {} levels", kMaxJsonDepth), "invalid_json");
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    bad("", "the body is not valid JSON (UTF-8 text holding one JSON object)", "invalid_json");
  if (!j.is_object()) bad("", fmt::format("the body must be a JSON object, not {}", type_name(j)), "invalid_json");
  return j;
}

// The field, or null when absent (OpenAI treats an explicit null as absent).
const json& field(const json& obj, const char* name) {
  static const json kNull;
  auto it = obj.find(name);
  return it == obj.end() ? kNull : *it;
}

std::string required_string(const json& obj, const char* name) {
  const json& v = field(obj, name);
  if (v.is_null()) bad(name, fmt::format("'{}' is required", name));
  if (!v.is_string()) bad(name, fmt::format("'{}' must be a string, not {}", name, type_name(v)));
  return v.get<std::string>();
}

std::optional<int64_t> optional_int(const json& obj, const char* name, int64_t lo, int64_t hi) {
  const json& v = field(obj, name);
  if (v.is_null()) return std::nullopt;
  if (!v.is_number_integer())
    bad(name, fmt::format("'{}' must be an integer, not {}", name, type_name(v)));
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    bad(name, fmt::format("'{}' must be at most {}", name, hi));
  const int64_t x = v.get<int64_t>();
  if (x < lo) bad(name, fmt::format("'{}' must be at least {} (got {})", name, lo, x));
  if (x > hi) bad(name, fmt::format("'{}' must be at most {} (got {})", name, hi, x));
  return x;
}

std::optional<double> optional_number(const json& obj, const char* name) {
  const json& v = field(obj, name);
  if (v.is_null()) return std::nullopt;
  if (!v.is_number()) bad(name, fmt::format("'{}' must be a number, not {}", name, type_name(v)));
  const double x = v.get<double>();
  if (!std::isfinite(x)) bad(name, fmt::format("'{}' must be a finite number", name));
  return x;
}

std::optional<bool> optional_bool(const json& obj, const char* name) {
  const json& v = field(obj, name);
  if (v.is_null()) return std::nullopt;
  if (!v.is_boolean()) bad(name, fmt::format("'{}' must be a boolean, not {}", name, type_name(v)));
  return v.get<bool>();
}

// Fields that change what is generated in ways this server does not do: refused unless they
// hold their neutral value.
void refuse_unsupported(const json& j) {
  for (const char* name : {"frequency_penalty", "presence_penalty"}) {
    auto x = optional_number(j, name);
    if (x && *x != 0) bad(name, fmt::format("'{}' is not supported (only 0)", name), "unsupported_parameter");
  }
  const json& bias = field(j, "logit_bias");
  if (!bias.is_null() && !(bias.is_object() && bias.empty()))
    bad("logit_bias", "'logit_bias' is not supported", "unsupported_parameter");
}

// The fields both endpoints share; `logprobs` is read by each endpoint itself.
SamplingRequest parse_sampling(const json& j, const RequestLimits& limits) {
  SamplingRequest s;
  refuse_unsupported(j);
  auto max_tokens = optional_int(j, "max_tokens", 1, limits.max_tokens);
  auto max_completion = optional_int(j, "max_completion_tokens", 1, limits.max_tokens);
  s.max_tokens = max_completion ? max_completion : max_tokens;

  if (auto t = optional_number(j, "temperature")) {
    if (*t < 0 || *t > 2) bad("temperature", fmt::format("'temperature' must be in [0, 2] (got {})", *t));
    s.temperature = *t;
  }
  if (auto p = optional_number(j, "top_p")) {
    if (!(*p > 0 && *p <= 1)) bad("top_p", fmt::format("'top_p' must be in (0, 1] (got {})", *p));
    s.top_p = *p;
  }
  const json& seed = field(j, "seed");
  if (!seed.is_null()) {
    if (!seed.is_number_integer()) bad("seed", fmt::format("'seed' must be an integer, not {}", type_name(seed)));
    s.seed = seed.is_number_unsigned() ? seed.get<uint64_t>() : static_cast<uint64_t>(seed.get<int64_t>());
  }

  const json& stop = field(j, "stop");
  if (stop.is_string()) {
    s.stop.push_back(stop.get<std::string>());
  } else if (stop.is_array()) {
    if (stop.size() > limits.max_stop)
      bad("stop", fmt::format("'stop' holds at most {} strings (got {})", limits.max_stop, stop.size()));
    for (const json& x : stop) {
      if (!x.is_string()) bad("stop", fmt::format("'stop' must hold strings, not {}", type_name(x)));
      s.stop.push_back(x.get<std::string>());
    }
  } else if (!stop.is_null()) {
    bad("stop", fmt::format("'stop' must be a string or a list of strings, not {}", type_name(stop)));
  }
  for (const auto& x : s.stop) {
    if (x.empty()) bad("stop", "'stop' strings must not be empty");
    if (x.size() > kMaxStopBytes)
      bad("stop", fmt::format("'stop' strings are at most {} bytes (got {})", kMaxStopBytes, x.size()));
  }

  s.n = optional_int(j, "n", 1, limits.max_n).value_or(1);
  s.stream = optional_bool(j, "stream").value_or(false);
  const json& so = field(j, "stream_options");
  if (!so.is_null()) {
    if (!so.is_object()) bad("stream_options", fmt::format("'stream_options' must be an object, not {}", type_name(so)));
    const json& iu = field(so, "include_usage");
    if (!iu.is_null() && !iu.is_boolean())
      bad("stream_options.include_usage",
          fmt::format("'stream_options.include_usage' must be a boolean, not {}", type_name(iu)));
    if (!s.stream) bad("stream_options", "'stream_options' is only allowed when 'stream' is true");
    s.include_usage = iu.is_boolean() && iu.get<bool>();
  }
  return s;
}

// A message's content: a string, or a list of {"type": "text", "text": ...} parts joined.
std::string message_content(const json& v, const std::string& param) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) bad(param, fmt::format("'{}' is required", param));
  if (!v.is_array())
    bad(param, fmt::format("'{}' must be a string or a list of text parts, not {}", param, type_name(v)));
  std::string text;
  for (size_t k = 0; k < v.size(); ++k) {
    const json& part = v[k];
    const std::string where = fmt::format("{}[{}]", param, k);
    if (!part.is_object()) bad(where, fmt::format("'{}' must be an object, not {}", where, type_name(part)));
    const json& type = field(part, "type");
    if (!type.is_string() || type.get<std::string>() != "text")
      bad(where + ".type", fmt::format("'{}.type' must be \"text\" (only text content is supported)", where));
    const json& t = field(part, "text");
    if (!t.is_string()) bad(where + ".text", fmt::format("'{}.text' must be a string, not {}", where, type_name(t)));
    text += t.get<std::string>();
  }
  return text;
}

// ---- responses --------------------------------------------------------------------------------

std::string dump(const ojson& j) { return j.dump(-1, ' ', false, ojson::error_handler_t::replace); }

ojson bytes_array(std::string_view bytes) {
  ojson a = ojson::array();
  for (unsigned char c : bytes) a.push_back(static_cast<int>(c));
  return a;
}

// A token's text as JSON wants it: invalid or partial UTF-8 replaced by U+FFFD.
std::string token_text(std::string_view bytes) { return text::utf8::sanitize(bytes); }

ojson chat_logprobs(const std::vector<TokenLogprob>& tokens) {
  ojson content = ojson::array();
  for (const auto& t : tokens) {
    ojson top = ojson::array();
    for (const auto& [b, lp] : t.top)
      top.push_back({{"token", token_text(b)}, {"logprob", lp}, {"bytes", bytes_array(b)}});
    content.push_back(
        {{"token", token_text(t.bytes)}, {"logprob", t.logprob}, {"bytes", bytes_array(t.bytes)}, {"top_logprobs", top}});
  }
  return {{"content", content}};
}

ojson completion_logprobs(const std::vector<TokenLogprob>& tokens, size_t text_offset) {
  ojson toks = ojson::array(), lps = ojson::array(), tops = ojson::array(), offsets = ojson::array();
  size_t offset = text_offset;
  for (const auto& t : tokens) {
    toks.push_back(token_text(t.bytes));
    lps.push_back(t.logprob);
    ojson top = ojson::object();
    for (const auto& [b, lp] : t.top) {
      const std::string key = token_text(b);
      if (!top.contains(key)) top[key] = lp;
    }
    tops.push_back(top);
    offsets.push_back(offset);
    offset += t.bytes.size();
  }
  return {{"tokens", toks}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

ojson usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

ojson head(const ResponseHeader& h, const char* object) {
  return {{"id", h.id}, {"object", object}, {"created", h.created}, {"model", h.model}};
}

ojson or_null(const std::optional<std::string>& s) { return s ? ojson(*s) : ojson(nullptr); }

}  // namespace

ApiError::ApiError(int status_, std::string message, std::string param_, std::string code_, std::string type_)
    : std::runtime_error(std::move(message)),
      status(status_),
      type(type_.empty() ? default_type(status_) : std::move(type_)),
      param(std::move(param_)),
      code(std::move(code_)) {}

ChatRequest parse_chat_request(std::string_view body, const RequestLimits& limits) {
  const json j = parse_body(body, limits);
  ChatRequest r;
  r.model = required_string(j, "model");
  const json& messages = field(j, "messages");
  if (messages.is_null()) bad("messages", "'messages' is required");
  if (!messages.is_array()) bad("messages", fmt::format("'messages' must be a list, not {}", type_name(messages)));
  if (messages.empty()) bad("messages", "'messages' must hold at least one message");
  if (messages.size() > limits.max_messages)
    bad("messages", fmt::format("'messages' holds at most {} messages (got {})", limits.max_messages, messages.size()));
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    const std::string where = fmt::format("messages[{}]", i);
    if (!m.is_object()) bad(where, fmt::format("'{}' must be an object, not {}", where, type_name(m)));
    const json& role = field(m, "role");
    if (!role.is_string()) bad(where + ".role", fmt::format("'{}.role' must be a string", where));
    std::string rs = role.get<std::string>();
    if (rs == "developer") rs = "system";
    if (rs != "system" && rs != "user" && rs != "assistant")
      bad(where + ".role", fmt::format("'{}.role' must be system, user or assistant (got \"{}\")", where,
                                       text::utf8::sanitize(rs.substr(0, 64))));
    r.messages.push_back({std::move(rs), message_content(field(m, "content"), where + ".content")});
  }
  r.sampling = parse_sampling(j, limits);
  const auto logprobs = optional_bool(j, "logprobs");
  r.sampling.logprobs = logprobs.value_or(false);
  if (auto top = optional_int(j, "top_logprobs", 0, limits.max_top_logprobs)) {
    if (!r.sampling.logprobs && *top > 0) bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    r.sampling.top_logprobs = static_cast<int32_t>(*top);
  }
  return r;
}

CompletionRequest parse_completion_request(std::string_view body, const RequestLimits& limits) {
  const json j = parse_body(body, limits);
  CompletionRequest r;
  r.model = required_string(j, "model");
  const json& prompt = field(j, "prompt");
  if (prompt.is_null()) bad("prompt", "'prompt' is required");
  if (prompt.is_string()) {
    r.prompts.push_back(prompt.get<std::string>());
  } else if (prompt.is_array()) {
    if (prompt.empty()) bad("prompt", "'prompt' must hold at least one prompt");
    if (prompt.size() > limits.max_prompts)
      bad("prompt", fmt::format("'prompt' holds at most {} prompts (got {})", limits.max_prompts, prompt.size()));
    for (const json& p : prompt) {
      if (p.is_number_integer() || p.is_array())
        bad("prompt", "token-id prompts are not supported: send the prompt as text", "unsupported_parameter");
      if (!p.is_string()) bad("prompt", fmt::format("'prompt' must hold strings, not {}", type_name(p)));
      r.prompts.push_back(p.get<std::string>());
    }
  } else {
    bad("prompt", fmt::format("'prompt' must be a string or a list of strings, not {}", type_name(prompt)));
  }
  r.sampling = parse_sampling(j, limits);
  if (auto lp = optional_int(j, "logprobs", 0, limits.max_top_logprobs)) {
    r.sampling.logprobs = true;
    r.sampling.top_logprobs = static_cast<int32_t>(*lp);
  }
  if (optional_bool(j, "echo").value_or(false)) bad("echo", "'echo' is not supported", "unsupported_parameter");
  const json& suffix = field(j, "suffix");
  if (!suffix.is_null() && !(suffix.is_string() && suffix.get<std::string>().empty()))
    bad("suffix", "'suffix' is not supported", "unsupported_parameter");
  if (auto best_of = optional_int(j, "best_of", 1, limits.max_n); best_of && *best_of != r.sampling.n)
    bad("best_of", "'best_of' is not supported (only equal to n)", "unsupported_parameter");
  return r;
}

std::string error_json(const ApiError& e) {
  ojson err = {{"message", e.what()},
               {"type", e.type},
               {"param", e.param.empty() ? ojson(nullptr) : ojson(e.param)},
               {"code", e.code.empty() ? ojson(nullptr) : ojson(e.code)}};
  return dump({{"error", err}});
}

std::string chat_completion_json(const ResponseHeader& h, const std::vector<Choice>& choices, const Usage& usage) {
  ojson j = head(h, "chat.completion");
  ojson cs = ojson::array();
  for (const auto& c : choices)
    cs.push_back({{"index", c.index},
                  {"message", {{"role", "assistant"}, {"content", c.text}}},
                  {"logprobs", c.logprobs ? chat_logprobs(*c.logprobs) : ojson(nullptr)},
                  {"finish_reason", c.finish_reason}});
  j["choices"] = cs;
  j["usage"] = usage_json(usage);
  return dump(j);
}

std::string text_completion_json(const ResponseHeader& h, const std::vector<Choice>& choices, const Usage& usage) {
  ojson j = head(h, "text_completion");
  ojson cs = ojson::array();
  for (const auto& c : choices)
    cs.push_back({{"index", c.index},
                  {"text", c.text},
                  {"logprobs", c.logprobs ? completion_logprobs(*c.logprobs, 0) : ojson(nullptr)},
                  {"finish_reason", c.finish_reason}});
  j["choices"] = cs;
  j["usage"] = usage_json(usage);
  return dump(j);
}

std::string chat_chunk_json(const ResponseHeader& h, const ChunkPiece& p) {
  ojson j = head(h, "chat.completion.chunk");
  ojson delta = ojson::object();
  if (p.role) delta["role"] = *p.role;
  if (p.role || !p.text.empty()) delta["content"] = p.text;
  j["choices"] = ojson::array({{{"index", p.index},
                                {"delta", delta},
                                {"logprobs", p.logprobs ? chat_logprobs(*p.logprobs) : ojson(nullptr)},
                                {"finish_reason", or_null(p.finish_reason)}}});
  return dump(j);
}

std::string completion_chunk_json(const ResponseHeader& h, const ChunkPiece& p) {
  ojson j = head(h, "text_completion");
  j["choices"] = ojson::array({{{"index", p.index},
                                {"text", p.text},
                                {"logprobs", p.logprobs ? completion_logprobs(*p.logprobs, p.text_offset) : ojson(nullptr)},
                                {"finish_reason", or_null(p.finish_reason)}}});
  return dump(j);
}

std::string usage_chunk_json(const ResponseHeader& h, bool chat, const Usage& usage) {
  ojson j = head(h, chat ? "chat.completion.chunk" : "text_completion");
  j["choices"] = ojson::array();
  j["usage"] = usage_json(usage);
  return dump(j);
}

std::string sse_event(std::string_view json_text) {
  std::string out;
  out.reserve(json_text.size() + 8);
  out += "data: ";
  out += json_text;
  out += "\n\n";
  return out;
}

}  // namespace rlhf::serve
