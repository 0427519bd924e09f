#include "rlhf/pipeline/report.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "rlhf/eval/sxs.h"
#include "rlhf/pipeline/run_dir.h"
#include "rlhf/pipeline/status.h"
#include "rlhf/track/tensorboard.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"

namespace rlhf::pipeline {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr size_t kSxsRows = 100;       // rows of the side-by-side table in the page
constexpr size_t kJudgments = 20;      // AutoSxS judgments in the page
constexpr size_t kChartPoints = 1200;  // beyond this a series is thinned (min and max per bucket)

std::string esc(std::string_view s) { return eval::html_escape(s); }

// ---- values ------------------------------------------------------------------------------

std::string num(double v, int digits = 4) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == 0) return "0";
  const double a = std::fabs(v);
  if (a >= 1e4 && a < 1e9 && digits <= 4) return fmt::format("{:.0f}", v);
  std::string t = fmt::format("{:.{}g}", v, digits);
  // 9.833e-05 -> 9.833e-5: narrower on an axis.
  if (size_t e = t.find('e'); e != std::string::npos) {
    std::string mant = t.substr(0, e), exp = t.substr(e + 1);
    const bool neg = exp[0] == '-';
    if (exp[0] == '-' || exp[0] == '+') exp.erase(0, 1);
    exp.erase(0, std::min(exp.find_first_not_of('0'), exp.size() - 1));
    t = mant + "e" + (neg ? "-" : "") + exp;
  }
  return t;
}

std::string percent(double share) { return fmt::format("{:.1f} %", 100.0 * share); }

// A JSON value as the page shows it (not escaped).
std::string value_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer() || v.is_number_unsigned()) return v.dump();
  if (v.is_number()) return num(v.get<double>());
  if (v.is_null()) return "";
  return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::optional<double> number_at(const json& j, const char* key) {
  if (!j.is_object()) return std::nullopt;
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

std::string string_at(const json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Nested objects as dotted names; arrays and scalars as one value.
void flatten(const json& j, const std::string& prefix, std::vector<std::pair<std::string, std::string>>& out) {
  if (j.is_object() && !j.empty()) {
    for (auto it = j.begin(); it != j.end(); ++it)
      flatten(it.value(), prefix.empty() ? it.key() : prefix + "." + it.key(), out);
    return;
  }
  out.emplace_back(prefix, value_text(j));
}

std::string duration(double s) {
  if (!(s >= 0)) s = 0;
  if (s < 10) return fmt::format("{:.1f} s", s);
  if (s < 60) return fmt::format("{:.0f} s", s);
  const int64_t t = std::llround(s);
  if (t < 3600) return fmt::format("{} min {:02} s", t / 60, t % 60);
  return fmt::format("{} h {:02} min", t / 3600, (t % 3600) / 60);
}

// "2026-01-02T03:04:05Z" as Unix time; nullopt when it is not that form.
std::optional<int64_t> parse_utc(const std::string& s) {
  std::tm tm{};
  char z = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                  &tm.tm_sec, &z) != 7 ||
      z != 'Z')
    return std::nullopt;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return int64_t(timegm(&tm));
}

std::string rel(const std::string& run_dir, const fs::path& p) {
  std::error_code ec;
  fs::path r = fs::relative(p, run_dir, ec);
  return ec || r.empty() ? p.string() : r.string();
}

// ---- reading, never throwing -------------------------------------------------------------

struct Loaded {
  bool exists = false;
  json value;         // null unless it parsed
  std::string error;  // why it did not
};

Loaded load_json(const fs::path& p, const std::string& shown) {
  Loaded l;
  std::error_code ec;
  if (!fs::exists(p, ec)) return l;
  l.exists = true;
  try {
    l.value = json::parse(read_file(p.string(), size_t(64) << 20));
  } catch (const json::parse_error& e) {
    l.error = fmt::format("{}: not valid JSON ({})", shown, e.what());
  } catch (const std::exception& e) {
    l.error = e.what();
  }
  return l;
}

struct JsonLines {
  bool exists = false;
  std::vector<json> rows;  // the first `limit` objects
  size_t lines = 0;        // non-blank lines in the file
  size_t bad = 0;          // lines that are not a JSON object
  std::string first_error;
};

JsonLines load_jsonl(const fs::path& p, const std::string& shown, size_t limit) {
  JsonLines out;
  std::error_code ec;
  if (!fs::exists(p, ec)) return out;
  out.exists = true;
  std::ifstream f(p, std::ios::binary);
  if (!f) {
    out.first_error = fmt::format("{}: cannot open", shown);
    return out;
  }
  size_t lineno = 0;
  for (std::string line; std::getline(f, line);) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    ++out.lines;
    if (out.rows.size() >= limit) continue;
    try {
      json j = json::parse(line);
      if (!j.is_object()) throw std::runtime_error("not a JSON object");
      out.rows.push_back(std::move(j));
    } catch (const std::exception& e) {
      if (out.bad++ == 0) out.first_error = fmt::format("{} line {}: {}", shown, lineno, e.what());
    }
  }
  return out;
}

// ---- stages ------------------------------------------------------------------------------

struct StageView {
  std::string name, title, key;
  std::vector<std::string> deps;
  std::string state;  // pending, stale, running, interrupted, done, cached, failed, unreadable
  std::optional<Manifest> manifest;
  std::string note;   // why the manifest could not be read
};

// The colour class of a state.
const char* state_class(const std::string& state) {
  for (const char* s : {"done", "cached", "running", "interrupted", "failed"})
    if (state == s) return s;
  return state == "unreadable" ? "failed" : "pending";
}

std::optional<int64_t> mtime(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return std::nullopt;
  return int64_t(st.st_mtime);
}

std::vector<StageView> read_stages(const std::string& run_dir, const json& plan) {
  std::vector<StageView> out;
  if (!plan.is_object() || !plan.contains("stages") || !plan["stages"].is_array()) return out;
  const std::optional<int64_t> run_start = mtime(fs::path(run_dir) / "spec.yaml");
  const bool live = run_dir_locked(run_dir);
  std::set<std::string> seen;
  for (const auto& s : plan["stages"]) {
    StageView v;
    v.name = string_at(s, "name");
    if (v.name.empty() || !seen.insert(v.name).second) continue;
    v.title = string_at(s, "title");
    v.key = string_at(s, "key");
    if (auto it = s.find("deps"); it != s.end() && it->is_array())
      for (const auto& d : *it)
        if (d.is_string()) v.deps.push_back(d.get<std::string>());
    try {
      v.manifest = read_manifest(run_dir, v.name);
    } catch (const std::exception& e) {
      v.note = e.what();
    }
    if (!v.note.empty()) {
      v.state = "unreadable";
    } else if (!v.manifest) {
      v.state = "pending";
    } else if (!v.key.empty() && v.manifest->key != v.key) {
      v.state = "stale";  // from other parameters or inputs: runs again
    } else if (v.manifest->state == "done") {
      const auto finished = parse_utc(v.manifest->finished);
      v.state = run_start && finished && *finished < *run_start ? "cached" : "done";
    } else if (v.manifest->state == "running") {
      v.state = live ? "running" : "interrupted";  // no run holds the directory: it was killed
    } else {
      v.state = v.manifest->state;  // failed
    }
    out.push_back(std::move(v));
  }
  return out;
}

