// Dataset paths that are not regular files (a FIFO, a device, a socket, a symbolic-link loop,
// a dangling link) are refused by name, directly, inside a folder or matched by a glob, without
// waiting on a FIFO; a line whose JSON repeats a key is refused naming file, line and key.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "rlhf/data/dataset.h"
#include "rlhf/util/error.h"
#include "test_util.h"

namespace rlhf::data {
namespace {

namespace fs = std::filesystem;
using testing::scratch_dir;

std::string error_of(const std::string& spec) {
  try {
    read_preference_dataset(spec);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const char* kRow = R"({"prompt": "p", "chosen": "a", "rejected": "b"})";

TEST(DatasetPaths, AFifoIsRefusedByNameWithoutWaitingForAWriter) {
  const fs::path dir = scratch_dir();
  ASSERT_EQ(::mkfifo((dir / "pipe.jsonl").c_str(), 0644), 0);
  const std::string e = error_of((dir / "pipe.jsonl").string());
  EXPECT_NE(e.find((dir / "pipe.jsonl").string() + ": this path is a FIFO (named pipe)"), std::string::npos) << e;
  EXPECT_EQ(e.find("no such file"), std::string::npos) << e;
}

TEST(DatasetPaths, DevicesSocketsAndLinkLoopsAreRefusedByName) {
  const fs::path dir = scratch_dir();
  EXPECT_NE(error_of("/dev/zero").find("/dev/zero: this path is a character device"), std::string::npos);
  fs::create_symlink("loop.jsonl", dir / "loop.jsonl");
  EXPECT_NE(error_of((dir / "loop.jsonl").string()).find("a symbolic link loop"), std::string::npos)
      << error_of((dir / "loop.jsonl").string());
  fs::create_symlink("gone.jsonl", dir / "dangling.jsonl");
  EXPECT_NE(error_of((dir / "dangling.jsonl").string()).find("a symbolic link to a missing path"), std::string::npos);

  const std::string sock = (dir / "s.jsonl").string();
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(sock.size(), sizeof addr.sun_path);
  std::copy(sock.begin(), sock.end(), addr.sun_path);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0)
    EXPECT_NE(error_of(sock).find("this path is a socket"), std::string::npos) << error_of(sock);
  ::close(fd);
}

TEST(DatasetPaths, AFolderOrGlobHoldingAFifoNamesIt) {
  const fs::path dir = scratch_dir() / "d";
  fs::create_directories(dir);
  std::ofstream(dir / "a.jsonl") << kRow << "\n";
  ASSERT_EQ(::mkfifo((dir / "b.jsonl").c_str(), 0644), 0);
  const std::string fifo = (dir / "b.jsonl").string();
  EXPECT_NE(error_of(dir.string()).find(fifo + ": this path is a FIFO"), std::string::npos) << error_of(dir.string());
  const std::string glob = (dir / "*.jsonl").string();
  EXPECT_NE(error_of(glob).find(fifo + ": this path is a FIFO"), std::string::npos) << error_of(glob);
  // A sub-folder matched by a glob is left out, as before.
  fs::remove(dir / "b.jsonl");
  fs::create_directories(dir / "sub.jsonl");
  EXPECT_EQ(expand_paths(glob), std::vector<std::string>{(dir / "a.jsonl").string()});
  EXPECT_EQ(expand_paths(dir.string()), std::vector<std::string>{(dir / "a.jsonl").string()});
}

TEST(DatasetPaths, ARepeatedKeyInALineNamesFileLineAndKey) {
  const fs::path p = scratch_dir() / "dup.jsonl";
  std::ofstream(p) << kRow << "\n"
                   << R"({"prompt": "p", "chosen": "a", "rejected": "b", "chosen": "c"})" << "\n"
                   << R"({"messages": [{"author": "user", "content": "x", "content": "y"}], "chosen": "a", "rejected": "b"})"
                   << "\n";
  const std::string e = error_of(p.string());
  EXPECT_NE(e.find(p.string() + ":2: key 'chosen' appears twice"), std::string::npos) << e;
  EXPECT_NE(e.find(p.string() + ":3: key 'content' appears twice"), std::string::npos) << e;
  // With skip_invalid both lines are left out and counted.
  ReadReport report;
  auto rows = read_preference_dataset(p.string(), {.skip_invalid = true}, &report);
  EXPECT_EQ(rows.size(), 1u);
  EXPECT_EQ(report.skipped, 2u);
}

}  // namespace
}  // namespace rlhf::data
