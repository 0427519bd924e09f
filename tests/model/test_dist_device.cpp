// Where a job's all-reduces run: a group made for the CPU (the default) reduces through Gloo;
// one made for a GPU needs a CUDA build, whose program loads the CUDA libraries of .deps/cuda.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sstream>

#include "rlhf/dist/group.h"
#include "rlhf/util/error.h"
#include "test_util.h"

namespace rlhf {
namespace {

// A TCP port nothing listens on now (the kernel's pick).
int free_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    ADD_FAILURE() << "no free port";
  ::close(s);
  return ntohs(a.sin_port);
}

// A job of one rank, served by this process.
DistEnv alone() {
  DistEnv env;
  env.master_addr = "127.0.0.1";
  env.master_port = free_port();
  env.launcher = "test";
  return env;
}

TEST(DistDevice, ACpuGroupSumsThroughGloo) {
  dist::Group group(alone(), std::chrono::seconds(10));
  EXPECT_EQ(group.device(), torch::Device(torch::kCPU));
  group.use_device(torch::kCPU);  // the CPU changes nothing
  EXPECT_EQ(group.device(), torch::Device(torch::kCPU));
  std::vector<torch::Tensor> t{torch::arange(6, torch::kFloat32)};
  group.all_reduce_sum(t);  // one rank: the sum is the tensor itself
  EXPECT_TRUE(torch::equal(t[0], torch::arange(6, torch::kFloat32)));
}

#ifndef RLHF_CUDA
TEST(DistDevice, AGpuGroupInACpuBuildIsRefused) {
  try {
    dist::Group group(alone(), std::chrono::seconds(10), torch::Device("cuda:0"));
    FAIL() << "a CPU build made a group for cuda:0";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("all-reduces on cuda:0 need a CUDA build"), std::string::npos) << e.what();
  }
}
#endif

// A CUDA build's program links libtorch_cuda, and the CUDA libraries resolve to the ones of
// .deps/cuda (scripts/setup --cuda), not to the CPU build's stand-ins beside libtorch_cpu.
TEST(DistDevice, CudaBuildLoadsTheCudaLibrariesOfDepsCuda) {
#ifndef RLHF_CUDA
  GTEST_SKIP() << "CPU build";
#else
  int rc = -1;
  std::string out = testing::capture("ldd " + std::string(RLHF_CLI), &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("libtorch_cuda.so"), std::string::npos) << out;
  EXPECT_EQ(out.find("not found"), std::string::npos) << out;
  std::istringstream lines(out);
  int seen = 0;
  for (std::string line; std::getline(lines, line);) {
    for (const char* lib : {"libcudart.so", "libcupti.so", "libcublas.so", "libnccl.so", "libcudnn.so"}) {
      if (line.find(lib) == std::string::npos) continue;
      ++seen;
      EXPECT_NE(line.find(".deps/cuda/lib/"), std::string::npos) << "resolved outside .deps/cuda: " << line;
    }
  }
  EXPECT_EQ(seen, 5) << out;
#endif
}

}  // namespace
}  // namespace rlhf