std::string state_label(const StageView& s) {
  if (s.state == "stale") return "stale (runs again)";
  if (s.state == "unreadable") return "manifest unreadable";
  return s.state;
}

double wall_seconds(const StageView& s, int64_t now) {
  if (!s.manifest) return 0;
  if (s.state == "running") {
    if (auto started = parse_utc(s.manifest->started)) return double(std::max<int64_t>(0, now - *started));
  }
  return s.manifest->wall_seconds;
}

// The DAG: columns by depth (a stage sits right of everything it depends on), plan order
// down each column, an arrow per dependency.
std::string dag_svg(const std::vector<StageView>& stages, int64_t now) {
  constexpr int kW = 160, kH = 50, kGapX = 46, kGapY = 16, kPad = 10;
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < stages.size(); ++i) index[stages[i].name] = i;
  std::vector<int> layer(stages.size(), 0);
  for (size_t i = 0; i < stages.size(); ++i)
    for (const auto& d : stages[i].deps)
      if (auto it = index.find(d); it != index.end() && it->second < i) layer[i] = std::max(layer[i], layer[it->second] + 1);
  std::vector<std::vector<size_t>> columns;
  for (size_t i = 0; i < stages.size(); ++i) {
    if (size_t(layer[i]) >= columns.size()) columns.resize(layer[i] + 1);
    columns[layer[i]].push_back(i);
  }
  size_t rows = 1;
  for (const auto& c : columns) rows = std::max(rows, c.size());
  const int content_h = int(rows) * kH + (int(rows) - 1) * kGapY;
  const int width = 2 * kPad + int(columns.size()) * kW + (int(columns.size()) - 1) * kGapX;
  std::vector<std::pair<int, int>> at(stages.size());  // top left, before the lanes above are added
  for (size_t c = 0; c < columns.size(); ++c) {
    const int col_h = int(columns[c].size()) * kH + (int(columns[c].size()) - 1) * kGapY;
    for (size_t r = 0; r < columns[c].size(); ++r)
      at[columns[c][r]] = {kPad + int(c) * (kW + kGapX), (content_h - col_h) / 2 + int(r) * (kH + kGapY)};
  }
  // An arrow that would cross a box in a column it skips runs in a lane above or below the
  // boxes instead (each its own), leaving and entering through the gaps between columns.
  struct Edge {
    size_t from, to;
    int side = 0;       // 0: direct; -1: a lane above the boxes; +1: below
    double ly = 0;      // the lane's y
    double sy = 0, ey = 0;  // where it leaves and enters
  };
  std::vector<Edge> edges;
  for (size_t i = 0; i < stages.size(); ++i)
    for (const auto& d : stages[i].deps) {
      auto it = index.find(d);
      if (it == index.end()) continue;
      Edge e{it->second, i};
      const int sy = at[e.from].second + kH / 2, ey = at[i].second + kH / 2;
      bool blocked = false;
      for (int c = layer[e.from] + 1; c < layer[i]; ++c)
        for (size_t k : columns[c])
          blocked |= at[k].second <= std::max(sy, ey) + 4 && at[k].second + kH >= std::min(sy, ey) - 4;
      if (blocked) e.side = sy + ey < content_h ? -1 : 1;
      edges.push_back(e);
    }
  // The lane nearest the boxes goes to the arrow that starts farthest from the lanes: then
  // arrows leaving one column for the lanes do not cross.
  constexpr int kLane = 12;
  std::vector<size_t> up, down;
  for (size_t k = 0; k < edges.size(); ++k)
    if (edges[k].side) (edges[k].side < 0 ? up : down).push_back(k);
  auto source_y = [&](size_t k) { return at[edges[k].from].second; };
  std::stable_sort(up.begin(), up.end(), [&](size_t x, size_t y) { return source_y(x) > source_y(y); });
  std::stable_sort(down.begin(), down.end(), [&](size_t x, size_t y) { return source_y(x) < source_y(y); });
  const int top = kPad + (up.empty() ? 0 : int(up.size()) * kLane + 6);
  const int height = top + content_h + (down.empty() ? 0 : int(down.size()) * kLane + 6) + kPad;
  for (auto& p : at) p.second += top;
  for (size_t j = 0; j < up.size(); ++j) edges[up[j]].ly = top - 6 - (double(j) + 0.5) * kLane;
  for (size_t j = 0; j < down.size(); ++j) edges[down[j]].ly = top + content_h + 6 + (double(j) + 0.5) * kLane;
  // Several arrows at one side of a box leave or enter it a little apart, in the order of
  // where they come from or go to.
  auto approach = [&](const Edge& e, bool at_target) {
    return e.side ? e.ly : double(at[at_target ? e.from : e.to].second);
  };
  for (size_t i = 0; i < stages.size(); ++i)
    for (bool at_target : {false, true}) {
      std::vector<size_t> ks;
      for (size_t k = 0; k < edges.size(); ++k)
        if ((at_target ? edges[k].to : edges[k].from) == i) ks.push_back(k);
      std::stable_sort(ks.begin(), ks.end(),
                       [&](size_t x, size_t y) { return approach(edges[x], at_target) < approach(edges[y], at_target); });
      const double step = ks.size() > 1 ? std::min(10.0, (kH - 20.0) / double(ks.size() - 1)) : 0;
      for (size_t j = 0; j < ks.size(); ++j) {
        const double y = at[i].second + kH / 2.0 + (double(j) - double(ks.size() - 1) / 2) * step;
        (at_target ? edges[ks[j]].ey : edges[ks[j]].sy) = y;
      }
    }
  std::string h = fmt::format(
      "<svg class=\"dag\" id=\"dag\" viewBox=\"0 0 {0} {1}\" width=\"{0}\" height=\"{1}\" role=\"img\" "
      "aria-label=\"stages and their dependencies\">\n",
      width, height);
  h += "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" "
       "orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#7d869a\"/></marker></defs>\n";
  for (const Edge& e : edges) {
    const double sx = at[e.from].first + kW, ex = at[e.to].first - 1, sy = e.sy, ey = e.ey;
    std::string d;
    if (e.side == 0) {
      const double mx = (sx + ex) / 2;
      d = fmt::format("M{},{} C{},{} {},{} {},{}", sx, sy, mx, sy, mx, ey, ex, ey);
    } else {
      const double g = kGapX / 2.0, ly = e.ly;
      d = fmt::format("M{},{} C{},{} {},{} {},{} L{},{} C{},{} {},{} {},{}", sx, sy, sx + g, sy, sx + g, ly, sx + 2 * g - 2,
                      ly, ex - 2 * g + 2, ly, ex - g, ly, ex - g, ey, ex, ey);
    }
    h += fmt::format("<path class=\"edge\" data-from=\"{}\" data-to=\"{}\" d=\"{}\" marker-end=\"url(#arrow)\"/>\n",
                     esc(stages[e.from].name), esc(stages[e.to].name), d);
  }
  for (size_t i = 0; i < stages.size(); ++i) {
    const StageView& s = stages[i];
    const auto [x, y] = at[i];
    std::string sub = state_label(s);
    if (s.state == "unreadable") sub = "unreadable";
    if (s.manifest && (s.state == "done" || s.state == "cached" || s.state == "running" || s.state == "failed"))
      if (double w = wall_seconds(s, now); w > 0) sub += " · " + duration(w);
    h += fmt::format("<g class=\"node {}\" data-stage=\"{}\" data-state=\"{}\"><title>{}{}{}</title>", state_class(s.state),
                     esc(s.name), esc(s.state), esc(s.name), s.title.empty() ? "" : ": ", esc(s.title));
    h += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"7\"/>", x, y, kW, kH);
    h += fmt::format("<text class=\"name\" x=\"{}\" y=\"{}\">{}</text>", x + kW / 2, y + 21, esc(s.name));
    h += fmt::format("<text class=\"state\" x=\"{}\" y=\"{}\">{}</text></g>\n", x + kW / 2, y + 38, esc(sub));
  }
  h += "</svg>\n";
  return h;
}

