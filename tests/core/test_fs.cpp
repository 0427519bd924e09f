// The one write loop of the program: every byte written, an error naming the file.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"
#include "test_util.h"

namespace rlhf {
namespace {

namespace fs = std::filesystem;

TEST(Fs, WriteAllWritesEveryByte) {
  auto dir = rlhf::testing::scratch_dir();
  std::string bytes(3 << 20, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = char(i * 7 + i / 251);
  const fs::path path = dir / "big.bin";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  write_all(fd, bytes, path.string());
  ::close(fd);
  EXPECT_EQ(rlhf::testing::read_text(path), bytes);
}

TEST(Fs, WriteAllErrorNamesTheFile) {
  auto dir = rlhf::testing::scratch_dir();
  const fs::path path = dir / "read-only.txt";
  write_file_atomic(path.string(), "x");
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  try {
    write_all(fd, "more", "the/file/named");
    ADD_FAILURE() << "writing to a read-only descriptor succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the/file/named: write failed"), std::string::npos) << e.what();
  }
  ::close(fd);
}

}  // namespace
}  // namespace rlhf
