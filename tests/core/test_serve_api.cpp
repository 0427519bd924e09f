// The OpenAI request parsing of `rlhf serve` (serve/api.h): good requests read as sent, every
// bad field answered 400 with the field named in param, the body limit 413, and the shapes of
// the responses, stream chunks and errors.
#include <gtest/gtest.h>

#include <string>

#include <nlohmann/json.hpp>

#include "rlhf/serve/api.h"

namespace {

using json = nlohmann::json;
using namespace rlhf::serve;

const RequestLimits kLimits;

// The ApiError a chat body raises (status 0 when it parses).
ApiError chat_error(const std::string& body, const RequestLimits& limits = kLimits) {
  try {
    parse_chat_request(body, limits);
  } catch (const ApiError& e) {
    return e;
  }
  return ApiError(0, "parsed");
}

ApiError completion_error(const std::string& body, const RequestLimits& limits = kLimits) {
  try {
    parse_completion_request(body, limits);
  } catch (const ApiError& e) {
    return e;
  }
  return ApiError(0, "parsed");
}

// A chat body with `extra` fields (a JSON object's members without the braces) added.
std::string chat(const std::string& extra) {
  std::string b = R"({"model":"m","messages":[{"role":"user","content":"hi"}])";
  if (!extra.empty()) b += "," + extra;
  return b + "}";
}

std::string completion(const std::string& extra) {
  std::string b = R"({"model":"m","prompt":"hi")";
  if (!extra.empty()) b += "," + extra;
  return b + "}";
}

TEST(ServeApi, ChatRequestParses) {
  ChatRequest r = parse_chat_request(
      R"({"model":"base","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},{"role":"assistant","content":"x"},{"role":"developer","content":"d"}],
          "max_tokens":7,"temperature":0,"top_p":0.5,"seed":-1,"stop":"END","n":3,"logprobs":true,"top_logprobs":2,
          "stream":true,"stream_options":{"include_usage":true},"user":"ignored","unknown_field":{"x":[1,2]}})",
      kLimits);
  EXPECT_EQ(r.model, "base");
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "ab");
  EXPECT_EQ(r.messages[2].role, "assistant");
  EXPECT_EQ(r.messages[3].role, "system");  // developer reads as system
  const SamplingRequest& s = r.sampling;
  EXPECT_EQ(s.max_tokens, 7);
  EXPECT_EQ(s.temperature, 0.0);
  EXPECT_EQ(s.top_p, 0.5);
  EXPECT_EQ(s.seed, UINT64_MAX);  // -1 modulo 2^64
  EXPECT_EQ(s.stop, std::vector<std::string>{"END"});
  EXPECT_EQ(s.n, 3);
  EXPECT_TRUE(s.logprobs);
  EXPECT_EQ(s.top_logprobs, 2);
  EXPECT_TRUE(s.stream);
  EXPECT_TRUE(s.include_usage);
}

TEST(ServeApi, ChatDefaults) {
  ChatRequest r = parse_chat_request(chat(R"("max_tokens":null,"seed":null,"stop":null)"), kLimits);
  const SamplingRequest& s = r.sampling;
  EXPECT_FALSE(s.max_tokens);
  EXPECT_EQ(s.temperature, 1.0);
  EXPECT_EQ(s.top_p, 1.0);
  EXPECT_FALSE(s.seed);
  EXPECT_TRUE(s.stop.empty());
  EXPECT_EQ(s.n, 1);
  EXPECT_FALSE(s.logprobs);
  EXPECT_FALSE(s.stream);
  EXPECT_FALSE(s.include_usage);
  // max_completion_tokens wins over max_tokens.
  EXPECT_EQ(parse_chat_request(chat(R"("max_tokens":5,"max_completion_tokens":9)"), kLimits).sampling.max_tokens, 9);
}

