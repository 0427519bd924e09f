// The pages' HTML kit: escaping, the page frame and its one stylesheet, numbers as shown,
// the line chart and the dependency graph.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "rlhf/util/html.h"

namespace rlhf::html {
namespace {

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + needle.size())) ++n;
  return n;
}

TEST(Html, EscapesTheFiveCharacters) {
  EXPECT_EQ(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
  EXPECT_EQ(escape("plain \u00e9"), "plain \u00e9");
}

TEST(Html, PageFrameCarriesOneStylesheetAndTheEscapedTitle) {
  const std::string page = page_start("<run>", ".extra { color: red; }\n") + page_end();
  EXPECT_EQ(page.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(page.find("<title>&lt;run&gt;</title>"), std::string::npos);
  EXPECT_EQ(count(page, "<style>"), 1u);
  EXPECT_NE(page.find(kBaseCss), std::string::npos);
  EXPECT_LT(page.find(kBaseCss), page.find(".extra { color: red; }"));
  EXPECT_NE(page.find("<meta charset=\"utf-8\">"), std::string::npos);
  EXPECT_TRUE(page.ends_with("</body>\n</html>\n"));
  for (const char* ref : {"<script", "http://", "https://", "@import", "url("}) EXPECT_EQ(page.find(ref), std::string::npos) << ref;
}

TEST(Html, NumbersDurationsAndShares) {
  EXPECT_EQ(number(0), "0");
  EXPECT_EQ(number(std::nan("")), "NaN");
  EXPECT_EQ(number(-std::numeric_limits<double>::infinity()), "-inf");
  EXPECT_EQ(number(12345.6), "12346");
  EXPECT_EQ(number(9.8334e-05), "9.833e-5");
  EXPECT_EQ(number(0.41234), "0.4123");
  EXPECT_EQ(percent(0.125), "12.5 %");
  EXPECT_EQ(duration(4.21), "4.2 s");
  EXPECT_EQ(duration(185), "3 min 05 s");
  EXPECT_EQ(duration(7260), "2 h 01 min");
  EXPECT_EQ(duration(-1), "0.0 s");
}

TEST(Html, ThinKeepsEachBucketsLowestAndHighestPoint) {
  std::vector<std::pair<int64_t, double>> pts;
  for (int64_t i = 0; i < 1000; ++i) pts.emplace_back(i, i == 500 ? 100.0 : (i % 2 ? 1.0 : -1.0));
  const auto thinned = thin(pts, 100);
  EXPECT_LE(thinned.size(), 100u);
  bool spike = false;
  for (size_t i = 1; i < thinned.size(); ++i) EXPECT_LT(thinned[i - 1].first, thinned[i].first);
  for (const auto& p : thinned) spike |= p.second == 100.0;
  EXPECT_TRUE(spike) << "the spike survives thinning";
  EXPECT_EQ(thin(pts, 5000).size(), pts.size());
}

TEST(Html, LineChartBreaksAtNonFiniteValues) {
  Series s{"loss/<x>", {{1, 2.0}, {2, std::nan("")}, {3, 1.0}, {4, 0.5}}};
  const std::string svg = line_chart_svg(s);
  EXPECT_NE(svg.find("<svg class=\"chart\" data-tag=\"loss/&lt;x&gt;\""), std::string::npos);
  EXPECT_NE(svg.find("1 not finite"), std::string::npos);
  EXPECT_NE(svg.find(">last 0.5</text>"), std::string::npos);
  const size_t d = svg.find("class=\"line\" d=\"");
  ASSERT_NE(d, std::string::npos);
  const std::string path = svg.substr(d, svg.find("\"/>", d) - d);
  EXPECT_EQ(count(path, "M"), 2u) << "the pen lifts at the NaN: " << path;
  EXPECT_NE(line_chart_svg({"nan", {{0, std::nan("")}}}).find("no finite values"), std::string::npos);
}

TEST(Html, GraphDrawsABoxPerNodeAndAnArrowPerDependency) {
  std::vector<GraphNode> nodes = {
      {"a", "first", "done", "done", "done · 1.0 s", {}},
      {"b", "", "running", "running", "running", {"a"}},
      {"c", "", "stale", "pending", "stale", {"a", "b"}},
      {"d", "", "pending", "pending", "pending", {"a", "c", "missing"}},
  };
  const std::string svg = graph_svg(nodes);
  EXPECT_EQ(count(svg, "<g class=\"node "), 4u);
  EXPECT_EQ(count(svg, "class=\"edge\""), 5u) << "an unknown dependency draws nothing";
  EXPECT_NE(svg.find("<g class=\"node pending\" data-stage=\"c\" data-state=\"stale\"><title>c</title>"), std::string::npos);
  EXPECT_NE(svg.find("<title>a: first</title>"), std::string::npos);
  EXPECT_NE(svg.find("data-from=\"a\" data-to=\"d\""), std::string::npos);
}

}  // namespace
}  // namespace rlhf::html
