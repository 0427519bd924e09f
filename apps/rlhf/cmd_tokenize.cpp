// rlhf tokenize: the token ids of a text; rlhf models: the registered model names.
#include <cstdio>
#include <filesystem>
#include <memory>

#include "commands.h"
#include "rlhf/model/loader.h"
#include "rlhf/model/registry.h"

namespace rlhf::cli {
namespace {

struct TokenizeFlags {
  std::string model = kDefaultModel;
  std::string text;
  bool chat = false;
};

int run_tokenize(const TokenizeFlags& f) {
  ModelFiles files = read_model(f.model, /*weights=*/false);
  std::vector<int32_t> ids;
  if (f.chat) {
    std::vector<text::ChatMessage> turn = {{"user", f.text}};
    ids = files.tokenizer->encode(files.chat_template.apply(turn, true), true);
  } else {
    ids = files.tokenizer->encode(f.text, /*parse_special=*/true);
  }
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
  std::printf("%s\n", line.c_str());
  return 0;
}

int run_models() {
  for (const auto& m : registered_models()) {
    std::string path = registered_model_path(m);
    bool here = std::filesystem::exists(path);
    std::printf("%-24s %s\n  %s %s\n", m.name.c_str(), m.description.c_str(), path.c_str(),
                here ? "(in cache)" : "(not fetched: run scripts/setup)");
  }
  return 0;
}

}  // namespace

Command add_tokenize(CLI::App& app) {
  auto f = std::make_shared<TokenizeFlags>();
  auto* t = app.add_subcommand("tokenize", "print the token ids of a text, space-separated");
  t->add_option("--model,-m,--large-model-reference", f->model, "model whose tokenizer to use")->capture_default_str();
  t->add_option("--text", f->text, "text to tokenize")->required();
  t->add_flag("--chat", f->chat, "apply the chat template first");
  return {t, [f] { return run_tokenize(*f); }};
}

Command add_models(CLI::App& app) {
  auto* m = app.add_subcommand("models", "list registered model names and where each resolves");
  return {m, [] { return run_models(); }};
}

}  // namespace rlhf::cli