TEST(ServeApi, EachBadChatFieldIsNamed) {
  struct Case {
    std::string body, param;
  };
  const std::vector<Case> cases = {
      {R"({"messages":[{"role":"user","content":"hi"}]})", "model"},
      {R"({"model":3,"messages":[{"role":"user","content":"hi"}]})", "model"},
      {R"({"model":"m"})", "messages"},
      {R"({"model":"m","messages":[]})", "messages"},
      {R"({"model":"m","messages":"hi"})", "messages"},
      {R"({"model":"m","messages":[3]})", "messages[0]"},
      {R"({"model":"m","messages":[{"role":"user","content":"a"},{"role":"tool","content":"x"}]})", "messages[1].role"},
      {R"({"model":"m","messages":[{"content":"x"}]})", "messages[0].role"},
      {R"({"model":"m","messages":[{"role":"user"}]})", "messages[0].content"},
      {R"({"model":"m","messages":[{"role":"user","content":5}]})", "messages[0].content"},
      {R"({"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]})",
       "messages[0].content[0].type"},
      {R"({"model":"m","messages":[{"role":"user","content":[{"type":"text"}]}]})", "messages[0].content[0].text"},
      {chat(R"("max_tokens":0)"), "max_tokens"},
      {chat(R"("max_tokens":4097)"), "max_tokens"},
      {chat(R"("max_tokens":"5")"), "max_tokens"},
      {chat(R"("max_tokens":2.5)"), "max_tokens"},
      {chat(R"("max_completion_tokens":-1)"), "max_completion_tokens"},
      {chat(R"("temperature":-0.1)"), "temperature"},
      {chat(R"("temperature":2.01)"), "temperature"},
      {chat(R"("temperature":"hot")"), "temperature"},
      {chat(R"("top_p":0)"), "top_p"},
      {chat(R"("top_p":1.5)"), "top_p"},
      {chat(R"("n":0)"), "n"},
      {chat(R"("n":17)"), "n"},
      {chat(R"("stop":["a","b","c","d","e"])"), "stop"},
      {chat(R"("stop":[1])"), "stop"},
      {chat(R"("stop":"")"), "stop"},
      {chat(R"("stop":{"a":1})"), "stop"},
      {chat(R"("seed":"x")"), "seed"},
      {chat(R"("seed":1.5)"), "seed"},
      {chat(R"("stream":"yes")"), "stream"},
      {chat(R"("stream_options":{"include_usage":true})"), "stream_options"},
      {chat(R"("stream":true,"stream_options":{"include_usage":1})"), "stream_options.include_usage"},
      {chat(R"("logprobs":1)"), "logprobs"},
      {chat(R"("logprobs":true,"top_logprobs":21)"), "top_logprobs"},
      {chat(R"("top_logprobs":3)"), "top_logprobs"},
      {chat(R"("presence_penalty":0.5)"), "presence_penalty"},
      {chat(R"("frequency_penalty":1)"), "frequency_penalty"},
      {chat(R"("logit_bias":{"5":1})"), "logit_bias"},
  };
  for (const auto& c : cases) {
    ApiError e = chat_error(c.body);
    EXPECT_EQ(e.status, 400) << c.body;
    EXPECT_EQ(e.param, c.param) << c.body << " -> " << e.what();
    EXPECT_EQ(e.type, "invalid_request_error") << c.body;
    EXPECT_NE(std::string(e.what()).find(c.param.substr(0, c.param.find('['))), std::string::npos)
        << "the message names the field: " << e.what();
  }
}

TEST(ServeApi, NeutralValuesOfUnsupportedFieldsPass) {
  EXPECT_EQ(chat_error(chat(R"("presence_penalty":0,"frequency_penalty":0,"logit_bias":{},"tools":[])")).status, 0);
  EXPECT_EQ(completion_error(completion(R"("echo":false,"suffix":"","best_of":1)")).status, 0);
}

TEST(ServeApi, BadJsonAndLimits) {
  EXPECT_EQ(chat_error("{").status, 400);
  EXPECT_EQ(chat_error("[1,2]").status, 400);
  EXPECT_EQ(chat_error("").status, 400);
  EXPECT_EQ(chat_error("{\"model\":\"\xff\"}").status, 400);  // not UTF-8
  EXPECT_EQ(chat_error(std::string(100, '[') + std::string(100, ']')).status, 400);  // too deep
  RequestLimits small;
  small.max_body_bytes = 32;
  ApiError big = chat_error(chat(""), small);
  EXPECT_EQ(big.status, 413);
  EXPECT_EQ(big.type, "invalid_request_error");
  RequestLimits few;
  few.max_messages = 1;
  EXPECT_EQ(chat_error(R"({"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]})", few)
                .param,
            "messages");
  few.max_tokens = 10;
  EXPECT_EQ(chat_error(chat(R"("max_tokens":11)"), few).param, "max_tokens");
  EXPECT_EQ(chat_error(chat(R"("max_tokens":10)"), few).status, 0);
  few.max_n = 2;
  EXPECT_EQ(chat_error(chat(R"("n":3)"), few).param, "n");
  EXPECT_EQ(chat_error(chat(R"("stop":")" + std::string(1025, 'x') + "\"")).param, "stop");
}