std::string metrics_cell(const json& metrics) {
  if (!metrics.is_object() || metrics.empty()) return "";
  std::vector<std::pair<std::string, std::string>> flat;
  flatten(metrics, "", flat);
  std::string h;
  for (const auto& [k, v] : flat)
    h += fmt::format("<span class=\"metric\"><span class=\"k\">{}</span> {}</span> ", esc(k), esc(v));
  return h;
}

// ---- curves ------------------------------------------------------------------------------

struct Series {
  std::string tag;
  std::vector<std::pair<int64_t, double>> points;  // by step; a repeated step keeps its last value
};

// The seed's tags first, in this order; then the rest alphabetically.
const std::vector<std::string>& leading_tags(const std::string& stage) {
  static const std::vector<std::string> reward = {"rank_loss", "accuracy", "validation/accuracy"};
  static const std::vector<std::string> policy = {"reward",           "kl_loss",           "rl_loss",
                                                  "objective/kl",     "objective/entropy", "response_length"};
  static const std::vector<std::string> both = [] {
    std::vector<std::string> v = reward;
    v.insert(v.end(), policy.begin(), policy.end());
    return v;
  }();
  if (stage == "train_reward") return reward;
  if (stage == "train_policy") return policy;
  return both;
}

std::vector<Series> order_series(std::map<std::string, std::map<int64_t, double>> by_tag, const std::string& stage) {
  std::vector<Series> out;
  for (const auto& t : leading_tags(stage)) {
    auto it = by_tag.find(t);
    if (it == by_tag.end()) continue;
    out.push_back({t, {it->second.begin(), it->second.end()}});
    by_tag.erase(it);
  }
  for (auto& [t, pts] : by_tag) out.push_back({t, {pts.begin(), pts.end()}});
  return out;
}

// At most `limit` points: the series cut into buckets, each kept as its lowest and highest
// point in step order (the shape of a noisy curve survives).
std::vector<std::pair<int64_t, double>> thin(const std::vector<std::pair<int64_t, double>>& pts, size_t limit) {
  if (pts.size() <= limit) return pts;
  std::vector<std::pair<int64_t, double>> out;
  const size_t buckets = limit / 2;
  for (size_t b = 0; b < buckets; ++b) {
    const size_t from = b * pts.size() / buckets, to = (b + 1) * pts.size() / buckets;
    size_t lo = from, hi = from;
    for (size_t i = from; i < to; ++i) {
      if (pts[i].second < pts[lo].second) lo = i;
      if (pts[i].second > pts[hi].second) hi = i;
    }
    out.push_back(pts[std::min(lo, hi)]);
    if (lo != hi) out.push_back(pts[std::max(lo, hi)]);
  }
  return out;
}

std::string chart_svg(const Series& s) {
  constexpr double W = 320, H = 184, L = 62, R = 14, T = 34, B = 26;
  const double x0 = L, x1 = W - R, y0 = T, y1 = H - B;
  std::vector<std::pair<int64_t, double>> finite;
  for (const auto& p : s.points)
    if (std::isfinite(p.second)) finite.push_back(p);
  const size_t nonfinite = s.points.size() - finite.size();
  std::string title = s.tag;
  if (title.size() > 34) {
    size_t cut = 32;
    while (cut > 0 && (static_cast<unsigned char>(title[cut]) & 0xC0) == 0x80) --cut;  // not inside a UTF-8 sequence
    title = title.substr(0, cut) + "…";
  }
  const auto& last = s.points.back();
  std::string h = fmt::format(
      "<svg class=\"chart\" data-tag=\"{}\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\">"
      "<title>{}: {} points, steps {} to {}{}</title>\n",
      esc(s.tag), W, H, esc(s.tag), esc(s.tag), s.points.size(), s.points.front().first, last.first,
      nonfinite ? fmt::format(", {} not finite", nonfinite) : "");
  h += fmt::format("<text class=\"ct\" x=\"10\" y=\"19\">{}</text>", esc(title));
  h += fmt::format("<text class=\"last\" x=\"{}\" y=\"19\">last {}</text>\n", W - 10, esc(num(last.second)));
  h += fmt::format("<path class=\"axis\" d=\"M{},{} V{} H{}\"/>\n", x0, y0 - 4, y1, x1);
  if (finite.empty()) {
    h += fmt::format("<text class=\"empty\" x=\"{}\" y=\"{}\">no finite values</text></svg>\n", (x0 + x1) / 2, (y0 + y1) / 2);
    return h;
  }
  double lo = finite[0].second, hi = lo;
  for (const auto& p : finite) lo = std::min(lo, p.second), hi = std::max(hi, p.second);
  double dlo = lo, dhi = hi;
  if (dhi - dlo <= 1e-12 * std::max(1.0, std::fabs(dhi))) {
    const double pad = lo == 0 ? 1 : std::fabs(lo) * 0.1;
    dlo -= pad, dhi += pad;
  } else {
    const double pad = (dhi - dlo) * 0.05;
    dlo -= pad, dhi += pad;
  }
  const int64_t s0 = s.points.front().first, s1 = last.first;
  auto X = [&](int64_t step) { return s1 == s0 ? (x0 + x1) / 2 : x0 + (x1 - x0) * double(step - s0) / double(s1 - s0); };
  auto Y = [&](double v) { return y1 - (y1 - y0) * (v - dlo) / (dhi - dlo); };
  // Min and max: a dashed line each, labelled on the axis.
  const bool flat = lo == hi;
  // Labels that tell the minimum from the maximum.
  int digits = 4;
  while (!flat && digits < 10 && num(lo, digits) == num(hi, digits)) ++digits;
  h += fmt::format("<path class=\"grid\" d=\"M{},{:.1f} H{}\"/><text class=\"yl\" x=\"{}\" y=\"{:.1f}\">{}</text>\n", x0,
                   Y(hi), x1, x0 - 5, Y(hi) + 4, esc(num(hi, digits)));
  if (!flat)
    h += fmt::format("<path class=\"grid\" d=\"M{},{:.1f} H{}\"/><text class=\"yl\" x=\"{}\" y=\"{:.1f}\">{}</text>\n", x0,
                     Y(lo), x1, x0 - 5, Y(lo) + 4, esc(num(lo, digits)));
  h += fmt::format("<text class=\"xl\" x=\"{}\" y=\"{}\">{}</text>", x0, H - 8, s0);
  if (s1 != s0) h += fmt::format("<text class=\"xl end\" x=\"{}\" y=\"{}\">{}</text>", x1, H - 8, s1);
  h += fmt::format("<text class=\"xl mid\" x=\"{}\" y=\"{}\">step</text>\n", (x0 + x1) / 2, H - 8);
  // The line, broken where a value is not finite.
  std::string d;
  bool pen = false;
  std::vector<std::pair<int64_t, double>> drawn = thin(s.points, kChartPoints);
  for (const auto& p : drawn) {
    if (!std::isfinite(p.second)) {
      pen = false;
      continue;
    }
    d += fmt::format("{}{:.1f},{:.1f}", pen ? " L" : (d.empty() ? "M" : " M"), X(p.first), Y(p.second));
    pen = true;
  }
  h += fmt::format("<path class=\"line\" d=\"{}\"/>\n", d);
  const auto& lf = finite.back();
  h += fmt::format("<circle class=\"dot\" cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\"/>\n", X(lf.first), Y(lf.second));
  h += "</svg>\n";
  return h;
}

