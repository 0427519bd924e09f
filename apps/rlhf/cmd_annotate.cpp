// rlhf annotate: a web page where people label pairs, and `rlhf annotate export`, their labels
// as a preference dataset (docs/annotate.md).
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "commands.h"
#include "rlhf/annotate/export_prefs.h"
#include "rlhf/annotate/server.h"
#include "rlhf/annotate/session.h"
#include "rlhf/text/utf8.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"

namespace rlhf::cli {
namespace {

constexpr size_t kMaxGuidelinesBytes = size_t(1) << 20;

struct AnnotateFlags {
  std::string pairs;
  std::vector<std::string> from_infer;
  std::string output;
  std::vector<std::string> annotators;
  std::string annotators_file;
  int64_t per_item = 0;
  std::string guidelines;
  annotate::ServerConfig server;
  CLI::App* export_cmd = nullptr;
  annotate::ExportOptions exports;
};

std::vector<std::string> names_from_file(const std::string& path) {
  std::vector<std::string> names;
  const std::string text = read_file(path, size_t(1) << 20);
  size_t line = 0, start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string name = text.substr(start, end - start);
    ++line;
    while (!name.empty() && (name.back() == '\r' || name.back() == ' ' || name.back() == '\t')) name.pop_back();
    while (!name.empty() && (name.front() == ' ' || name.front() == '\t')) name.erase(0, 1);
    if (!name.empty() && name[0] != '#') names.push_back(name);
    start = end + 1;
  }
  if (names.empty()) fail("{}: no annotator names (one a line)", path);
  return names;
}

int run_annotate(AnnotateFlags& f) {
  if (f.export_cmd->parsed()) {
    const auto s = annotate::export_preferences(f.exports);
    std::fprintf(stderr, "%s\n", annotate::format_export_summary(s, f.exports.keep_ties).c_str());
    std::fprintf(stderr, "[rlhf] wrote %s\n", f.exports.output.c_str());
    return 0;
  }
  if (f.output.empty()) fail("give --output DIR (the folder that keeps the session)");
  if (!f.pairs.empty() && !f.from_infer.empty()) fail("give --pairs or --from-infer, not both");
  annotate::SessionOptions o;
  o.dir = f.output;
  std::vector<annotate::Item> items;
  if (!f.pairs.empty()) {
    items = annotate::read_pairs(f.pairs);
    o.source = f.pairs;
  } else if (!f.from_infer.empty()) {
    items = annotate::pair_inference_outputs(f.from_infer[0], f.from_infer[1]);
    o.source = f.from_infer[0] + " + " + f.from_infer[1];
  }
  if (!f.pairs.empty() || !f.from_infer.empty()) o.items = &items;
  if (!f.annotators.empty() && !f.annotators_file.empty()) fail("give --annotators or --annotators-file, not both");
  o.annotators = f.annotators_file.empty() ? f.annotators : names_from_file(f.annotators_file);
  o.per_item = f.per_item;
  if (!f.guidelines.empty()) {
    std::string text = read_file(f.guidelines, kMaxGuidelinesBytes);
    if (text::utf8::sanitize(text) != text) fail("{}: not valid UTF-8", f.guidelines);
    o.guidelines = std::move(text);
  }
  auto session = annotate::Session::open(o);
  return annotate::annotate_until_signal(*session, f.server);
}

}  // namespace

Command add_annotate(CLI::App& app) {
  auto f = std::make_shared<AnnotateFlags>();
  auto* a = app.add_subcommand("annotate", "serve a web page where people label pairs (docs/annotate.md)");
  a->add_option("--pairs", f->pairs,
                "pairs to label: rows with input_text (or prompt, messages), candidate_0, candidate_1 and an optional id");
  a->add_option("--from-infer", f->from_infer, "A.jsonl B.jsonl: pair two bulk-inference outputs as `rlhf sxs` does")
      ->expected(2);
  a->add_option("--output", f->output, "the folder that keeps the session (a new one, or one to resume)");
  a->add_option("--annotators", f->annotators, "names, comma-separated (default: one named 'annotator')")
      ->delimiter(',');
  a->add_option("--annotators-file", f->annotators_file, "a file of annotator names, one a line");
  a->add_option("--per-item", f->per_item, "K: each item goes to K different annotators (default 1)")
      ->check(whole_in(1, 1000));
  a->add_option("--guidelines", f->guidelines, "a text file shown at the top of the page");
  a->add_option("--host", f->server.host, "address to listen on (other than loopback: other machines reach it)")
      ->capture_default_str();
  a->add_option("--port", f->server.port, "port (0 = a free one; the line '[rlhf] annotating on ...' says which)")
      ->capture_default_str()
      ->check(whole_in(0, 65535));

  f->export_cmd = a->add_subcommand("export", "write an annotation folder's labels as a preference dataset");
  f->export_cmd->add_option("dir", f->exports.dir, "the `rlhf annotate --output` folder")->required();
  f->export_cmd->add_option("--output", f->exports.output, "the preference JSONL to write")->required();
  f->export_cmd->add_flag("--keep-ties", f->exports.keep_ties,
                          "write items whose majority is a tie, marked \"tie\": true (choice 0)");
  f->export_cmd->add_option("--min-agreement", f->exports.min_agreement,
                            "leave out items whose majority holds less than this share of the votes")
      ->capture_default_str()
      ->check(real_in(0.0, 1.0));
  a->require_subcommand(0, 1);
  return {a, [f] { return run_annotate(*f); }};
}

}  // namespace rlhf::cli
