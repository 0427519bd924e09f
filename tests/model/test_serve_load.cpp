// `rlhf serve` under load (tests/serve/load_checks.py, openai.AsyncOpenAI): 64 concurrent
// streams over the base and two adapters give what the same requests give one at a time, for
// three rounds, with the server's resident memory stable; a client that leaves mid-stream
// frees its slot; SIGTERM lets the requests in flight finish, then the server exits 0.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "rlhf/model/model.h"
#include "serve_fixture.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using rlhf::testing::run_serve_script;
using rlhf::testing::ServeProcess;

constexpr const char* kKey = "load-key-4567";

TEST(ServeLoad, ConcurrentStreamsOverAdaptersMatchSequentialAndMemoryIsStable) {
  RLHF_REQUIRE_SERVE(py, gguf);
  const fs::path dir = rlhf::testing::scratch_dir();
  rlhf::testing::write_two_default_policies(gguf, dir, "a1", "a2", 21);
  ServeProcess server;
  ASSERT_EQ(server.start({"--dtype", "fp32", "--api-key", kKey, "--max-batch", "32", "--adapter",
                          "a1=" + (dir / "a1").string(), "--adapter", "a2=" + (dir / "a2").string()},
                         dir / "serve.log"),
            "");
  json report = run_serve_script(py, "load_checks.py", "load",
                                 {{"base_url", server.url()},
                                  {"api_key", kKey},
                                  {"pid", server.pid()},
                                  {"models", {"smollm2-135m-instruct", "a1", "a2"}},
                                  {"max_tokens", 16},
                                  {"concurrency", 64},
                                  {"rounds", 3},
                                  {"deadline_s", 1200}},
                                 dir, 1300);
  rlhf::testing::expect_no_failures(report);
  ASSERT_TRUE(report.contains("rss_kib")) << report.dump();
  const json& rss = report["rss_kib"];
  ASSERT_EQ(rss.size(), 3u);
  std::printf("[serve load] sequential %.2f s; rounds of 64 streams %s s; RSS KiB before %s, after rounds %s\n",
              report["sequential_seconds"].get<double>(), report["round_seconds"].dump().c_str(),
              report["rss_kib_before"].dump().c_str(), rss.dump().c_str());
  EXPECT_LT(rss[2].get<double>(), 1.10 * rss[0].get<double>()) << "RSS grows from round to round: " << rss.dump();
  EXPECT_GT(report["distinct_outputs"].get<int>(), 8);  // the requests are not all alike
  EXPECT_EQ(report["running_after"], 0);
  EXPECT_EQ(report["queued_after"], 0);
  EXPECT_EQ(server.stop(), 0) << server.log();
}

TEST(ServeLoad, AClientThatLeavesMidStreamFreesItsSlot) {
  RLHF_REQUIRE_SERVE(py, gguf);
  const fs::path dir = rlhf::testing::scratch_dir();
  ServeProcess server;
  ASSERT_EQ(server.start({"--dtype", "fp32", "--api-key", kKey, "--max-batch", "1"}, dir / "serve.log"), "");
  json report = run_serve_script(py, "load_checks.py", "disconnect",
                                 {{"base_url", server.url()},
                                  {"api_key", kKey},
                                  {"pid", server.pid()},
                                  {"models", {"smollm2-135m-instruct"}},
                                  {"max_tokens", 2000},
                                  {"deadline_s", 240}},
                                 dir, 300);
  rlhf::testing::expect_no_failures(report);
  EXPECT_EQ(report["running_while_streaming"], 1) << report.dump();
  EXPECT_EQ(report["running_after_disconnect"], 0) << report.dump();
  EXPECT_EQ(server.stop(), 0) << server.log();
}

TEST(ServeLoad, SigtermFinishesTheRequestsInFlightThenExitsZero) {
  RLHF_REQUIRE_SERVE(py, gguf);
  const fs::path dir = rlhf::testing::scratch_dir();
  ServeProcess server;
  ASSERT_EQ(server.start({"--dtype", "fp32", "--api-key", kKey, "--grace-seconds", "120"}, dir / "serve.log"), "");
  json report = run_serve_script(py, "load_checks.py", "sigterm",
                                 {{"base_url", server.url()},
                                  {"api_key", kKey},
                                  {"pid", server.pid()},
                                  {"models", {"smollm2-135m-instruct"}},
                                  {"max_tokens", 32},
                                  {"deadline_s", 300}},
                                 dir, 360);
  rlhf::testing::expect_no_failures(report);
  EXPECT_EQ(report["completed"], 8) << report.dump();
  ASSERT_EQ(report["signalled"], true) << report.dump();
  auto code = server.wait_exit(std::chrono::seconds(150));
  ASSERT_TRUE(code.has_value()) << "the server did not exit after SIGTERM:\n" << server.log();
  EXPECT_EQ(*code, 0) << server.log();
}

}  // namespace