TEST(ServeApi, CompletionRequestParses) {
  CompletionRequest r = parse_completion_request(completion(R"("logprobs":3,"max_tokens":4,"stop":["a","b"])"), kLimits);
  EXPECT_EQ(r.prompts, std::vector<std::string>{"hi"});
  EXPECT_TRUE(r.sampling.logprobs);
  EXPECT_EQ(r.sampling.top_logprobs, 3);
  EXPECT_EQ(r.sampling.max_tokens, 4);
  EXPECT_EQ(r.sampling.stop, (std::vector<std::string>{"a", "b"}));
  CompletionRequest list = parse_completion_request(R"({"model":"m","prompt":["x","y"],"logprobs":0})", kLimits);
  EXPECT_EQ(list.prompts, (std::vector<std::string>{"x", "y"}));
  EXPECT_TRUE(list.sampling.logprobs);
  EXPECT_EQ(list.sampling.top_logprobs, 0);
  EXPECT_FALSE(parse_completion_request(completion(""), kLimits).sampling.logprobs);
}

TEST(ServeApi, EachBadCompletionFieldIsNamed) {
  struct Case {
    std::string body, param;
  };
  const std::vector<Case> cases = {
      {R"({"prompt":"x"})", "model"},
      {R"({"model":"m"})", "prompt"},
      {R"({"model":"m","prompt":5})", "prompt"},
      {R"({"model":"m","prompt":[]})", "prompt"},
      {R"({"model":"m","prompt":[1,2,3]})", "prompt"},
      {R"({"model":"m","prompt":[[1,2],[3]]})", "prompt"},
      {R"({"model":"m","prompt":["a",null]})", "prompt"},
      {completion(R"("logprobs":true)"), "logprobs"},
      {completion(R"("logprobs":21)"), "logprobs"},
      {completion(R"("echo":true)"), "echo"},
      {completion(R"("suffix":"end")"), "suffix"},
      {completion(R"("best_of":3)"), "best_of"},
      {completion(R"("max_tokens":0)"), "max_tokens"},
      {completion(R"("top_p":-1)"), "top_p"},
  };
  for (const auto& c : cases) {
    ApiError e = completion_error(c.body);
    EXPECT_EQ(e.status, 400) << c.body;
    EXPECT_EQ(e.param, c.param) << c.body << " -> " << e.what();
  }
  // Token-id prompts are refused in words that say so.
  EXPECT_NE(std::string(completion_error(R"({"model":"m","prompt":[1,2]})").what()).find("not supported"),
            std::string::npos);
  RequestLimits few;
  few.max_prompts = 2;
  EXPECT_EQ(completion_error(R"({"model":"m","prompt":["a","b","c"]})", few).param, "prompt");
}

TEST(ServeApi, ErrorJsonShape) {
  json j = json::parse(error_json(ApiError(400, "bad n", "n")));
  EXPECT_EQ(j["error"]["message"], "bad n");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "n");
  EXPECT_TRUE(j["error"]["code"].is_null());
  json k = json::parse(error_json(ApiError(401, "no key", "", "invalid_api_key")));
  EXPECT_EQ(k["error"]["type"], "authentication_error");
  EXPECT_TRUE(k["error"]["param"].is_null());
  EXPECT_EQ(k["error"]["code"], "invalid_api_key");
  EXPECT_EQ(json::parse(error_json(ApiError(503, "busy")))["error"]["type"], "overloaded");
  EXPECT_EQ(json::parse(error_json(ApiError(500, "x")))["error"]["type"], "server_error");
  EXPECT_EQ(json::parse(error_json(ApiError(404, "x")))["error"]["type"], "invalid_request_error");
}