std::string curves_section(const std::string& run_dir, const std::vector<StageView>& stages) {
  std::string h = "<section id=\"curves\">\n<h2>Training curves</h2>\n";
  const fs::path tb = fs::path(run_dir) / "tensorboard";
  std::error_code ec;
  // The plan's stages with curves or expected to have them, then any other folder.
  std::vector<std::string> names;
  std::set<std::string> listed;
  for (const auto& s : stages)
    if (fs::is_directory(tensorboard_dir(run_dir, s.name), ec) || s.name.rfind("train_", 0) == 0)
      names.push_back(s.name), listed.insert(s.name);
  std::vector<std::string> others;
  if (fs::is_directory(tb, ec))
    for (const auto& e : fs::directory_iterator(tb, ec))
      if (e.is_directory(ec) && !listed.count(e.path().filename().string())) others.push_back(e.path().filename().string());
  std::sort(others.begin(), others.end());
  names.insert(names.end(), others.begin(), others.end());
  if (names.empty()) h += "<p class=\"muted\">No stage of this run logs curves.</p>\n";
  for (const auto& name : names) {
    const StageView* sv = nullptr;
    for (const auto& s : stages)
      if (s.name == name) sv = &s;
    h += fmt::format("<h3>{}{}</h3>\n", esc(name), sv && !sv->title.empty() ? " <small>" + esc(sv->title) + "</small>" : "");
    const fs::path dir = tensorboard_dir(run_dir, name);
    std::vector<std::string> files;
    if (fs::is_directory(dir, ec))
      for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
        if (it->is_regular_file(ec) && it->path().filename().string().find("tfevents") != std::string::npos)
          files.push_back(it->path().string());
    std::sort(files.begin(), files.end());
    std::map<std::string, std::map<int64_t, double>> by_tag;
    std::string errors;
    for (const auto& f : files) {
      try {
        for (const auto& p : track::read_scalars(f)) by_tag[p.tag][p.step] = p.value;
      } catch (const std::exception& e) {
        errors += fmt::format("<p class=\"error\">{}</p>\n", esc(e.what()));
      }
    }
    h += errors;
    if (by_tag.empty()) {
      const bool waiting = !sv || sv->state == "pending" || sv->state == "stale" || sv->state == "running" ||
                           sv->state == "interrupted";
      h += fmt::format("<p class=\"muted\">No curves {}.</p>\n", waiting ? "yet" : "were logged");
      continue;
    }
    h += "<div class=\"charts\">\n";
    for (const auto& s : order_series(std::move(by_tag), name)) h += chart_svg(s);
    h += "</div>\n";
  }
  h += "</section>\n";
  return h;
}

// ---- side by side and AutoSxS ------------------------------------------------------------

// Why a section has nothing to show, from its stage's state.
std::string absent_note(const std::vector<StageView>& stages, const std::string& stage, const std::string& unplanned) {
  for (const auto& s : stages)
    if (s.name == stage) {
      if (s.state == "failed" || s.state == "unreadable")
        return fmt::format("The {} stage failed; its error is shown with the stages above.", esc(stage));
      if (s.state == "running") return fmt::format("The {} stage is running.", esc(stage));
      return fmt::format("Pending: this appears when the {} stage is done.", esc(stage));
    }
  return unplanned;
}

std::string text_div(const std::string& s) { return "<div class=\"text\">" + esc(s) + "</div>"; }

