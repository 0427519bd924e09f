// rlhf curves: the scalar points of TensorBoard event files (ours or other tools'), one
// `tag step value` line each, in file order, so curves can be read without TensorBoard.
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "commands.h"
#include "rlhf/track/tensorboard.h"
#include "rlhf/util/error.h"

namespace rlhf::cli {
namespace {

struct CurvesFlags {
  std::string path;
  std::vector<std::string> tags;  // empty: every tag
};

int run_curves(const CurvesFlags& f) {
  const std::vector<track::ScalarPoint> points = track::read_scalars(f.path);
  if (points.empty()) fail("{}: no TensorBoard scalars there", f.path);
  const std::set<std::string> wanted(f.tags.begin(), f.tags.end());
  std::string out;
  size_t printed = 0;
  for (const auto& p : points) {
    if (!wanted.empty() && !wanted.count(p.tag)) continue;
    out += fmt::format("{} {} {:.9g}\n", p.tag, p.step, p.value);
    ++printed;
  }
  if (printed == 0) {
    std::set<std::string> present;
    for (const auto& p : points) present.insert(p.tag);
    fail("{}: no scalars tagged {} (tags there: {})", f.path, fmt::join(f.tags, ", "), fmt::join(present, ", "));
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

}  // namespace

Command add_curves(CLI::App& app) {
  auto f = std::make_shared<CurvesFlags>();
  auto* c = app.add_subcommand("curves", "print the scalars of TensorBoard event files: `tag step value` lines");
  c->add_option("path", f->path, "an event file, or a folder searched for them")->required();
  c->add_option("--tag,-t", f->tags, "only these tags (repeatable)")->allow_extra_args(false);
  return {c, [f] { return run_curves(*f); }};
}

}  // namespace rlhf::cli
