// `rlhf annotate export`: an annotation folder's labels as a preference dataset in the seed's
// format (input_text or messages, candidate_0, candidate_1, choice), one line per item with a
// majority among its votes, plus id, annotators, votes and agreement (the majority's share).
// `train-reward` and `train-dpo` read the file as it is. Torch-free.
#pragma once
#include <cstddef>
#include <optional>
#include <string>

namespace rlhf::annotate {

struct ExportOptions {
  std::string dir;             // the `rlhf annotate --output` folder
  std::string output;          // the JSONL file, written atomically
  bool keep_ties = false;      // write tie majorities with "tie": true and choice 0
  double min_agreement = 0;    // leave out items whose majority share is below this
};

struct ExportSummary {
  size_t items = 0, written = 0, unanimous = 0;  // unanimous: written with 2+ votes, all alike
  size_t ties = 0;          // majority "tie" (written with keep_ties, else left out)
  size_t split = 0;         // no majority (as many votes for two choices)
  size_t no_votes = 0;      // nobody voted (not labeled yet, or only skipped)
  size_t below_agreement = 0;
  std::string measure;      // "cohen", "fleiss" or "" (one annotator)
  std::optional<double> kappa;
  size_t kappa_items = 0;
};

// Throws rlhf::Error for a folder that is not an annotation session, or an unwritable output.
ExportSummary export_preferences(const ExportOptions& options);

// "[rlhf] annotate export: 10 items, 8 written (6 unanimous), ..." as docs/annotate.md shows it.
std::string format_export_summary(const ExportSummary& s, bool keep_ties);

}  // namespace rlhf::annotate
