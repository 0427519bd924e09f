// Output folders: a command writes only into a new or empty folder or its own earlier output
// (marked with .rlhf); everything else is refused before any work, touching nothing. Also
// the path kinds readers refuse by name (FIFO, device, symbolic-link loop).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "rlhf/util/error.h"
#include "rlhf/util/output_dir.h"
#include "rlhf/util/path_kind.h"
#include "test_util.h"

namespace rlhf {
namespace {

using rlhf::testing::error_of;

namespace fs = std::filesystem;
using testing::read_text;
using testing::scratch_dir;

const OutputClaim kTrainer{.command = "train-reward", .own = {"reward_model.json", "checkpoints", "logs"}};

TEST(OutputDir, ANewFolderIsCreatedAndMarked) {
  const fs::path out = scratch_dir() / "a" / "b";
  EXPECT_FALSE(claim_output_dir(out.string(), kTrainer));
  ASSERT_TRUE(fs::is_directory(out));
  const auto marker = nlohmann::json::parse(read_text(out / kMarkerFile));
  EXPECT_EQ(marker["command"], "train-reward");
  // Claimed again before anything was written: still a fresh folder, no resume needed.
  EXPECT_FALSE(claim_output_dir(out.string(), kTrainer));
}

TEST(OutputDir, AnEmptyFolderIsClaimed) {
  const fs::path out = scratch_dir() / "empty";
  fs::create_directories(out);
  EXPECT_FALSE(claim_output_dir(out.string(), kTrainer));
  EXPECT_TRUE(fs::exists(out / kMarkerFile));
}

TEST(OutputDir, AFolderWithOtherFilesIsRefusedAndLeftAsItWas) {
  const fs::path out = scratch_dir() / "mine";
  fs::create_directories(out / "sub");
  std::ofstream(out / "reward_model.json") << "my own notes";  // same name as the command's file
  std::ofstream(out / "sub" / "x.txt") << "x";
  for (OutputClaim c : {kTrainer, OutputClaim{.command = "train-reward", .own = kTrainer.own, .resume = true},
                        OutputClaim{.command = "train-reward", .own = kTrainer.own, .overwrite = true}}) {
    const std::string e = error_of([&] { claim_output_dir(out.string(), c); });
    EXPECT_NE(e.find(out.string()), std::string::npos) << e;
    EXPECT_NE(e.find("first: reward_model.json"), std::string::npos) << e;
    EXPECT_NE(e.find("--output"), std::string::npos) << e;
  }
  EXPECT_FALSE(fs::exists(out / kMarkerFile));
  EXPECT_EQ(read_text(out / "reward_model.json"), "my own notes");
  EXPECT_EQ(read_text(out / "sub" / "x.txt"), "x");
}

TEST(OutputDir, APathThatIsNotAFolderIsRefused) {
  const fs::path dir = scratch_dir();
  std::ofstream(dir / "file") << "data";
  std::string e = error_of([&] { claim_output_dir((dir / "file").string(), kTrainer); });
  EXPECT_NE(e.find("is a regular file, not a folder"), std::string::npos) << e;
  EXPECT_EQ(read_text(dir / "file"), "data");
  ASSERT_EQ(::mkfifo((dir / "fifo").c_str(), 0644), 0);
  e = error_of([&] { claim_output_dir((dir / "fifo").string(), kTrainer); });
  EXPECT_NE(e.find("FIFO"), std::string::npos) << e;
  e = error_of([&] { claim_output_dir("", kTrainer); });
  EXPECT_NE(e.find("--output is empty"), std::string::npos) << e;
}

TEST(OutputDir, AnEarlierRunNeedsResumeOrOverwrite) {
  const fs::path out = scratch_dir() / "run";
  claim_output_dir(out.string(), kTrainer);
  fs::create_directories(out / "checkpoints" / "step-0000005");
  std::ofstream(out / "checkpoints" / "step-0000005" / "trainer_state.json") << "{}";
  std::ofstream(out / "reward_model.json.tmp.1234") << "torn";  // left by a kill
  const std::string e = error_of([&] { claim_output_dir(out.string(), kTrainer); });
  EXPECT_NE(e.find("holds an earlier `rlhf train-reward` run"), std::string::npos) << e;
  EXPECT_NE(e.find("pass --resume"), std::string::npos) << e;

  OutputClaim resume = kTrainer;
  resume.resume = true;
  EXPECT_TRUE(claim_output_dir(out.string(), resume));
  EXPECT_TRUE(fs::exists(out / "checkpoints" / "step-0000005" / "trainer_state.json"));

  OutputClaim overwrite = kTrainer;
  overwrite.overwrite = true;
  EXPECT_FALSE(claim_output_dir(out.string(), overwrite));
  EXPECT_FALSE(fs::exists(out / "checkpoints"));
  EXPECT_FALSE(fs::exists(out / "reward_model.json.tmp.1234"));
  EXPECT_TRUE(fs::exists(out / kMarkerFile));
}

TEST(OutputDir, AnEarlierRunWithAForeignFileIsRefusedEvenWithOverwrite) {
  const fs::path out = scratch_dir() / "run";
  claim_output_dir(out.string(), kTrainer);
  fs::create_directories(out / "checkpoints");
  std::ofstream(out / "zzz.txt") << "not the program's";
  OutputClaim overwrite = kTrainer;
  overwrite.overwrite = true;
  const std::string e = error_of([&] { claim_output_dir(out.string(), overwrite); });
  EXPECT_NE(e.find("first: zzz.txt"), std::string::npos) << e;
  EXPECT_TRUE(fs::exists(out / "checkpoints"));
  EXPECT_EQ(read_text(out / "zzz.txt"), "not the program's");
}

TEST(OutputDir, CheckingChangesNothing) {
  const fs::path dir = scratch_dir();
  EXPECT_FALSE(check_output_dir((dir / "new").string(), kTrainer));
  EXPECT_FALSE(fs::exists(dir / "new"));
  fs::create_directories(dir / "empty");
  EXPECT_FALSE(check_output_dir((dir / "empty").string(), kTrainer));
  EXPECT_TRUE(fs::is_empty(dir / "empty"));
  claim_output_dir((dir / "run").string(), kTrainer);
  fs::create_directories(dir / "run" / "checkpoints");
  OutputClaim overwrite = kTrainer;
  overwrite.overwrite = true;
  EXPECT_FALSE(check_output_dir((dir / "run").string(), overwrite));
  EXPECT_TRUE(fs::exists(dir / "run" / "checkpoints"));
  EXPECT_THROW(check_output_dir((dir / "run").string(), kTrainer), Error);
  std::ofstream(dir / "empty" / "x") << "x";
  EXPECT_THROW(check_output_dir((dir / "empty").string(), kTrainer), Error);
}

TEST(OutputDir, AnotherCommandsFolderIsRefused) {
  const fs::path out = scratch_dir() / "x";
  claim_output_dir(out.string(), {.command = "autosxs", .own = {"metrics.json"}});
  const std::string e = error_of([&] { claim_output_dir(out.string(), kTrainer); });
  EXPECT_NE(e.find("holds the output of `rlhf autosxs`"), std::string::npos) << e;
  // A marker this program did not write is not taken for one.
  std::ofstream(out / kMarkerFile) << "hello";
  const std::string e2 = error_of([&] { claim_output_dir(out.string(), {.command = "autosxs"}); });
  EXPECT_NE(e2.find("was not written by rlhf"), std::string::npos) << e2;
}

TEST(OutputDir, OwnPatternsMatchByPrefix) {
  const fs::path out = scratch_dir() / "x";
  const OutputClaim c{.command = "c", .own = {"step-*"}, .resume = true};
  claim_output_dir(out.string(), c);
  std::ofstream(out / "step-1") << "";
  EXPECT_TRUE(claim_output_dir(out.string(), c));
  std::ofstream(out / "stop-1") << "";
  EXPECT_THROW(claim_output_dir(out.string(), c), Error);
}

TEST(OutputFile, OnlyAMissingEmptyOrOwnFileIsReplaced) {
  const fs::path dir = scratch_dir();
  auto ours = [](const std::string& p) { return read_text(p).starts_with("OURS"); };
  EXPECT_NO_THROW(check_output_file((dir / "new.jsonl").string(), "label", "--output", ours));
  std::ofstream(dir / "empty.jsonl") << "";
  EXPECT_NO_THROW(check_output_file((dir / "empty.jsonl").string(), "label", "--output", ours));
  std::ofstream(dir / "own.jsonl") << "OURS\n";
  EXPECT_NO_THROW(check_output_file((dir / "own.jsonl").string(), "label", "--output", ours));
  std::ofstream(dir / "theirs.jsonl") << "theirs\n";
  std::string e = error_of([&] { check_output_file((dir / "theirs.jsonl").string(), "label", "--output", ours); });
  EXPECT_NE(e.find("was not written by `rlhf label`"), std::string::npos) << e;
  e = error_of([&] { check_output_file(dir.string(), "label", "--output", ours); });
  EXPECT_NE(e.find("is a folder"), std::string::npos) << e;
  e = error_of([&] { check_output_file("/dev/null", "label", "--output", ours); });
  EXPECT_NE(e.find("character device"), std::string::npos) << e;
}

TEST(PathKind, NamesWhatAPathIs) {
  const fs::path dir = scratch_dir();
  std::ofstream(dir / "f") << "x";
  ASSERT_EQ(::mkfifo((dir / "fifo").c_str(), 0644), 0);
  fs::create_symlink("loop", dir / "loop");
  fs::create_symlink("nowhere", dir / "dangling");
  EXPECT_EQ(inspect_path((dir / "f").string()).kind, PathKind::File);
  EXPECT_EQ(inspect_path(dir.string()).kind, PathKind::Folder);
  EXPECT_EQ(inspect_path((dir / "missing").string()).kind, PathKind::Missing);
  EXPECT_EQ(inspect_path((dir / "f" / "below").string()).kind, PathKind::Missing);
  EXPECT_EQ(inspect_path((dir / "fifo").string()).words, "a FIFO (named pipe)");
  EXPECT_EQ(inspect_path((dir / "loop").string()).words, "a symbolic link loop");
  EXPECT_EQ(inspect_path((dir / "dangling").string()).words, "a symbolic link to a missing path");
  EXPECT_EQ(inspect_path("/dev/zero").words, "a character device");
}

}  // namespace
}  // namespace rlhf
