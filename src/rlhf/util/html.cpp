#include "rlhf/util/html.h"

#include <algorithm>
#include <cmath>
#include <map>

#include <fmt/format.h>

namespace rlhf::html {

const char* const kBaseCss = R"(body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2330; background: #f6f7f9; margin: 24px; }
h1 { font-size: 22px; margin: 0 0 12px; }
h2 { font-size: 18px; margin: 0 0 12px; }
h3 { font-size: 15px; margin: 18px 0 8px; }
h3 small, h1 small { font-weight: normal; color: #4a5366; font-size: 13px; margin-left: 6px; }
a { color: #2a5db0; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid #d5d9e0; padding: 6px 9px; vertical-align: top; text-align: left; }
thead th { background: #2f3b52; color: #fff; position: sticky; top: 0; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
.muted { color: #6b7385; }
.error { color: #a03a10; background: #fde8e1; border-left: 4px solid #c0392b; padding: 6px 10px; white-space: pre-wrap; overflow-wrap: anywhere; }
.summary { margin-bottom: 12px; }
.summary th { background: #e9edf3; }
.summary thead th { background: #2f3b52; color: #fff; min-width: 2em; }
.summary td.a, .sxs td.a { border-left: 4px solid #3d7be0; }
.summary td.b, .sxs td.b { border-left: 4px solid #e0863d; }
.notes { margin: 0 0 14px; color: #4a5366; }
.notes .warn { color: #a03a10; }
.sxs { width: 100%; table-layout: fixed; }
.sxs col.n { width: 3em; } .sxs col.num { width: 6.5em; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; max-height: 20em; overflow: auto; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.over { background: #fde8e1; }
td.best { background: #e3f4e3; font-weight: 600; }
tbody tr:nth-child(even) td:not(.over):not(.best) { background: #fafbfc; }
)";

const char* const kGraphCss = R"(.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; border: 1px solid; white-space: nowrap; }
.badge.done { background: #e3f4e3; border-color: #3a9a5b; color: #1f6b3a; }
.badge.cached { background: #ece6f7; border-color: #7d5bbf; color: #553a8f; }
.badge.running { background: #e2ecfb; border-color: #3d7be0; color: #24509c; }
.badge.failed { background: #fde8e1; border-color: #c0392b; color: #9a2a1c; }
.badge.pending { background: #eef0f3; border-color: #9aa3b2; color: #4a5366; border-style: dashed; }
.badge.interrupted { background: #fff4de; border-color: #d99a1e; color: #8a5a00; border-style: dashed; }
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
)";

const char* const kChartCss = R"(.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(290px, 1fr)); gap: 12px; }
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
)";

std::string escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + s.size() / 8);
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string page_start(std::string_view title, std::string_view extra_css) {
  std::string h = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  h += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  h += fmt::format("<title>{}</title>\n<style>\n", escape(title));
  h += kBaseCss;
  h += extra_css;
  h += "</style>\n</head>\n<body>\n";
  return h;
}

std::string page_end() { return "</body>\n</html>\n"; }

std::string number(double v, int digits) {
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

std::string duration(double s) {
  if (!(s >= 0)) s = 0;
  if (s < 10) return fmt::format("{:.1f} s", s);
  if (s < 60) return fmt::format("{:.0f} s", s);
  const int64_t t = std::llround(s);
  if (t < 3600) return fmt::format("{} min {:02} s", t / 60, t % 60);
  return fmt::format("{} h {:02} min", t / 3600, (t % 3600) / 60);
}

// ---- a line chart ------------------------------------------------------------------------

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

std::string line_chart_svg(const Series& s, size_t max_points) {
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
      escape(s.tag), W, H, escape(s.tag), escape(s.tag), s.points.size(), s.points.front().first, last.first,
      nonfinite ? fmt::format(", {} not finite", nonfinite) : "");
  h += fmt::format("<text class=\"ct\" x=\"10\" y=\"19\">{}</text>", escape(title));
  h += fmt::format("<text class=\"last\" x=\"{}\" y=\"19\">last {}</text>\n", W - 10, escape(number(last.second)));
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
  // Min and max: a dashed line each, labelled on the axis with enough digits to differ.
  const bool flat = lo == hi;
  int digits = 4;
  while (!flat && digits < 10 && number(lo, digits) == number(hi, digits)) ++digits;
  h += fmt::format("<path class=\"grid\" d=\"M{},{:.1f} H{}\"/><text class=\"yl\" x=\"{}\" y=\"{:.1f}\">{}</text>\n", x0,
                   Y(hi), x1, x0 - 5, Y(hi) + 4, escape(number(hi, digits)));
  if (!flat)
    h += fmt::format("<path class=\"grid\" d=\"M{},{:.1f} H{}\"/><text class=\"yl\" x=\"{}\" y=\"{:.1f}\">{}</text>\n", x0,
                     Y(lo), x1, x0 - 5, Y(lo) + 4, escape(number(lo, digits)));
  h += fmt::format("<text class=\"xl\" x=\"{}\" y=\"{}\">{}</text>", x0, H - 8, s0);
  if (s1 != s0) h += fmt::format("<text class=\"xl end\" x=\"{}\" y=\"{}\">{}</text>", x1, H - 8, s1);
  h += fmt::format("<text class=\"xl mid\" x=\"{}\" y=\"{}\">step</text>\n", (x0 + x1) / 2, H - 8);
  // The line, broken where a value is not finite.
  std::string d;
  bool pen = false;
  for (const auto& p : thin(s.points, max_points)) {
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

// ---- a dependency graph ------------------------------------------------------------------

std::string graph_svg(const std::vector<GraphNode>& nodes) {
  constexpr int kW = 160, kH = 50, kGapX = 46, kGapY = 16, kPad = 10;
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < nodes.size(); ++i) index[nodes[i].name] = i;
  std::vector<int> layer(nodes.size(), 0);
  for (size_t i = 0; i < nodes.size(); ++i)
    for (const auto& d : nodes[i].deps)
      if (auto it = index.find(d); it != index.end() && it->second < i) layer[i] = std::max(layer[i], layer[it->second] + 1);
  std::vector<std::vector<size_t>> columns;
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (size_t(layer[i]) >= columns.size()) columns.resize(layer[i] + 1);
    columns[layer[i]].push_back(i);
  }
  size_t rows = 1;
  for (const auto& c : columns) rows = std::max(rows, c.size());
  const int content_h = int(rows) * kH + (int(rows) - 1) * kGapY;
  const int width = 2 * kPad + int(columns.size()) * kW + (int(columns.size()) - 1) * kGapX;
  std::vector<std::pair<int, int>> at(nodes.size());  // top left, before the lanes above are added
  for (size_t c = 0; c < columns.size(); ++c) {
    const int col_h = int(columns[c].size()) * kH + (int(columns[c].size()) - 1) * kGapY;
    for (size_t r = 0; r < columns[c].size(); ++r)
      at[columns[c][r]] = {kPad + int(c) * (kW + kGapX), (content_h - col_h) / 2 + int(r) * (kH + kGapY)};
  }
  // An arrow that would cross a box in a column it skips runs in a lane above or below the
  // boxes instead (each its own), leaving and entering through the gaps between columns.
  struct Edge {
    size_t from, to;
    int side = 0;           // 0: direct; -1: a lane above the boxes; +1: below
    double ly = 0;          // the lane's y
    double sy = 0, ey = 0;  // where it leaves and enters
  };
  std::vector<Edge> edges;
  for (size_t i = 0; i < nodes.size(); ++i)
    for (const auto& d : nodes[i].deps) {
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
  for (size_t i = 0; i < nodes.size(); ++i)
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
                     escape(nodes[e.from].name), escape(nodes[e.to].name), d);
  }
  for (size_t i = 0; i < nodes.size(); ++i) {
    const GraphNode& n = nodes[i];
    const auto [x, y] = at[i];
    h += fmt::format("<g class=\"node {}\" data-stage=\"{}\" data-state=\"{}\"><title>{}{}{}</title>", escape(n.css_class),
                     escape(n.name), escape(n.state), escape(n.name), n.title.empty() ? "" : ": ", escape(n.title));
    h += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"7\"/>", x, y, kW, kH);
    h += fmt::format("<text class=\"name\" x=\"{}\" y=\"{}\">{}</text>", x + kW / 2, y + 21, escape(n.name));
    h += fmt::format("<text class=\"state\" x=\"{}\" y=\"{}\">{}</text></g>\n", x + kW / 2, y + 38, escape(n.label));
  }
  h += "</svg>\n";
  return h;
}

}  // namespace rlhf::html
