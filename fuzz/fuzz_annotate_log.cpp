// The annotation event log (annotations.jsonl of an `rlhf annotate` folder): the bytes as the
// log of a session of three items, two annotators, two labels an item, replayed as the export
// and the admin page replay it. Whatever the log holds, a replay ends in rlhf::Error or in
// votes only from an item's own annotators; the seeds (fuzz/make_corpus.py) are logs of it.
#include <cstdint>
#include <filesystem>
#include <string>

#include "fuzz_input.h"
#include "rlhf/annotate/export_prefs.h"
#include "rlhf/annotate/session.h"
#include "rlhf/util/error.h"

namespace {

// The session's folder, made once per process.
const std::string& session_dir() {
  static const std::string dir = [] {
    const std::string d = rlhf::fuzz::scratch_dir() + "/session";
    std::vector<rlhf::annotate::Item> items(3);
    for (size_t i = 0; i < items.size(); ++i) {
      items[i].id = "item-" + std::to_string(i);
      items[i].prompt.text = "question " + std::to_string(i);
      items[i].candidates = {"one", "two"};
    }
    rlhf::annotate::SessionOptions o;
    o.dir = d;
    o.items = &items;
    o.annotators = {"alice", "bob"};
    o.per_item = 2;
    rlhf::annotate::Session::open(o);  // writes session.json and items.jsonl, then unlocks
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string dir = session_dir();
  const std::string log = rlhf::fuzz::write_input(data, size, "session/annotations.jsonl");
  rlhf::annotate::SessionOptions o;
  o.dir = dir;
  o.read_only = true;
  try {
    const auto s = rlhf::annotate::Session::open(o);
    for (const auto& v : s->votes()) {
      rlhf::fuzz::check(v.size() <= 2, "an item has votes from its annotators only");
      for (const auto& [name, c] : v) rlhf::fuzz::check(c >= 0 && c <= 2, "a vote is 0, 1 or tie");
    }
    (void)s->admin().dump();
    rlhf::annotate::ExportOptions e;
    e.dir = dir;
    e.output = rlhf::fuzz::scratch_dir() + "/prefs.jsonl";
    (void)rlhf::annotate::export_preferences(e);
  } catch (const rlhf::Error&) {
  }
  return 0;
}
