// Datasets in object storage, against a local S3-compatible server (moto's, from the dev venv,
// started here by tests/data/s3_fixture.py): an object, a prefix holding JSONL, .jsonl.gz and
// Parquet objects (the Parquet one written by pyarrow) give the same rows as the local file;
// a missing object or bucket is named; credentials the server refuses give an error naming
// the URI and saying so; a pipeline plan's content hash of an object changes when the object
// is written again.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>
#include <utility>

#include <arrow/filesystem/api.h>
#include <arrow/io/interfaces.h>

#include "model/tiny_model.h"
#include "rlhf/data/dataset.h"
#include "rlhf/data/remote.h"
#include "rlhf/pipeline/plan.h"
#include "rlhf/pipeline/spec.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"
#include "test_util.h"

namespace rlhf::data {
namespace {

namespace fs = std::filesystem;

// S3's client must stop before the process ends: once, after every test of this binary.
class StopStorageClients : public ::testing::Environment {
 public:
  void TearDown() override { finish_remote(); }
};
const auto* const kStop = ::testing::AddGlobalTestEnvironment(new StopStorageClients);

int free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

// moto's server (tests/data/s3_fixture.py) serving bucket "prefs" with `rows` as data/a.jsonl,
// data/b.jsonl.gz and data/c.parquet; stopped when this goes away.
class S3Server {
 public:
  // False (with why in skip) when the dev venv or its packages are absent.
  bool start(const fs::path& dir, const std::string& rows, bool iam = false) {
    auto py = testing::venv_python();
    if (!py) {
      skip = "the dev venv (moto, boto3, pyarrow) is absent: run scripts/setup --dev";
      return false;
    }
    if (testing::run(*py + " -c 'import moto, boto3, pyarrow' 2>/dev/null") != 0) {
      skip = "moto, boto3 or pyarrow missing from the dev venv: run scripts/setup --dev";
      return false;
    }
    write_file_atomic((dir / "rows.jsonl").string(), rows);
    port = free_port();
    log = dir / "moto.log";
    pid_ = ::fork();
    if (pid_ == 0) {
      const std::string script = (testing::source_dir() / "tests" / "data" / "s3_fixture.py").string();
      ::freopen(log.c_str(), "w", stdout);
      ::freopen(log.c_str(), "a", stderr);
      ::execl(py->c_str(), py->c_str(), script.c_str(), std::to_string(port).c_str(), dir.c_str(), iam ? "iam" : nullptr,
              (char*)nullptr);
      ::_exit(127);
    }
    for (int i = 0; i < 600; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      const std::string text = testing::read_text(log);
      const size_t at = text.find("ready");
      if (at == std::string::npos || text.find('\n', at) == std::string::npos) continue;
      std::istringstream words(text.substr(at + 5, text.find('\n', at) - at - 5));
      words >> key >> secret;
      return true;
    }
    return false;
  }
  ~S3Server() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  // The query that sends a URI to this server.
  std::string endpoint() const { return "?endpoint_override=127.0.0.1:" + std::to_string(port) + "&scheme=http"; }

  std::string skip, key, secret;  // key, secret: the credentials it accepts in iam mode
  fs::path log;
  int port = 0;

 private:
  pid_t pid_ = -1;
};

void use_credentials(const std::string& key, const std::string& secret) {
  ::setenv("AWS_ACCESS_KEY_ID", key.c_str(), 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", secret.c_str(), 1);
  ::setenv("AWS_REGION", "us-east-1", 1);
}

std::string seed_rows(int n) {
  std::string rows;
  for (int i = 0; i < n; ++i)
    rows += R"({"input_text": "q)" + std::to_string(i) + R"(", "candidate_0": "a", "candidate_1": "b)" +
            std::to_string(i) + R"(", "choice": )" + std::to_string(i % 2) + "}\n";
  return rows;
}

TEST(DatasetS3, ObjectsAndPrefixesReadAsTheLocalFile) {
  const fs::path dir = testing::scratch_dir();
  S3Server server;
  if (!server.start(dir, seed_rows(6))) {
    if (!server.skip.empty()) GTEST_SKIP() << server.skip;
    FAIL() << testing::read_text(server.log);
  }
  use_credentials("fixture", "fixture");
  const std::string endpoint = server.endpoint();
  auto local = read_preference_dataset((dir / "rows.jsonl").string());
  for (const char* key : {"data/a.jsonl", "data/b.jsonl.gz", "data/c.parquet"}) {
    auto remote = read_preference_dataset(std::string("s3://prefs/") + key + endpoint);
    ASSERT_EQ(remote.size(), local.size()) << key;
    for (size_t i = 0; i < local.size(); ++i) {
      EXPECT_EQ(remote[i].prompt.text, local[i].prompt.text) << key;
      EXPECT_EQ(remote[i].chosen, local[i].chosen) << key;
      EXPECT_EQ(remote[i].rejected, local[i].rejected) << key;
    }
  }
  ReadReport report;
  EXPECT_EQ(read_preference_dataset("s3://prefs/data" + endpoint, {}, &report).size(), 3 * local.size());
  EXPECT_EQ(report.files.size(), 3u);
  std::string e = testing::error_of([&] { read_preference_dataset("s3://prefs/data/missing.jsonl" + endpoint); });
  EXPECT_NE(e.find("s3://prefs/data/missing.jsonl" + endpoint + ": no such object"), std::string::npos) << e;
  e = testing::error_of([&] { read_preference_dataset("s3://no-such-bucket/rows.jsonl" + endpoint); });
  EXPECT_NE(e.find("s3://no-such-bucket/rows.jsonl" + endpoint + ": no such object"), std::string::npos) << e;
  // Opened directly (a URI from a listing whose object went away since): named too.
  e = testing::error_of([&] { open_remote("s3://prefs/data/gone.jsonl" + endpoint); });
  EXPECT_NE(e.find("s3://prefs/data/gone.jsonl" + endpoint + ": no such object"), std::string::npos) << e;
}

