// rlhf: the command-line interface. Each subcommand (cmd_*.cpp) parses its flags and calls
// the library; this file only registers them and turns errors into messages and exit codes.
#include <torch/torch.h>

#include <charconv>
#include <cstdlib>
#include <unistd.h>
#include <set>
#include <cstdio>
#include <string>
#include <vector>
#include <string_view>

#include "commands.h"
#include "rlhf/data/remote.h"
#include "rlhf/util/build_id.h"
#include "rlhf/util/error.h"
#include "rlhf/util/interrupt.h"
#include "rlhf/util/launch.h"

namespace {

// The variable that tells a rank started by `--nproc-per-node N` its N (main sets it for them),
// so that its continue command starts the same N ranks.
constexpr const char* kLaunchedNproc = "RLHF_NPROC_PER_NODE";

// The command line that continues the parsed command after an interruption ("" = none).
// `argv` is the whole line, global flags (--dist-timeout) included.
std::string continue_command(const rlhf::cli::Command& c, int argc, char** argv) {
  using rlhf::cli::Continuation;
  const Continuation how = c.continuation                            ? c.continuation()
                           : c.sub->get_option_no_throw("--resume") ? Continuation::Resume
                                                                     : Continuation::None;
  if (how == Continuation::None) return "";
  std::vector<const char*> args;
  bool has_resume = false;
  const char* nproc = std::getenv(kLaunchedNproc);
  for (int i = 0; i < argc; ++i) {
    if (i == 1 && nproc && std::getenv("RANK")) {
      args.push_back("--nproc-per-node");
      args.push_back(nproc);
    }
    const std::string_view a = argv[i];
    if (i > 0 && how == Continuation::Same && a == "--restart") continue;
    has_resume = has_resume || (i > 0 && (a == "--resume" || a.starts_with("--resume=")));
    args.push_back(argv[i]);
  }
  if (how == Continuation::Resume && !has_resume) args.push_back("--resume");
  return rlhf::interrupt::quote_command_line(static_cast<int>(args.size()), args.data());
}

// libgomp, libtorch's OpenMP, reads its wait policy once, in its own constructor, before main
// (and libc's start-up resets the environment after any earlier hook): by default a waiting
// thread spins (GOMP_SPINCOUNT 300000) before it sleeps, and on a machine whose other cores are
// busy the spinning threads take the time the working ones need (bench/README.md "Threads on a
// shared machine": steps 1.9x slower on 2 threads). Unless the user chose OMP_WAIT_POLICY or
// GOMP_SPINCOUNT, the program runs itself again, once, with OMP_WAIT_POLICY=PASSIVE (set, it
// stops the loop); if that exec fails it carries on as it is.
void wait_passively_unless_chosen(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;
  ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  ::execv("/proc/self/exe", argv);
}

}  // namespace

int main(int argc, char** argv) {
  wait_passively_unless_chosen(argv);
  // --dist-timeout SECONDS, anywhere on the line: how long a collective waits for the other
  // ranks. It sets RLHF_DIST_TIMEOUT for this process (and the ranks --nproc-per-node starts,
  // whose lines keep it) and is left out of the line the commands parse.
  std::vector<char*> parsed;
  for (int i = 0; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (i == 0 || (a != "--dist-timeout" && !a.starts_with("--dist-timeout="))) {
      parsed.push_back(argv[i]);
      continue;
    }
    const bool joined = a.starts_with("--dist-timeout=");
    if (!joined && i + 1 >= argc) {
      std::fprintf(stderr, "error: --dist-timeout needs the seconds a collective waits for the other ranks\n");
      return 2;
    }
    const std::string value = joined ? std::string(a.substr(a.find('=') + 1)) : std::string(argv[++i]);
    try {
      rlhf::parse_dist_timeout(value, "--dist-timeout");
    } catch (const rlhf::Error& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
      return 2;
    }
    ::setenv("RLHF_DIST_TIMEOUT", value.c_str(), 1);
  }

  // --nproc-per-node N, anywhere on the line: start N local ranks of the rest of it.
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a != "--nproc-per-node" && !a.starts_with("--nproc-per-node=")) continue;
    const bool joined = a.starts_with("--nproc-per-node=");
    if (!joined && i + 1 >= argc) {
      std::fprintf(stderr, "error: --nproc-per-node needs a number of ranks\n");
      return 2;
    }
    const std::string value = joined ? std::string(a.substr(a.find('=') + 1)) : std::string(argv[i + 1]);
    int n = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec != std::errc() || end != value.data() + value.size() || n < 1 || n > 1024) {
      std::fprintf(stderr, "error: --nproc-per-node \"%s\": must be a whole number in [1, 1024]\n", value.c_str());
      return 2;
    }
    std::vector<std::string> rest;
    for (int k = 0; k < argc; ++k)
      if (k != i && (joined || k != i + 1)) rest.push_back(argv[k]);
    ::setenv(kLaunchedNproc, value.c_str(), 1);
    try {
      return rlhf::run_local_ranks(n, rest);
    } catch (const rlhf::Error& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
      return 1;
    }
  }
  CLI::App app{"rlhf: tune a language model to human preferences (RLHF), natively"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("rlhf ") + rlhf::build_id());
  app.footer(
      "Distributed jobs (torchrun, srun, or these), anywhere on a command line:\n"
      "  --nproc-per-node N       start N local ranks of the command (the data-parallel commands)\n"
      "  --dist-timeout SECONDS   how long a collective waits for the other ranks before the job fails,\n"
      "                           naming the lost rank (default 600; RLHF_DIST_TIMEOUT)");

  std::vector<rlhf::cli::Command> commands = {
      rlhf::cli::add_generate(app),
      rlhf::cli::add_tokenize(app),
      rlhf::cli::add_models(app),
      rlhf::cli::add_validate(app),
      rlhf::cli::add_curves(app),
      rlhf::cli::add_train_reward(app),
      rlhf::cli::add_train_policy(app),
      rlhf::cli::add_train_dpo(app),
      rlhf::cli::add_score(app),
      rlhf::cli::add_export(app),
      rlhf::cli::add_infer(app),
      rlhf::cli::add_autosxs(app),
      rlhf::cli::add_label(app),
      rlhf::cli::add_sxs(app),
      rlhf::cli::add_pipeline(app),
      rlhf::cli::add_dist_check(app),
      rlhf::cli::add_serve(app),
      rlhf::cli::add_annotate(app),
  };

  try {
    app.parse(static_cast<int>(parsed.size()), parsed.data());
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  rlhf::data::RemoteSession remote;  // object storage clients stopped before main returns
  try {
    for (auto& c : commands) {
      if (!c.sub->parsed()) continue;
      // Under torchrun (or --nproc-per-node) every rank would do the whole work and write the
      // same outputs: only the commands that split their work may run there.
      static const std::set<std::string> kDataParallel = {"autosxs", "dist-check", "infer", "label", "pipeline",
                                                           "score", "train-dpo", "train-policy", "train-reward"};
      if (!kDataParallel.count(c.sub->get_name())) {
        const rlhf::DistEnv job = rlhf::read_dist_env();
        if (job.distributed())
          rlhf::fail("rlhf {} runs in one process; it does not split its work across ranks (the {} launcher started "
                     "{}): run it as one process",
                     c.sub->get_name(), job.launcher, job.world_size);
      }
      rlhf::interrupt::install(continue_command(c, argc, argv));
      if (c.sub->get_option_no_throw("--resume")) rlhf::interrupt::note_kept("no new checkpoint was written");
      return c.run();
    }
  } catch (const rlhf::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "error (torch): %s\n", e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
