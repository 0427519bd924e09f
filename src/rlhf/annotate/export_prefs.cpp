#include "rlhf/annotate/export_prefs.h"

#include <cmath>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "rlhf/annotate/session.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"

namespace rlhf::annotate {

using ojson = nlohmann::ordered_json;

ExportSummary export_preferences(const ExportOptions& o) {
  if (!(o.min_agreement >= 0 && o.min_agreement <= 1)) fail("--min-agreement must be in [0, 1] (got {})", o.min_agreement);
  if (o.output.empty()) fail("give --output");
  SessionOptions so;
  so.dir = o.dir;
  so.read_only = true;
  const auto session = Session::open(so);
  ExportSummary s;
  s.items = session->items();
  const Kappa kappa = session->agreement(&s.measure);
  s.kappa = kappa.value;
  s.kappa_items = kappa.items;
  const auto votes = session->votes();
  std::string out;
  for (size_t i = 0; i < votes.size(); ++i) {
    const auto& v = votes[i];
    if (v.empty()) {
      ++s.no_votes;
      continue;
    }
    int count[3] = {0, 0, 0};
    for (const auto& [name, c] : v) ++count[c];
    int best = 0;
    for (int c = 1; c < 3; ++c)
      if (count[c] > count[best]) best = c;
    int at_best = 0;
    for (int c = 0; c < 3; ++c) at_best += count[c] == count[best];
    if (at_best > 1) {
      ++s.split;
      continue;
    }
    const double agreement = double(count[best]) / double(v.size());
    if (agreement + 1e-12 < o.min_agreement) {
      ++s.below_agreement;
      continue;
    }
    if (best == 2) {
      ++s.ties;
      if (!o.keep_ties) continue;
    }
    const Item& it = session->item(i);
    ojson row;
    row["id"] = it.id;
    put_prompt_fields(row, it.prompt);
    row["candidate_0"] = it.candidates[0];
    row["candidate_1"] = it.candidates[1];
    row["choice"] = best == 2 ? 0 : best;
    if (best == 2) row["tie"] = true;
    ojson names = ojson::array(), by = ojson::object();
    for (const auto& [name, c] : v) {
      names.push_back(name);
      by[name] = c == 2 ? ojson("tie") : ojson(c);
    }
    row["annotators"] = names;
    row["votes"] = by;
    row["agreement"] = std::round(agreement * 10000) / 10000;
    out += row.dump(-1, ' ', false, ojson::error_handler_t::strict) + "\n";
    ++s.written;
    if (v.size() >= 2 && count[best] == static_cast<int>(v.size())) ++s.unanimous;
  }
  write_file_atomic(o.output, out);
  return s;
}

std::string format_export_summary(const ExportSummary& s, bool keep_ties) {
  std::string kappa = "no agreement measure (one annotator)";
  if (!s.measure.empty())
    kappa = fmt::format("{} kappa {} over {} items", s.measure == "cohen" ? "Cohen's" : "Fleiss'",
                        s.kappa ? fmt::format("{:.3f}", *s.kappa) : std::string("n/a"), s.kappa_items);
  return fmt::format(
      "[rlhf] annotate export: {} items, {} written ({} unanimous), {} {}, {} without a majority, {} without votes, "
      "{} below --min-agreement; {}",
      s.items, s.written, s.unanimous, s.ties, keep_ties ? (s.ties == 1 ? "tie kept" : "ties kept")
                                                       : (s.ties == 1 ? "tie left out" : "ties left out"),
      s.split, s.no_votes, s.below_agreement, kappa);
}

}  // namespace rlhf::annotate