TEST(DatasetS3, RefusedCredentialsAreNamed) {
  const fs::path dir = testing::scratch_dir();
  S3Server server;
  if (!server.start(dir, seed_rows(4), /*iam=*/true)) {
    if (!server.skip.empty()) GTEST_SKIP() << server.skip;
    FAIL() << testing::read_text(server.log);
  }
  ASSERT_FALSE(server.key.empty()) << testing::read_text(server.log);
  const std::string object = "s3://prefs/data/a.jsonl" + server.endpoint();
  const std::string prefix = "s3://prefs/data" + server.endpoint();
  // The server's own key reads: it checks credentials, it does not refuse everything.
  use_credentials(server.key, server.secret);
  EXPECT_EQ(read_preference_dataset(object).size(), 4u);
  EXPECT_EQ(read_preference_dataset(prefix).size(), 12u);
  // A wrong secret for the known key, then a key the server does not know.
  for (const auto& [key, secret] : {std::pair<std::string, std::string>{server.key, "not-the-secret"},
                                    std::pair<std::string, std::string>{"AKIAUNKNOWNKEY000000", server.secret}}) {
    use_credentials(key, secret);
    for (const std::string& spec : {object, prefix}) {
      const std::string e = testing::error_of([&] { read_preference_dataset(spec); });
      EXPECT_EQ(e.rfind(spec + ": ", 0), 0u) << e;  // the URI first
      EXPECT_NE(e.find("access denied: the storage refused the credentials"), std::string::npos) << e;
      EXPECT_NE(e.find("AWS_ACCESS_KEY_ID"), std::string::npos) << e;
      EXPECT_EQ(e.find("no such object"), std::string::npos) << e;
    }
  }
}

// Writes `bytes` as the object at `uri` through Arrow's S3 client.
void put_object(const std::string& uri, const std::string& bytes) {
  ASSERT_TRUE(arrow::fs::EnsureS3Initialized().ok());
  std::string path;
  auto fs = arrow::fs::FileSystemFromUri(uri, &path);
  ASSERT_TRUE(fs.ok()) << fs.status().ToString();
  auto out = (*fs)->OpenOutputStream(path);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  ASSERT_TRUE((*out)->Write(bytes.data(), static_cast<int64_t>(bytes.size())).ok());
  ASSERT_TRUE((*out)->Close().ok());
}

TEST(DatasetS3, PlanHashFollowsTheObject) {
  const fs::path dir = testing::scratch_dir();
  S3Server server;
  const std::string rows = seed_rows(8);
  if (!server.start(dir, rows)) {
    if (!server.skip.empty()) GTEST_SKIP() << server.skip;
    FAIL() << testing::read_text(server.log);
  }
  use_credentials("fixture", "fixture");
  const std::string object = "s3://prefs/data/a.jsonl" + server.endpoint();
  const std::string fingerprint = remote_fingerprint(object);
  EXPECT_NE(fingerprint.find(object), std::string::npos) << fingerprint;
  EXPECT_NE(fingerprint.find("size " + std::to_string(rows.size())), std::string::npos) << fingerprint;
  EXPECT_NE(fingerprint.find("etag"), std::string::npos) << fingerprint;
  EXPECT_EQ(remote_fingerprint(object), fingerprint);  // nothing changed: the same

  testing::write_tiny_hf_model(dir / "model");
  std::string prompts;
  for (int i = 0; i < 4; ++i) prompts += R"({"input_text": "say )" + std::to_string(i) + "\"}\n";
  write_file_atomic((dir / "prompts.jsonl").string(), prompts);
  write_file_atomic((dir / "spec.yaml").string(),
                    "preference_dataset: \"" + object + "\"\nprompt_dataset: prompts.jsonl\nlarge_model_reference: model\n"
                    "prompt_sequence_length: 32\ntarget_sequence_length: 8\nreward_model_train_steps: 2\n"
                    "reinforcement_learning_train_steps: 2\n");
  auto compile = [&] { return pipeline::compile_plan(pipeline::read_spec((dir / "spec.yaml").string())); };
  const pipeline::Plan before = compile();
  EXPECT_EQ(before.spec.preference_dataset, object);  // not taken as a path next to the spec
  EXPECT_EQ(before.checks.preference_pairs, 8u);
  EXPECT_EQ(compile().find("train_reward")->key, before.find("train_reward")->key);
  // The same number of bytes, other rows: the stages that read it get new keys.
  std::string changed = rows;
  changed[changed.find("\"q0\"") + 2] = 'Q';
  put_object(object, changed);
  const pipeline::Plan after = compile();
  EXPECT_NE(after.find("train_reward")->key, before.find("train_reward")->key);
  EXPECT_NE(after.find("validate")->key, before.find("validate")->key);
  EXPECT_EQ(after.find("train_reward")->inputs.size(), before.find("train_reward")->inputs.size());
  // A missing object stops the plan, naming its key and the URI.
  write_file_atomic((dir / "spec.yaml").string(),
                    "preference_dataset: \"s3://prefs/data/none.jsonl" + server.endpoint() +
                        "\"\nprompt_dataset: prompts.jsonl\nlarge_model_reference: model\n"
                        "prompt_sequence_length: 32\ntarget_sequence_length: 8\n");
  const std::string e = testing::error_of([&] { compile(); });
  EXPECT_NE(e.find("key 'preference_dataset': s3://prefs/data/none.jsonl" + server.endpoint() + ": no such object"),
            std::string::npos)
      << e;
}

}  // namespace
}  // namespace rlhf::data