std::string sxs_section(const std::string& run_dir, const std::vector<StageView>& stages, json* labels) {
  std::string h = "<section id=\"sxs-section\">\n<h2>Side by side</h2>\n";
  const fs::path dir = fs::path(run_dir) / "sxs";
  const Loaded summary = load_json(dir / "summary.json", rel(run_dir, dir / "summary.json"));
  const JsonLines table = load_jsonl(dir / "sxs.jsonl", rel(run_dir, dir / "sxs.jsonl"), kSxsRows);
  if (!summary.exists && !table.exists) {
    h += "<p class=\"muted\">" +
         absent_note(stages, "sxs", "Not planned: the spec has no eval_dataset, so there is no side-by-side.") +
         "</p>\n</section>\n";
    return h;
  }
  if (!summary.error.empty()) h += fmt::format("<p class=\"error\">{}</p>\n", esc(summary.error));
  const json& s = summary.value;
  int64_t max_words = 50;
  if (auto m = number_at(s, "max_words")) max_words = int64_t(*m);
  if (s.is_object()) {
    const json a = s.value("a", json::object()), b = s.value("b", json::object());
    if (a.is_object() && b.is_object()) {
      *labels = {{"a", string_at(a, "label")}, {"b", string_at(b, "label")}};
      h += "<table class=\"summary\">\n<thead><tr><th></th><th>A</th><th>B</th></tr></thead>\n<tbody>\n";
      auto line = [&](const std::string& name, const std::string& va, const std::string& vb) {
        h += fmt::format("<tr><th>{}</th><td class=\"a\">{}</td><td class=\"b\">{}</td></tr>\n", name, va, vb);
      };
      auto n = [](const json& side, const char* k, auto f) {
        auto v = number_at(side, k);
        return v ? f(*v) : std::string("-");
      };
      line("model", esc(string_at(a, "label")), esc(string_at(b, "label")));
      line("mean words", n(a, "mean_words", [](double v) { return fmt::format("{:.1f}", v); }),
           n(b, "mean_words", [](double v) { return fmt::format("{:.1f}", v); }));
      line(fmt::format("over {} words", max_words), n(a, "over_max_words", percent), n(b, "over_max_words", percent));
      auto f3 = [](double v) { return fmt::format("{:.3f}", v); };
      if (a.contains("mean_score") || b.contains("mean_score"))
        line("mean reward", n(a, "mean_score", f3), n(b, "mean_score", f3));
      if (s.contains("reward_model"))
        line("reward higher", n(s, "a_score_higher", percent), n(s, "b_score_higher", percent));
      h += "</tbody>\n</table>\n";
    }
    h += "<div class=\"notes\"><p>";
    if (auto rows = number_at(s, "rows")) h += fmt::format("{} prompts. ", int64_t(*rows));
    if (s.contains("reward_model")) {
      h += fmt::format("Scores from the reward model {}; ", esc(value_text(s["reward_model"])));
      if (auto bh = number_at(s, "b_score_higher"))
        h += fmt::format("<b>B's reward is higher on {}</b> of the prompts", percent(*bh));
      if (auto ah = number_at(s, "a_score_higher")) h += fmt::format(", A's on {}", percent(*ah));
      if (auto t = number_at(s, "score_ties")) h += fmt::format(", equal on {}", percent(*t));
      h += ".";
    }
    h += "</p></div>\n";
  }
  if (!table.first_error.empty())
    h += fmt::format("<p class=\"error\">{}{}</p>\n", esc(table.first_error),
                     table.bad > 1 ? fmt::format(" ({} lines could not be read)", table.bad) : "");
  if (!table.exists) {
    h += "<p class=\"muted\">sxs/sxs.jsonl is absent.</p>\n</section>\n";
    return h;
  }
  bool scored = false;
  for (const auto& r : table.rows) scored |= r.contains("score_a") || r.contains("score_b");
  if (table.lines > table.rows.size() + table.bad) {
    h += fmt::format("<p class=\"notes\">The first {} of {} rows", table.rows.size(), table.lines);
    std::error_code ec;
    if (fs::exists(dir / "sxs.html", ec)) h += "; all of them in <a href=\"sxs/sxs.html\">sxs/sxs.html</a>";
    h += ".</p>\n";
  }
  const std::string la = labels->is_object() ? esc(string_at(*labels, "a")) : "";
  const std::string lb = labels->is_object() ? esc(string_at(*labels, "b")) : "";
  h += "<table class=\"sxs\" id=\"sxs\">\n<colgroup><col class=\"n\"><col><col><col><col class=\"num\"><col class=\"num\">";
  if (scored) h += "<col class=\"num\"><col class=\"num\">";
  h += "</colgroup>\n<thead><tr><th>#</th><th>prompt</th>";
  h += fmt::format("<th>response A<br><small>{}</small></th><th>response B<br><small>{}</small></th>", la, lb);
  h += "<th>words A</th><th>words B</th>";
  if (scored) h += "<th>reward A</th><th>reward B</th>";
  h += "</tr></thead>\n<tbody>\n";
  for (size_t i = 0; i < table.rows.size(); ++i) {
    const json& r = table.rows[i];
    const std::string id = r.contains("id") && !r["id"].is_null() ? value_text(r["id"]) : std::to_string(i + 1);
    const std::string ra = string_at(r, "response_a"), rb = string_at(r, "response_b");
    const int64_t wa = number_at(r, "words_a") ? int64_t(*number_at(r, "words_a")) : eval::count_words(ra);
    const int64_t wb = number_at(r, "words_b") ? int64_t(*number_at(r, "words_b")) : eval::count_words(rb);
    h += fmt::format("<tr><td>{}</td><td>{}</td><td class=\"a\">{}</td><td class=\"b\">{}</td>", esc(id),
                     text_div(string_at(r, "input_text")), text_div(ra), text_div(rb));
    h += fmt::format("<td class=\"num{}\">{}</td><td class=\"num{}\">{}</td>", wa > max_words ? " over" : "", wa,
                     wb > max_words ? " over" : "", wb);
    if (scored) {
      const auto sa = number_at(r, "score_a"), sb = number_at(r, "score_b");
      auto t = [](const std::optional<double>& v) { return v ? fmt::format("{:.3f}", *v) : std::string("-"); };
      const bool a_best = sa && sb && *sa > *sb, b_best = sa && sb && *sb > *sa;
      h += fmt::format("<td class=\"num{}\">{}</td><td class=\"num{}\">{}</td>", a_best ? " best" : "", t(sa),
                       b_best ? " best" : "", t(sb));
    }
    h += "</tr>\n";
  }
  h += "</tbody>\n</table>\n</section>\n";
  return h;
}

std::string choice_badge(const std::string& c) {
  const std::string cls = c == "A" ? "a" : c == "B" ? "b" : "tie";
  return fmt::format("<span class=\"choice {}\">{}</span>", cls, esc(c.empty() ? "-" : c));
}

