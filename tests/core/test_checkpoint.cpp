// Training checkpoints on disk: a checkpoint appears whole or not at all, the newest N are
// kept, the newest complete one is found, a killed run's leftovers are cleaned, and a resume
// with other settings is refused naming each one.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "rlhf/train/checkpoint.h"
#include "rlhf/util/error.h"
#include "test_util.h"

namespace rlhf::checkpoint {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json state(int64_t step) { return {{"step", step}, {"fingerprint", {{"lr", 1e-4}, {"data", "abc"}}}}; }

void save_step(const fs::path& root, int64_t step, int64_t keep = 10) {
  save(root.string(), step, keep, state(step), [&](const std::string& dir) {
    std::ofstream(fs::path(dir) / "weights.bin") << "step " << step;
  });
}

std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(Checkpoint, SaveWritesTheFilesAndTheStateLast) {
  auto root = rlhf::testing::scratch_dir();
  EXPECT_EQ(step_name(42), "step-0000042");
  EXPECT_EQ(latest(root.string()), "");
  save_step(root, 3);
  const fs::path dir = root / "checkpoints" / "step-0000003";
  EXPECT_EQ(entries(dir), (std::vector<std::string>{"trainer_state.json", "weights.bin"}));
  EXPECT_EQ(rlhf::testing::read_text(dir / "weights.bin"), "step 3");
  EXPECT_EQ(read_state(dir.string()), state(3));
  EXPECT_EQ(entries(root / "checkpoints"), (std::vector<std::string>{"step-0000003"})) << "no temporary folder left";
  EXPECT_EQ(latest(root.string()), dir.string());
}

TEST(Checkpoint, AFailedSaveLeavesThePreviousCheckpoint) {
  auto root = rlhf::testing::scratch_dir();
  save_step(root, 1);
  EXPECT_THROW(save(root.string(), 2, 10, state(2),
                    [](const std::string& dir) {
                      std::ofstream(fs::path(dir) / "weights.bin") << "half";
                      throw std::runtime_error("disk full");
                    }),
               std::runtime_error);
  EXPECT_FALSE(fs::exists(root / "checkpoints" / "step-0000002"));
  EXPECT_EQ(latest(root.string()), (root / "checkpoints" / "step-0000001").string());
  // The next save clears what the failed one left.
  save_step(root, 3);
  EXPECT_EQ(entries(root / "checkpoints"), (std::vector<std::string>{"step-0000001", "step-0000003"}));
}

TEST(Checkpoint, KeepsTheNewestN) {
  auto root = rlhf::testing::scratch_dir();
  for (int64_t step : {5, 10, 15, 20, 25}) save_step(root, step, 2);
  EXPECT_EQ(entries(root / "checkpoints"), (std::vector<std::string>{"step-0000020", "step-0000025"}));
  save_step(root, 30, 1);
  EXPECT_EQ(entries(root / "checkpoints"), (std::vector<std::string>{"step-0000030"}));
}

TEST(Checkpoint, LatestIsTheHighestCompleteStep) {
  auto root = rlhf::testing::scratch_dir();
  save_step(root, 9);
  save_step(root, 10);
  // A folder without trainer_state.json (a copy cut short) and a killed save's temporary folder.
  fs::create_directories(root / "checkpoints" / "step-0000011");
  std::ofstream(root / "checkpoints" / "step-0000011" / "weights.bin") << "partial";
  fs::create_directories(root / "checkpoints" / ".step-0000012.tmp-99999");
  std::ofstream(root / "checkpoints" / ".step-0000012.tmp-99999" / "trainer_state.json") << state(12).dump();
  EXPECT_EQ(latest(root.string()), (root / "checkpoints" / "step-0000010").string());
}

TEST(Checkpoint, ReadStateNamesTheFileWhenItIsNotAState) {
  auto dir = rlhf::testing::scratch_dir();
  auto message = [&](const std::string& text) {
    std::ofstream(dir / "trainer_state.json") << text;
    try {
      read_state(dir.string());
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  for (const std::string bad : {"{not json", R"({"step": 3})", R"({"fingerprint": {}})", R"({"step": "3", "fingerprint": {}})",
                                "[1, 2]"}) {
    const std::string e = message(bad);
    EXPECT_NE(e.find((dir / "trainer_state.json").string()), std::string::npos) << bad << ": " << e;
  }
  EXPECT_EQ(message(state(4).dump()), "accepted");
}

TEST(Checkpoint, AResumeWithOtherSettingsIsRefusedNamingEach) {
  const json saved = state(7);
  EXPECT_NO_THROW(check_fingerprint(saved, saved["fingerprint"], "ckpt"));
  try {
    check_fingerprint(saved, {{"lr", 2e-4}, {"data", "abc"}, {"seed", 1}}, "ckpt");
    ADD_FAILURE() << "a changed fingerprint was accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("ckpt"), std::string::npos) << m;
    EXPECT_NE(m.find("lr"), std::string::npos) << m;
    EXPECT_NE(m.find("seed"), std::string::npos) << "a setting the checkpoint lacks: " << m;
    EXPECT_EQ(m.find("data"), std::string::npos) << "an unchanged one is not named: " << m;
  }
}

}  // namespace
}  // namespace rlhf::checkpoint
