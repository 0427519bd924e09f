#include "rlhf/track/metrics.h"

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>
#include <vector>

#include "rlhf/util/csv.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"

namespace rlhf::track {
namespace {

namespace fs = std::filesystem;

constexpr const char* kCsvHeader = "step,tag,value,wall_time\n";

// Shortest text that reads back as the same double; CSV spells NaN and infinities the way
// pandas reads them, JSON (which has no such numbers) as null.
std::string number_text(double v, bool json) {
  if (std::isfinite(v)) return fmt::format("{}", v);
  if (json) return "null";
  return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
}

std::optional<int64_t> leading_int(std::string_view s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p == s.data()) return std::nullopt;
  return v;
}

// The complete lines of a file (a torn last line, with no newline, is dropped).
std::vector<std::string_view> complete_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  for (size_t nl; (nl = text.find('\n', start)) != std::string_view::npos; start = nl + 1)
    lines.push_back(text.substr(start, nl - start));
  return lines;
}

// Keeps the header and the rows of metrics.csv with step <= resume_step; returns the text.
std::string kept_csv(const std::string& path, int64_t resume_step) {
  std::string kept = kCsvHeader;
  if (!fs::exists(path)) return kept;
  const std::string text = read_file(path);
  bool first = true;
  for (std::string_view line : complete_lines(text)) {
    if (std::exchange(first, false) && line.rfind("step,", 0) == 0) continue;  // header
    auto step = leading_int(line);
    if (step && *step <= resume_step) kept.append(line).push_back('\n');
  }
  return kept;
}

// Keeps the lines of metrics.jsonl whose "step" is <= resume_step.
std::string kept_jsonl(const std::string& path, int64_t resume_step) {
  std::string kept;
  if (!fs::exists(path)) return kept;
  const std::string text = read_file(path);
  for (std::string_view line : complete_lines(text)) {
    auto obj = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!obj.is_object() || !obj.contains("step") || !obj["step"].is_number_integer()) continue;
    if (obj["step"].get<int64_t>() <= resume_step) kept.append(line).push_back('\n');
  }
  return kept;
}

std::FILE* open_append(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "ab");
  if (!f) fail("{}: cannot open for writing: {}", path, std::strerror(errno));
  return f;
}

void flush_file(std::FILE* f, const std::string& path) {
  if (f && std::fflush(f) != 0) fail("{}: cannot write: {}", path, std::strerror(errno));
}

}  // namespace

MetricsLogger::MetricsLogger(const std::string& dir, int64_t resume_step) : dir_(dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("{}: cannot create folder: {}", dir, ec.message());
  const std::string csv_path = (fs::path(dir) / "metrics.csv").string();
  const std::string jsonl_path = (fs::path(dir) / "metrics.jsonl").string();
  // A fresh run (resume_step < 0) keeps no rows; a resumed one keeps those up to its checkpoint.
  write_file_atomic(csv_path, kept_csv(csv_path, resume_step));
  write_file_atomic(jsonl_path, kept_jsonl(jsonl_path, resume_step));
  csv_ = open_append(csv_path);
  jsonl_ = open_append(jsonl_path);
  events_ = std::make_unique<EventWriter>(dir);
}

MetricsLogger::MetricsLogger() = default;

MetricsLogger::~MetricsLogger() {
  if (csv_) std::fclose(csv_);
  if (jsonl_) std::fclose(jsonl_);
}

void MetricsLogger::log(int64_t step, const std::map<std::string, double>& scalars) {
  if (!events_) return;  // writes nothing
  using namespace std::chrono;
  const double wall_time = duration<double>(system_clock::now().time_since_epoch()).count();
  std::string csv, json = fmt::format("{{\"step\":{},\"wall_time\":{:.6f}", step, wall_time);
  for (const auto& [tag, value] : scalars) {
    events_->add_scalar(tag, step, value, wall_time);
    csv += fmt::format("{},{},{},{:.6f}\n", step, csv_field(tag), number_text(value, false), wall_time);
    json += fmt::format(",{}:{}", nlohmann::json(tag).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), number_text(value, true));
  }
  json += "}\n";
  if (std::fwrite(csv.data(), 1, csv.size(), csv_) != csv.size() ||
      std::fwrite(json.data(), 1, json.size(), jsonl_) != json.size())
    fail("{}: cannot write metrics: {}", dir_, std::strerror(errno));
  flush();
}

void MetricsLogger::flush() {
  if (!events_) return;
  flush_file(csv_, (fs::path(dir_) / "metrics.csv").string());
  flush_file(jsonl_, (fs::path(dir_) / "metrics.jsonl").string());
  events_->flush();
}

}  // namespace rlhf::track
