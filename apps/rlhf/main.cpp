// rlhf: the command-line interface. Each subcommand (cmd_*.cpp) parses its flags and calls
// the library; this file only registers them and turns errors into messages and exit codes.
#include <torch/torch.h>

#include <cstdio>

#include "commands.h"
#include "rlhf/util/error.h"

int main(int argc, char** argv) {
  CLI::App app{"rlhf: tune a language model to human preferences (RLHF), natively"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("rlhf ") + RLHF_VERSION);

  std::vector<rlhf::cli::Command> commands = {
      rlhf::cli::add_generate(app),
      rlhf::cli::add_tokenize(app),
      rlhf::cli::add_models(app),
      rlhf::cli::add_validate(app),
      rlhf::cli::add_curves(app),
      rlhf::cli::add_train_reward(app),
      rlhf::cli::add_train_policy(app),
      rlhf::cli::add_score(app),
      rlhf::cli::add_export(app),
      rlhf::cli::add_infer(app),
      rlhf::cli::add_autosxs(app),
      rlhf::cli::add_label(app),
      rlhf::cli::add_sxs(app),
      rlhf::cli::add_pipeline(app),
  };

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& c : commands)
      if (c.sub->parsed()) return c.run();
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
