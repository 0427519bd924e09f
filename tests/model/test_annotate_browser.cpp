// `rlhf annotate` in a real browser (tests/annotate/browser_checks.py, selenium driving headless
// Chromium): two annotators label ten pairs with clicks and keys (a rationale, undo, a skip),
// the server is killed with SIGKILL half-way and both continue where they were after a restart,
// the admin page shows the Cohen's kappa worked out by hand, the export holds the planned
// majorities, hostile markup in the data stays text, and the API refuses what it must (no
// token, another annotator's item, cross-site forms, bodies over 64 KiB).
#include <gtest/gtest.h>

#include <string>

#include "test_util.h"

namespace {

using rlhf::testing::cli;
using rlhf::testing::scratch_dir;
using rlhf::testing::source_dir;

TEST(AnnotateBrowser, TwoAnnotatorsLabelThroughAKillAndExportTheMajority) {
  RLHF_REQUIRE_VENV(py);
  if (rlhf::testing::run("command -v chromium >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "chromium is not installed (scripts/setup --dev installs it)";
  if (rlhf::testing::run("command -v chromedriver >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "chromedriver is not installed (scripts/setup --dev installs chromium-driver)";
  if (rlhf::testing::run("'" + py + "' -c 'import selenium' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "the dev venv lacks selenium (pip install -r scripts/requirements-dev.txt into .venv)";

  const std::string cmd = "'" + py + "' '" + (source_dir() / "tests" / "annotate" / "browser_checks.py").string() +
                          "' --cli '" + cli() + "' --workdir '" + scratch_dir().string() + "'";
  EXPECT_EQ(rlhf::testing::run(cmd), 0) << cmd;
}

}  // namespace
