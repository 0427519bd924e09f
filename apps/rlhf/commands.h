// The subcommands of `rlhf`. Each lives in its own cmd_*.cpp: it declares its flags on the
// CLI11 app and returns a runner that calls the library. No command holds program logic.
#pragma once
#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace rlhf::cli {

// What continues a command after Ctrl-C or SIGTERM (the line printed then names it).
enum class Continuation {
  None,    // nothing: it starts over
  Same,    // the same command line (without --restart, which would discard what was kept)
  Resume,  // the same command line with --resume
};

struct Command {
  CLI::App* sub = nullptr;
  std::function<int()> run;  // called when `sub` was parsed; returns the exit code
  // Called after parsing; absent: Resume when `sub` has a --resume option, else None.
  std::function<Continuation()> continuation = {};
};

// Flag checks that speak in plain numbers. A finite number in [lo, hi] (NaN and the
// infinities are refused):
CLI::Validator real_in(double lo, double hi);
// A whole number in [lo, hi]; "-1" for a count is refused, never wrapped around:
CLI::Validator whole_in(int64_t lo, int64_t hi);
// A whole number from 0 to 2^64-1 (a seed); a minus sign is refused:
CLI::Validator unsigned_whole();
// --threads: 0 (all cores) to this many.
inline constexpr int64_t kMaxThreads = 1024;

// Flags every model-running command shares.
struct CommonFlags {
  std::string model;
  std::string dtype = "auto";
  std::string device = "cpu";
  int threads = 0;
};
void add_common(CLI::App* cmd, CommonFlags& f);
// For training: every allocation of `threshold` bytes or more gets its own mapping, returned
// to the system when freed (the RLHF_MMAP_THRESHOLD environment variable overrides it). glibc
// otherwise raises that threshold as big blocks are freed and keeps the freed activations of
// each step cached in its heap: the peak memory nearly doubles. A lower threshold saves
// memory and costs page faults.
void use_mapped_allocations(size_t threshold = 128 * 1024);

Command add_generate(CLI::App& app);
Command add_tokenize(CLI::App& app);
Command add_models(CLI::App& app);
Command add_validate(CLI::App& app);
Command add_curves(CLI::App& app);
Command add_train_reward(CLI::App& app);
Command add_score(CLI::App& app);
Command add_export(CLI::App& app);
Command add_train_policy(CLI::App& app);
Command add_train_dpo(CLI::App& app);
Command add_infer(CLI::App& app);
Command add_autosxs(CLI::App& app);
Command add_label(CLI::App& app);
Command add_sxs(CLI::App& app);
Command add_pipeline(CLI::App& app);
Command add_dist_check(CLI::App& app);
Command add_serve(CLI::App& app);
Command add_annotate(CLI::App& app);

}  // namespace rlhf::cli
