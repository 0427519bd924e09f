// Dataset files: the bytes as a file read as preference, prompt and scored rows, first with
// the defaults (any bad line fails the read) and then leaving bad lines out. The readers tell
// the file's kind by its first bytes, not its name: gzip's magic (1f 8b) is decompressed as
// JSONL (.jsonl.gz), "PAR1" read as Parquet through Arrow, anything else as JSONL; the seeds
// (fuzz/make_corpus.py) hold each kind.
#include <cstdint>
#include <string>

#include "fuzz_input.h"
#include "rlhf/data/dataset.h"
#include "rlhf/util/error.h"

namespace {

template <class Read>
void read_both_ways(const std::string& path, Read read) {
  for (bool skip_invalid : {false, true}) {
    rlhf::data::ReadOptions options;
    options.skip_invalid = skip_invalid;
    rlhf::data::ReadReport report;
    try {
      const auto rows = read(path, options, &report);
      rlhf::fuzz::check(!rows.empty() && rows.size() == report.rows, "a read gives rows and counts them");
      for (const auto& r : rows) rlhf::fuzz::check(!r.where.empty(), "each row names its line");
    } catch (const rlhf::Error&) {
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = rlhf::fuzz::write_input(data, size, "rows.jsonl");
  read_both_ways(path, rlhf::data::read_preference_dataset);
  read_both_ways(path, rlhf::data::read_prompt_dataset);
  read_both_ways(path, rlhf::data::read_scored_dataset);
  try {
    (void)rlhf::data::has_preference_fields(path);
  } catch (const rlhf::Error&) {
  }
  return 0;
}
