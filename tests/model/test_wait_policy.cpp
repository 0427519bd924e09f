// The rlhf program's OpenMP threads wait passively unless the user chose a wait policy: libgomp
// prints what it read (OMP_DISPLAY_ENV=verbose) each time it starts, the re-run included.
#include <gtest/gtest.h>

#include <string>

#include "test_util.h"

namespace {

// libgomp's report of `--version` run with `env` (the user's own OpenMP settings removed first).
std::string openmp_report(const std::string& env) {
  int status = 0;
  const std::string out = rlhf::testing::capture(
      "env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT OMP_DISPLAY_ENV=verbose " + env + " " + rlhf::testing::cli() +
          " --version",
      &status, /*merge_stderr=*/true);
  EXPECT_EQ(status, 0) << out;
  return out;
}

TEST(WaitPolicy, PassiveByDefault) {
  const std::string out = openmp_report("");
  if (out.find("GOMP_SPINCOUNT") == std::string::npos) GTEST_SKIP() << "not GNU libgomp:\n" << out;
  // The first start spins by default; the run it hands over to does not.
  EXPECT_NE(out.find("GOMP_SPINCOUNT = '0'"), std::string::npos) << out;
  EXPECT_NE(out.find("rlhf"), std::string::npos) << out;
}

TEST(WaitPolicy, TheUsersPolicyWins) {
  const std::string active = openmp_report("OMP_WAIT_POLICY=ACTIVE");
  if (active.find("GOMP_SPINCOUNT") == std::string::npos) GTEST_SKIP() << "not GNU libgomp:\n" << active;
  EXPECT_NE(active.find("OMP_WAIT_POLICY = 'ACTIVE'"), std::string::npos) << active;
  EXPECT_EQ(active.find("OMP_WAIT_POLICY = 'PASSIVE'"), std::string::npos) << active;

  const std::string spin = openmp_report("GOMP_SPINCOUNT=1000");
  EXPECT_NE(spin.find("GOMP_SPINCOUNT = '1000'"), std::string::npos) << spin;
  EXPECT_EQ(spin.find("GOMP_SPINCOUNT = '0'"), std::string::npos) << spin;
  // Started once: one report.
  EXPECT_EQ(spin.find("OPENMP DISPLAY ENVIRONMENT BEGIN"), spin.rfind("OPENMP DISPLAY ENVIRONMENT BEGIN")) << spin;
}

}  // namespace
