// Datasets in object storage, against a local S3-compatible server (moto's, from the dev venv,
// started here by tests/data/s3_fixture.py): an object, a prefix holding JSONL, .jsonl.gz and
// Parquet objects (the Parquet one written by pyarrow) give the same rows as the local file;
// a missing object is named.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "rlhf/data/dataset.h"
#include "rlhf/data/remote.h"
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

TEST(DatasetS3, ObjectsAndPrefixesReadAsTheLocalFile) {
  auto py = testing::venv_python();
  if (!py) GTEST_SKIP() << "the dev venv (moto, boto3, pyarrow) is absent: run scripts/setup --dev";
  if (testing::run(*py + " -c 'import moto, boto3, pyarrow' 2>/dev/null") != 0)
    GTEST_SKIP() << "moto, boto3 or pyarrow missing from the dev venv: run scripts/setup --dev";
  const fs::path dir = testing::scratch_dir();
  std::string rows;
  for (int i = 0; i < 6; ++i)
    rows += R"({"input_text": "q)" + std::to_string(i) + R"(", "candidate_0": "a", "candidate_1": "b)" +
            std::to_string(i) + R"(", "choice": )" + std::to_string(i % 2) + "}\n";
  write_file_atomic((dir / "rows.jsonl").string(), rows);
  const int port = free_port();
  const pid_t pid = ::fork();
  if (pid == 0) {
    const std::string script = (testing::source_dir() / "tests" / "data" / "s3_fixture.py").string();
    const std::string log = (dir / "moto.log").string();
    ::freopen(log.c_str(), "w", stdout);
    ::freopen(log.c_str(), "a", stderr);
    ::execl(py->c_str(), py->c_str(), script.c_str(), std::to_string(port).c_str(), dir.c_str(), (char*)nullptr);
    ::_exit(127);
  }
  bool ready = false;
  for (int i = 0; i < 600 && !ready; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ready = testing::read_text(dir / "moto.log").find("ready") != std::string::npos;
  }
  ASSERT_TRUE(ready) << testing::read_text(dir / "moto.log");
  ::setenv("AWS_ACCESS_KEY_ID", "fixture", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "fixture", 1);
  ::setenv("AWS_REGION", "us-east-1", 1);
  const std::string endpoint = "?endpoint_override=127.0.0.1:" + std::to_string(port) + "&scheme=http";
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
  try {
    read_preference_dataset("s3://prefs/data/missing.jsonl" + endpoint);
    ADD_FAILURE() << "a missing object was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("s3://prefs/data/missing.jsonl"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("no such object"), std::string::npos) << e.what();
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

}  // namespace
}  // namespace rlhf::data
