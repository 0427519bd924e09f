// The kit of the program's self-contained HTML pages (the run report, the side-by-side
// page): one stylesheet, escaping, numbers as the pages show them, and two SVG drawings,
// a line chart of one scalar series and a graph of steps and their dependencies. Inline CSS
// and SVG only: no script, nothing fetched. Torch-free.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rlhf::html {

// &, <, >, " and ' as character references.
std::string escape(std::string_view s);

// The page's start: doctype, charset, viewport, <title> (escaped here), the stylesheet
// (kBaseCss followed by extra_css), and <body>. The caller ends with page_end().
std::string page_start(std::string_view title, std::string_view extra_css = "");
std::string page_end();

// What every page uses: body, headings, tables, the A/B summary table and the side-by-side
// table (columns .a and .b, cells .num, .over, .best, .text), notes and errors.
extern const char* const kBaseCss;
// The chart (line_chart_svg), the graph (graph_svg) and state badges (.badge.<state>).
extern const char* const kChartCss;
extern const char* const kGraphCss;

// A number in few characters: NaN, inf, integers of 5 to 9 digits whole, else `digits`
// significant digits with a short exponent (9.833e-5).
std::string number(double v, int digits = 4);
// A share as "12.5 %".
std::string percent(double share);
// A duration as "4.2 s", "12 s", "3 min 05 s", "2 h 01 min".
std::string duration(double seconds);

// ---- a line chart ------------------------------------------------------------------------

struct Series {
  std::string tag;
  std::vector<std::pair<int64_t, double>> points;  // by step, ascending; not empty
};

// At most `limit` points: the series cut into buckets, each kept as its lowest and highest
// point in step order (the shape of a noisy curve survives).
std::vector<std::pair<int64_t, double>> thin(const std::vector<std::pair<int64_t, double>>& points, size_t limit);

// One chart (<svg class="chart" data-tag=TAG>): title, last value, min and max as dashed
// lines, first and last step; the line breaks where a value is not finite; more than
// max_points points are thinned.
std::string line_chart_svg(const Series& series, size_t max_points = 1200);

// ---- a dependency graph ------------------------------------------------------------------

struct GraphNode {
  std::string name;                // shown in the box, and data-stage
  std::string title;               // tooltip after the name
  std::string state;               // data-state
  std::string css_class;           // colour: done, cached, running, interrupted, failed, pending
  std::string label;               // the second line of the box
  std::vector<std::string> deps;   // names of earlier nodes it depends on
};

// The graph (<svg class="dag" id="dag">): columns by depth (a node sits right of everything
// it depends on), the given order down each column, one arrow per dependency; an arrow that
// would cross a box runs in its own lane above or below the boxes.
std::string graph_svg(const std::vector<GraphNode>& nodes);

}  // namespace rlhf::html
