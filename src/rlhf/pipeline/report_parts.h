// The pieces of the run report (report.h), shared by its files: report_load.cpp reads the run
// directory without ever throwing (a file that cannot be read becomes a note),
// report_sections.cpp draws the stages, curves and parameters, report_sxs.cpp the side by
// side and AutoSxS, and report.cpp puts the page together. Internal to the report.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/pipeline/run_dir.h"

namespace rlhf::pipeline::report {

// ---- values ------------------------------------------------------------------------------

std::string esc(std::string_view s);  // html::escape
// A JSON value as the page shows it (not escaped).
std::string value_text(const nlohmann::json& v);
std::optional<double> number_at(const nlohmann::json& j, const char* key);
std::string string_at(const nlohmann::json& j, const char* key);
// Nested objects as dotted names ("advanced.seed"); arrays and scalars as one value.
void flatten(const nlohmann::json& j, const std::string& prefix, std::vector<std::pair<std::string, std::string>>& out);
// "2026-01-02T03:04:05Z" as Unix time; nullopt when it is not that form.
std::optional<int64_t> parse_utc(const std::string& s);
// p relative to the run directory when it is inside it.
std::string rel(const std::string& run_dir, const std::filesystem::path& p);

// ---- reading, never throwing -------------------------------------------------------------

struct Loaded {
  bool exists = false;
  nlohmann::json value;  // null unless it parsed
  std::string error;     // why it did not
};
Loaded load_json(const std::filesystem::path& p, const std::string& shown);

struct JsonLines {
  bool exists = false;
  std::vector<nlohmann::json> rows;  // the first `limit` objects
  size_t lines = 0;                  // non-blank lines in the file
  size_t bad = 0;                    // lines that are not a JSON object
  std::string first_error;
};
JsonLines load_jsonl(const std::filesystem::path& p, const std::string& shown, size_t limit);

// ---- stages ------------------------------------------------------------------------------

struct StageView {
  std::string name, title, key;
  std::vector<std::string> deps;
  std::string state;  // pending, stale, running, interrupted, done, cached, failed, unreadable
  std::optional<Manifest> manifest;
  std::string note;   // why the manifest could not be read
};

// The plan's stages with their states (the rules are in report.h).
std::vector<StageView> read_stages(const std::string& run_dir, const nlohmann::json& plan);
// The colour class of a state: done, cached, running, interrupted, failed or pending.
const char* state_class(const std::string& state);
std::string state_label(const StageView& s);
// Seconds the stage ran (so far, when it is running).
double wall_seconds(const StageView& s, int64_t now);

// ---- sections (each a <section> with its id) -----------------------------------------------

std::string stages_section(const std::vector<StageView>& stages, int64_t now);
std::string curves_section(const std::string& run_dir, const std::vector<StageView>& stages);
// plan.json's spec, the compiled model and data, and the advanced block, as tables.
std::string params_section(const nlohmann::json& plan);
// *labels receives the sides' labels ({"a": ..., "b": ...}) for the AutoSxS section.
std::string sxs_section(const std::string& run_dir, const std::vector<StageView>& stages, nlohmann::json* labels);
std::string autosxs_section(const std::string& run_dir, const std::vector<StageView>& stages,
                            const nlohmann::json& labels);

}  // namespace rlhf::pipeline::report