std::string autosxs_section(const std::string& run_dir, const std::vector<StageView>& stages, const json& labels) {
  std::string h = "<section id=\"autosxs\">\n<h2>AutoSxS</h2>\n";
  const fs::path dir = fs::path(run_dir) / "autosxs";
  const Loaded metrics = load_json(dir / "metrics.json", rel(run_dir, dir / "metrics.json"));
  const JsonLines judgments = load_jsonl(dir / "judgments.jsonl", rel(run_dir, dir / "judgments.jsonl"), kJudgments);
  if (!metrics.exists && !judgments.exists) {
    h += "<p class=\"muted\">" +
         absent_note(stages, "autosxs", "Not planned: the spec has no autosxs block (and an eval_dataset).") +
         "</p>\n</section>\n";
    return h;
  }
  if (!metrics.error.empty()) h += fmt::format("<p class=\"error\">{}</p>\n", esc(metrics.error));
  const json& m = metrics.value;
  const std::string la = labels.is_object() ? string_at(labels, "a") : "", lb = labels.is_object() ? string_at(labels, "b") : "";
  if (m.is_object()) {
    const std::string judge = string_at(m, "judge");
    h += fmt::format("<p>Judge <b>{}</b>{}", esc(judge.empty() ? "(the default)" : judge),
                     string_at(m, "task").empty() ? "" : ", task " + esc(string_at(m, "task")));
    if (auto n = number_at(m, "rows")) h += fmt::format(", {} pairs", int64_t(*n));
    if (auto c = number_at(m, "mean_confidence")) h += fmt::format(", mean confidence {:.3f}", *c);
    h += ".</p>\n";
    const double ar = number_at(m, "model_a_win_rate").value_or(0), br = number_at(m, "model_b_win_rate").value_or(0),
                 tr = number_at(m, "tie_rate").value_or(0);
    // The three shares as one bar.
    h += "<div class=\"winbar\">";
    auto seg = [&](const char* cls, double share, const std::string& text) {
      if (share > 0) h += fmt::format("<div class=\"{}\" style=\"width:{:.2f}%\">{}</div>", cls, 100 * share, share >= 0.08 ? text : "");
    };
    seg("a", ar, "A " + percent(ar));
    seg("tie", tr, "tie " + percent(tr));
    seg("b", br, "B " + percent(br));
    h += "</div>\n";
    h += "<table class=\"summary\">\n<thead><tr><th></th><th>wins</th><th>win rate</th></tr></thead>\n<tbody>\n";
    auto row = [&](const std::string& name, const char* cls, const char* wins, const char* rate) {
      auto w = number_at(m, wins);
      auto r = number_at(m, rate);
      h += fmt::format("<tr><th>{}</th><td class=\"num {}\">{}</td><td class=\"num {}\">{}</td></tr>\n", name, cls,
                       w ? std::to_string(int64_t(*w)) : "-", cls, r ? percent(*r) : "-");
    };
    row("A" + (la.empty() ? "" : " <small>" + esc(la) + "</small>"), "a", "model_a_wins", "model_a_win_rate");
    row("B" + (lb.empty() ? "" : " <small>" + esc(lb) + "</small>"), "b", "model_b_wins", "model_b_win_rate");
    row("tie", "", "ties", "tie_rate");
    h += "</tbody>\n</table>\n";
    auto agreement = [&](const char* key, const std::string& caption) {
      auto it = m.find(key);
      if (it == m.end() || !it->is_object()) return;
      const json& g = *it;
      h += fmt::format("<table class=\"summary agreement\">\n<caption>{}</caption>\n<tbody>\n", caption);
      for (const char* k : {"rows", "accuracy", "precision", "recall", "f1", "cohens_kappa", "human_ties_dropped", "judge_ties"}) {
        auto v = number_at(g, k);
        if (!v) continue;
        const bool count = std::string(k) == "rows" || std::string(k) == "human_ties_dropped" || std::string(k) == "judge_ties";
        h += fmt::format("<tr><th>{}</th><td class=\"num\">{}</td></tr>\n", esc(k),
                         count ? std::to_string(int64_t(*v)) : fmt::format("{:.3f}", *v));
      }
      h += "</tbody>\n</table>\n";
    };
    agreement("human_agreement", "Agreement with the human labels");
    agreement("human_agreement_by_probability", "By the judge's mean probability alone");
    if (m.contains("human_agreement"))
      h += "<p class=\"notes\">Human ties are left out; precision, recall and F1 take &ldquo;A is better&rdquo; as the "
           "positive class.</p>\n";
  }
  if (!judgments.first_error.empty())
    h += fmt::format("<p class=\"error\">{}{}</p>\n", esc(judgments.first_error),
                     judgments.bad > 1 ? fmt::format(" ({} lines could not be read)", judgments.bad) : "");
  if (!judgments.rows.empty()) {
    bool human = false;
    for (const auto& r : judgments.rows) human |= r.contains("human_preference");
    h += fmt::format("<h3>Judgments <small>the first {} of {}</small></h3>\n", judgments.rows.size(), judgments.lines);
    h += "<table class=\"judgments\" id=\"judgments\">\n<colgroup><col class=\"n\"><col class=\"prompt\"><col class=\"c\">"
         "<col class=\"num\">";
    if (human) h += "<col class=\"c\">";
    h += "<col></colgroup>\n<thead><tr><th>#</th><th>prompt</th><th>choice</th><th>confidence</th>";
    if (human) h += "<th>human</th>";
    h += "<th>explanation</th></tr></thead>\n<tbody>\n";
    for (size_t i = 0; i < judgments.rows.size(); ++i) {
      const json& r = judgments.rows[i];
      const std::string id = r.contains("id") && !r["id"].is_null() ? value_text(r["id"]) : std::to_string(i + 1);
      auto conf = number_at(r, "confidence");
      h += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>", esc(id),
                       text_div(string_at(r, "input_text")), choice_badge(string_at(r, "choice")),
                       conf ? fmt::format("{:.3f}", *conf) : "-");
      if (human) h += "<td>" + choice_badge(string_at(r, "human_preference")) + "</td>";
      h += "<td>" + text_div(string_at(r, "explanation")) + "</td></tr>\n";
    }
    h += "</tbody>\n</table>\n";
  }
  h += "</section>\n";
  return h;
}

// ---- the page ----------------------------------------------------------------------------