TEST(ServeApi, ChatCompletionShape) {
  TokenLogprob t{"he", -0.5f, {{"he", -0.5f}, {"\xe2\x82", -2.0f}}};  // the second: half a character
  std::vector<Choice> choices = {{0, "hello", "stop", std::vector<TokenLogprob>{t}}, {1, "x", "length", std::nullopt}};
  json j = json::parse(chat_completion_json({"chatcmpl-1", 123, "base"}, choices, {5, 3}));
  EXPECT_EQ(j["id"], "chatcmpl-1");
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["created"], 123);
  EXPECT_EQ(j["model"], "base");
  ASSERT_EQ(j["choices"].size(), 2u);
  const json& c0 = j["choices"][0];
  EXPECT_EQ(c0["index"], 0);
  EXPECT_EQ(c0["message"]["role"], "assistant");
  EXPECT_EQ(c0["message"]["content"], "hello");
  EXPECT_EQ(c0["finish_reason"], "stop");
  const json& lp = c0["logprobs"]["content"][0];
  EXPECT_EQ(lp["token"], "he");
  EXPECT_FLOAT_EQ(lp["logprob"].get<float>(), -0.5f);
  EXPECT_EQ(lp["bytes"], json::array({104, 101}));
  ASSERT_EQ(lp["top_logprobs"].size(), 2u);
  EXPECT_EQ(lp["top_logprobs"][1]["bytes"], json::array({0xe2, 0x82}));
  EXPECT_EQ(lp["top_logprobs"][1]["token"], "\xef\xbf\xbd");  // U+FFFD
  EXPECT_TRUE(j["choices"][1]["logprobs"].is_null());
  EXPECT_EQ(j["choices"][1]["finish_reason"], "length");
  EXPECT_EQ(j["usage"], json({{"prompt_tokens", 5}, {"completion_tokens", 3}, {"total_tokens", 8}}));
}

TEST(ServeApi, TextCompletionShape) {
  std::vector<TokenLogprob> lps = {{"ab", -1.0f, {{"ab", -1.0f}, {"a", -2.0f}}}, {"c", -0.25f, {}}};
  json j = json::parse(text_completion_json({"cmpl-1", 1, "m"}, {{0, "abc", "length", lps}}, {2, 2}));
  EXPECT_EQ(j["object"], "text_completion");
  const json& c = j["choices"][0];
  EXPECT_EQ(c["text"], "abc");
  EXPECT_EQ(c["logprobs"]["tokens"], json::array({"ab", "c"}));
  EXPECT_EQ(c["logprobs"]["token_logprobs"], json::array({-1.0, -0.25}));
  EXPECT_EQ(c["logprobs"]["top_logprobs"][0], json({{"ab", -1.0}, {"a", -2.0}}));
  EXPECT_EQ(c["logprobs"]["text_offset"], json::array({0, 2}));
  EXPECT_EQ(j["usage"]["total_tokens"], 4);
}

TEST(ServeApi, StreamChunkShapes) {
  ResponseHeader h{"chatcmpl-9", 7, "m"};
  ChunkPiece first;
  first.role = "assistant";
  json a = json::parse(chat_chunk_json(h, first));
  EXPECT_EQ(a["object"], "chat.completion.chunk");
  EXPECT_EQ(a["choices"][0]["delta"], json({{"role", "assistant"}, {"content", ""}}));
  EXPECT_TRUE(a["choices"][0]["finish_reason"].is_null());
  ChunkPiece mid;
  mid.index = 2;
  mid.text = "lo";
  json b = json::parse(chat_chunk_json(h, mid));
  EXPECT_EQ(b["choices"][0]["index"], 2);
  EXPECT_EQ(b["choices"][0]["delta"], json({{"content", "lo"}}));
  ChunkPiece last;
  last.finish_reason = "length";
  json c = json::parse(chat_chunk_json(h, last));
  EXPECT_EQ(c["choices"][0]["delta"], json::object());
  EXPECT_EQ(c["choices"][0]["finish_reason"], "length");

  ChunkPiece text;
  text.text = "xy";
  text.text_offset = 5;
  text.logprobs = std::vector<TokenLogprob>{{"x", -1, {}}, {"y", -2, {}}};
  json d = json::parse(completion_chunk_json({"cmpl-2", 7, "m"}, text));
  EXPECT_EQ(d["object"], "text_completion");
  EXPECT_EQ(d["choices"][0]["text"], "xy");
  EXPECT_EQ(d["choices"][0]["logprobs"]["text_offset"], json::array({5, 6}));

  json u = json::parse(usage_chunk_json(h, true, {3, 4}));
  EXPECT_EQ(u["object"], "chat.completion.chunk");
  EXPECT_TRUE(u["choices"].empty());
  EXPECT_EQ(u["usage"]["total_tokens"], 7);
  EXPECT_EQ(sse_event("{}"), "data: {}\n\n");
  EXPECT_EQ(kSseDone, "data: [DONE]\n\n");
}

}  // namespace