constexpr const char* kStyle = R"(<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2330; background: #f6f7f9; margin: 24px; }
h1 { font-size: 22px; margin: 0 0 6px; }
h2 { font-size: 18px; margin: 0 0 12px; }
h3 { font-size: 15px; margin: 18px 0 8px; }
h3 small, h1 small { font-weight: normal; color: #4a5366; font-size: 13px; margin-left: 6px; }
a { color: #2a5db0; }
section { background: #fff; border: 1px solid #d5d9e0; border-radius: 6px; padding: 16px 20px; margin: 0 0 20px; overflow-x: auto; }
nav { margin: 0 0 18px; }
nav a { margin-right: 14px; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid #d5d9e0; padding: 6px 9px; vertical-align: top; text-align: left; }
thead th { background: #2f3b52; color: #fff; position: sticky; top: 0; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
.meta { margin: 0 0 14px; }
.meta th { background: #e9edf3; font-weight: 600; }
.muted { color: #6b7385; }
.error { color: #a03a10; background: #fde8e1; border-left: 4px solid #c0392b; padding: 6px 10px; white-space: pre-wrap; overflow-wrap: anywhere; }
.summary { margin-bottom: 12px; }
.summary th { background: #e9edf3; }
.summary thead th { background: #2f3b52; color: #fff; min-width: 2em; }
.summary td.a, .sxs td.a { border-left: 4px solid #3d7be0; }
.summary td.b, .sxs td.b { border-left: 4px solid #e0863d; }
.notes { margin: 0 0 14px; color: #4a5366; }
.sxs, .judgments { width: 100%; table-layout: fixed; }
.sxs col.n, .judgments col.n { width: 3em; } .sxs col.num, .judgments col.num { width: 6.5em; }
.judgments col.c { width: 5em; } .judgments col.prompt { width: 38%; } .judgments col.num { width: 7.5em; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; max-height: 16em; overflow: auto; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.over { background: #fde8e1; }
td.best { background: #e3f4e3; font-weight: 600; }
tbody tr:nth-child(even) td:not(.over):not(.best) { background: #fafbfc; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; border: 1px solid; white-space: nowrap; }
.badge.done { background: #e3f4e3; border-color: #3a9a5b; color: #1f6b3a; }
.badge.cached { background: #ece6f7; border-color: #7d5bbf; color: #553a8f; }
.badge.running { background: #e2ecfb; border-color: #3d7be0; color: #24509c; }
.badge.failed { background: #fde8e1; border-color: #c0392b; color: #9a2a1c; }
.badge.pending { background: #eef0f3; border-color: #9aa3b2; color: #4a5366; border-style: dashed; }
.badge.interrupted { background: #fff4de; border-color: #d99a1e; color: #8a5a00; border-style: dashed; }
.stages td { vertical-align: middle; }
.metric { display: inline-block; margin: 1px 8px 1px 0; white-space: nowrap; font-variant-numeric: tabular-nums; }
.metric .k { color: #6b7385; }
svg.dag { display: block; max-width: 100%; height: auto; margin: 4px 0 10px; }
.dag text { text-anchor: middle; }
.dag .name { font: 600 13px system-ui, sans-serif; fill: #1d2330; }
.dag .state { font: 11px system-ui, sans-serif; fill: #4a5366; }
.dag .edge { fill: none; stroke: #7d869a; stroke-width: 1.5; }
.dag rect { stroke-width: 2; }
.node.done rect { fill: #e3f4e3; stroke: #3a9a5b; }
.node.cached rect { fill: #ece6f7; stroke: #7d5bbf; }
.node.running rect { fill: #e2ecfb; stroke: #3d7be0; }
.node.failed rect { fill: #fde8e1; stroke: #c0392b; }
.node.pending rect { fill: #f4f5f7; stroke: #9aa3b2; stroke-dasharray: 5 3; }
.node.interrupted rect { fill: #fff4de; stroke: #d99a1e; stroke-dasharray: 5 3; }
.legend { font-size: 12px; color: #4a5366; margin: 0 0 10px; }
.legend .badge { margin-right: 6px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(290px, 1fr)); gap: 12px; }
svg.chart { width: 100%; height: auto; background: #fff; border: 1px solid #e1e4ea; border-radius: 4px; }
.chart text { font: 11px system-ui, sans-serif; fill: #4a5366; }
.chart .ct { font-weight: 600; font-size: 12.5px; fill: #1d2330; }
.chart .last { text-anchor: end; fill: #24509c; font-weight: 600; }
.chart .yl { text-anchor: end; font-variant-numeric: tabular-nums; }
.chart .xl.end { text-anchor: end; } .chart .xl.mid { text-anchor: middle; fill: #8a93a6; }
.chart .empty { text-anchor: middle; }
.chart .axis { fill: none; stroke: #9aa3b2; }
.chart .grid { stroke: #d5d9e0; stroke-dasharray: 3 3; }
.chart .line { fill: none; stroke: #3d7be0; stroke-width: 1.6; stroke-linejoin: round; }
.chart .dot { fill: #3d7be0; }
.params { columns: 2 480px; column-gap: 28px; }
.params table { width: 100%; break-inside: avoid; margin: 0 0 16px; }
.params th { background: #e9edf3; font-weight: normal; font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: 13px; }
.params td { overflow-wrap: anywhere; max-width: 40em; }
.winbar { display: flex; width: 100%; max-width: 640px; height: 26px; border-radius: 4px; overflow: hidden; margin: 6px 0 14px; border: 1px solid #d5d9e0; }
.winbar div { color: #fff; font-size: 12px; font-weight: 600; line-height: 26px; text-align: center; white-space: nowrap; overflow: hidden; }
.winbar .a { background: #3d7be0; } .winbar .b { background: #e0863d; } .winbar .tie { background: #9aa3b2; }
.summary td.num.a { border-left: 4px solid #3d7be0; } .summary td.num.b { border-left: 4px solid #e0863d; }
.agreement { display: inline-table; margin-right: 20px; vertical-align: top; }
.agreement caption { max-width: 22em; }
.choice { display: inline-block; min-width: 2.2em; text-align: center; border-radius: 4px; font-weight: 600; color: #fff; padding: 0 4px; }
.choice.a { background: #3d7be0; } .choice.b { background: #e0863d; } .choice.tie { background: #9aa3b2; }
</style>
)";

std::string stages_section(const std::vector<StageView>& stages, int64_t now) {
  std::string h = "<section id=\"stages\">\n<h2>Stages</h2>\n";
  if (stages.empty()) return h + "<p class=\"muted\">The plan lists no stages.</p>\n</section>\n";
  h += dag_svg(stages, now);
  h += "<div class=\"legend\">";
  bool interrupted = false;
  for (const auto& s : stages) interrupted |= s.state == "interrupted";
  for (const char* s : {"done", "cached", "running", "interrupted", "failed", "pending"})
    if (std::string(s) != "interrupted" || interrupted) h += fmt::format("<span class=\"badge {0}\">{0}</span>", s);
  h += "</div>\n";
  if (interrupted)
    h += "<p class=\"notes\">Interrupted: the stage was running when its run stopped; the next run with the same spec "
         "resumes it.</p>\n";
  for (const auto& s : stages) {
    if (s.state == "failed" && s.manifest)
      h += fmt::format("<div class=\"error stage-error\" data-stage=\"{}\"><b>{} failed</b>{}: {}</div>\n", esc(s.name),
                       esc(s.name),
                       s.manifest->finished.empty() ? "" : " at " + esc(s.manifest->finished),
                       esc(s.manifest->error.empty() ? "no error recorded" : s.manifest->error));
    if (s.state == "unreadable") h += fmt::format("<div class=\"error stage-error\" data-stage=\"{}\">{}</div>\n", esc(s.name), esc(s.note));
  }
  h += "<table class=\"stages\" id=\"stage-table\">\n<thead><tr><th>#</th><th>stage</th><th>state</th><th>attempts</th>"
       "<th>finished</th><th>wall time</th><th>headline metrics</th></tr></thead>\n<tbody>\n";
  for (size_t i = 0; i < stages.size(); ++i) {
    const StageView& s = stages[i];
    const Manifest* m = s.manifest ? &*s.manifest : nullptr;
    std::string when;
    if (m) when = s.state == "running" ? "started " + m->started : m->finished;
    const double w = wall_seconds(s, now);
    h += fmt::format("<tr data-stage=\"{}\" data-state=\"{}\"><td>{}</td><td><b>{}</b><br><small class=\"muted\">{}</small></td>"
                     "<td><span class=\"badge {}\">{}</span></td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td>"
                     "<td>{}</td></tr>\n",
                     esc(s.name), esc(s.state), i + 1, esc(s.name), esc(s.title), state_class(s.state), esc(state_label(s)),
                     m && m->attempts ? std::to_string(m->attempts) : "", esc(when),
                     m && w > 0 ? duration(w) : "", m ? metrics_cell(m->metrics) : "");
  }
  h += "</tbody>\n</table>\n</section>\n";
  return h;
}

std::string params_section(const json& plan) {
  std::string h = "<section id=\"params\">\n<h2>Parameters</h2>\n<div class=\"params\">\n";
  using Rows = std::vector<std::pair<std::string, std::string>>;
  auto table = [&](const Rows& rows, const std::string& caption, const std::string& id) {
    h += fmt::format("<table id=\"{}\">\n<caption>{}</caption>\n<tbody>\n", esc(id), esc(caption));
    for (const auto& [k, v] : rows)
      h += fmt::format("<tr><th>{}</th><td>{}</td></tr>\n", esc(k), v.empty() ? "<span class=\"muted\">-</span>" : esc(v));
    h += "</tbody>\n</table>\n";
  };
  const json spec = plan.is_object() && plan.contains("spec") ? plan["spec"] : json();
  if (spec.is_object()) {
    // The seed's parameters in their usual order, any other value, then each block.
    static const std::vector<std::string> seed = {
        "preference_dataset", "prompt_dataset", "eval_dataset", "large_model_reference", "instruction",
        "prompt_sequence_length", "target_sequence_length", "reward_model_train_steps", "reward_model_epochs",
        "reinforcement_learning_train_steps", "reinforcement_learning_epochs", "reward_model_learning_rate_multiplier",
        "reinforcement_learning_rate_multiplier", "kl_coeff"};
    Rows top;
    std::set<std::string> shown;
    for (const auto& k : seed)
      if (auto it = spec.find(k); it != spec.end() && !it->is_object()) top.emplace_back(k, value_text(*it)), shown.insert(k);
    for (auto it = spec.begin(); it != spec.end(); ++it)
      if (!it->is_object() && !shown.count(it.key())) top.emplace_back(it.key(), value_text(*it));
    table(top, "The spec, defaults filled in", "spec-params");
    // The blocks, advanced last; the model and data before it (the columns balance better).
    std::vector<std::string> blocks;
    for (const char* k : {"rlaif", "autosxs"})
      if (spec.contains(k) && spec[k].is_object()) blocks.push_back(k);
    for (auto it = spec.begin(); it != spec.end(); ++it)
      if (it->is_object() && it.key() != "advanced" && std::find(blocks.begin(), blocks.end(), it.key()) == blocks.end())
        blocks.push_back(it.key());
    for (const auto& b : blocks) {
      Rows rows;
      flatten(spec[b], b, rows);
      table(rows, b, "spec-" + b);
    }
  } else {
    h += "<p class=\"muted\">plan.json holds no spec.</p>\n";
  }
  json md = json::object();
  if (plan.is_object()) {
    if (plan.contains("model")) md["model"] = plan["model"];
    if (plan.contains("data")) md["data"] = plan["data"];
  }
  if (!md.empty()) {
    Rows rows;
    flatten(md, "", rows);
    table(rows, "Model and data, as compiled", "model-data");
  }
  if (spec.is_object() && spec.contains("advanced") && spec["advanced"].is_object()) {
    Rows rows;
    flatten(spec["advanced"], "advanced", rows);
    table(rows, "advanced", "spec-advanced");
  }
  h += "</div>\n</section>\n";
  return h;
}

}  // namespace

std::string render_report(const std::string& run_dir) {
  const fs::path plan_path = fs::path(run_dir) / "plan.json";
  std::error_code ec;
  if (!fs::exists(plan_path, ec))
    fail("{}: not found; is {} a pipeline run directory (rlhf pipeline run SPEC --run-dir DIR)?", plan_path.string(), run_dir);
  const Loaded plan = load_json(plan_path, plan_path.string());
  const int64_t now = int64_t(std::time(nullptr));
  std::vector<StageView> stages = read_stages(run_dir, plan.value);

  std::string spec_path;
  if (plan.value.is_object()) {
    spec_path = string_at(plan.value, "spec_path");
    if (spec_path.empty() && plan.value.contains("spec")) spec_path = string_at(plan.value["spec"], "path");
  }
  if (spec_path.empty() && fs::exists(fs::path(run_dir) / "spec.yaml", ec)) spec_path = (fs::path(run_dir) / "spec.yaml").string();
  fs::path abs_dir = fs::absolute(run_dir, ec).lexically_normal();
  if (abs_dir.filename().empty()) abs_dir = abs_dir.parent_path();

  std::string h;
  h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  h += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  h += fmt::format("<title>RLHF run: {}</title>\n", esc(abs_dir.filename().string()));
  h += kStyle;
  h += "</head>\n<body>\n";
  h += fmt::format("<h1>RLHF run <small>{}</small></h1>\n", esc(abs_dir.string()));
  h += "<table class=\"meta\">\n<tbody>\n";
  h += fmt::format("<tr><th>spec</th><td>{}</td></tr>\n", spec_path.empty() ? "<span class=\"muted\">-</span>" : esc(spec_path));
  if (plan.value.is_object() && plan.value.contains("model")) {
    const json& mo = plan.value["model"];
    std::string model = string_at(mo, "path");
    if (!string_at(mo, "format").empty()) model += " (" + string_at(mo, "format") + ")";
    if (!model.empty()) h += fmt::format("<tr><th>model</th><td>{}</td></tr>\n", esc(model));
  }
  std::map<std::string, int> counts;
  for (const auto& s : stages) counts[state_class(s.state)]++;
  std::string progress;
  for (const char* s : {"done", "cached", "running", "interrupted", "failed", "pending"})
    if (counts[s]) progress += fmt::format("<span class=\"badge {}\">{} {}</span> ", s, counts[s], s);
  if (!stages.empty()) h += fmt::format("<tr><th>stages</th><td>{}</td></tr>\n", progress);
  h += fmt::format("<tr><th>generated</th><td>{}</td></tr>\n", utc_now());
  h += "</tbody>\n</table>\n";
  h += "<nav><a href=\"#stages\">stages</a><a href=\"#curves\">curves</a><a href=\"#params\">parameters</a>"
       "<a href=\"#sxs-section\">side by side</a><a href=\"#autosxs\">AutoSxS</a></nav>\n";
  if (!plan.error.empty()) h += fmt::format("<p class=\"error\">{}</p>\n", esc(plan.error));

  h += stages_section(stages, now);
  h += curves_section(run_dir, stages);
  h += params_section(plan.value);
  json labels;
  h += sxs_section(run_dir, stages, &labels);
  h += autosxs_section(run_dir, stages, labels);
  h += "</body>\n</html>\n";
  return h;
}

void write_report(const std::string& run_dir) { write_file_atomic(report_path(run_dir), render_report(run_dir)); }

}  // namespace rlhf::pipeline
