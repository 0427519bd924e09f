// The side-by-side table: reading the three input forms, the join (order, duplicates,
// unmatched prompts), the CSV/HTML/JSONL outputs and their escaping, the summary, the
// atomic output folder, bad input; and the page rendered by headless Chromium.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "png_image.h"
#include "rlhf/eval/sxs.h"
#include "rlhf/text/words.h"
#include "rlhf/util/csv.h"
#include "rlhf/util/error.h"
#include "test_util.h"

namespace rlhf::eval {
namespace {

using rlhf::testing::read_jsonl;
using rlhf::testing::error_of;

namespace fs = std::filesystem;
using nlohmann::json;

fs::path course_dir() { return testing::source_dir() / "../shared/data/course"; }

#define REQUIRE_COURSE_DATA()                                                                 \
  if (!fs::exists(course_dir() / "eval_results_untuned.jsonl"))                              \
  GTEST_SKIP() << "the shared course data is absent (" << course_dir().string() << ")"

void write_lines(const fs::path& p, const std::vector<json>& rows) {
  std::ofstream f(p);
  for (const auto& r : rows) f << r.dump() << "\n";
}

// RFC 4180 reader: records of fields, quoted fields may hold commas, quotes ("") and line breaks.
std::vector<std::vector<std::string>> parse_csv(const std::string& s) {
  std::vector<std::vector<std::string>> records(1, std::vector<std::string>(1));
  bool quoted = false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    auto& field = records.back().back();
    if (quoted) {
      if (c == '"' && i + 1 < s.size() && s[i + 1] == '"') field += '"', ++i;
      else if (c == '"') quoted = false;
      else field += c;
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      records.back().emplace_back();
    } else if (c == '\r' && i + 1 < s.size() && s[i + 1] == '\n') {
      ++i;
      records.emplace_back(1);
    } else {
      field += c;
    }
  }
  if (records.back().size() == 1 && records.back()[0].empty()) records.pop_back();
  return records;
}

// ---- the course's own inference outputs ---------------------------------------------------

TEST(Sxs, JoinsTheCourseUntunedAndTunedResults) {
  REQUIRE_COURSE_DATA();
  const fs::path ua = course_dir() / "eval_results_untuned.jsonl", tb = course_dir() / "eval_results_tuned.jsonl";
  const auto untuned = read_jsonl(ua), tuned = read_jsonl(tb);
  ASSERT_EQ(untuned.size(), 5u);  // the files' non-blank lines
  ASSERT_EQ(tuned.size(), 5u);
  SxsTable t = join_sxs(read_sxs_side(ua.string()), read_sxs_side(tb.string()));
  EXPECT_EQ(t.join_on, "inputs_pretokenized");
  ASSERT_EQ(t.rows.size(), untuned.size());
  EXPECT_TRUE(t.unmatched_a.empty());
  EXPECT_TRUE(t.unmatched_b.empty());
  EXPECT_EQ(t.a.label, "eval_results_untuned");
  EXPECT_EQ(t.b.label, "eval_results_tuned");
  for (size_t i = 0; i < t.rows.size(); ++i) {
    const auto& r = t.rows[i];
    EXPECT_EQ(r.id, json(i + 1));
    EXPECT_EQ(r.input_text, untuned[i]["inputs"]["inputs_pretokenized"].get<std::string>());
    EXPECT_EQ(r.response_a, untuned[i]["prediction"].get<std::string>());
    // B's row with the same prompt (the two files happen to share the order too).
    std::string expect_b;
    for (const auto& row : tuned)
      if (row["inputs"]["inputs_pretokenized"] == untuned[i]["inputs"]["inputs_pretokenized"])
        expect_b = row["prediction"];
    EXPECT_EQ(r.response_b, expect_b);
    EXPECT_EQ(r.words_a, text::count_words(r.response_a));
    EXPECT_GT(r.words_a, 0);
  }
  // The seed's prompts hold the instruction: a reward model with that instruction gets the post.
  bool stripped = false;
  data::PromptText p = reward_prompt(t.a.rows[0], "Summarize in less than 50 words.", &stripped);
  EXPECT_TRUE(stripped);
  EXPECT_EQ(p.text.rfind("Before anything", 0), 0u) << p.text.substr(0, 40);
  p = reward_prompt(t.a.rows[0], "", &stripped);
  EXPECT_FALSE(stripped);
  EXPECT_EQ(p.text, t.a.rows[0].pretokenized);
}

// ---- the other input forms ----------------------------------------------------------------

json our_row(const std::string& input_text, const std::string& instruction, const std::string& prediction,
             const std::string& adapter, int id) {
  return {{"id", id},
          {"input_text", input_text},
          {"inputs", {{"inputs_pretokenized", instruction + "\n\n" + input_text}}},
          {"prediction", prediction},
          {"model", {{"reference", "smollm2-135m-instruct"}, {"sha256", "00"}, {"adapter", adapter}}},
          {"settings", {{"instruction", instruction}, {"temperature", 0.0}}},
          {"stopped", true}};
}

TEST(Sxs, ReadsOurFormatAndThePlainForm) {
  auto dir = testing::scratch_dir();
  write_lines(dir / "ours_a.jsonl", {our_row("post one", "Summarize.", "a one", "", 7),
                                     our_row("post two", "Summarize.", "a two words", "", 8)});
  write_lines(dir / "ours_b.jsonl", {our_row("post two", "Summarize.", "b two", "policy", 1),
                                     our_row("post one", "Summarize.", "b one", "policy", 2)});
  write_lines(dir / "plain.jsonl", {{{"prompt", "post two"}, {"completion", "plain two"}},
                                    {{"input_text", "post one"}, {"prediction", "plain one"}}});

  SxsTable t = join_sxs(read_sxs_side((dir / "ours_a.jsonl").string()), read_sxs_side((dir / "ours_b.jsonl").string()));
  EXPECT_EQ(t.join_on, "input_text");  // both carry the dataset prompt
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0].id, 7);  // A's ids are kept
  EXPECT_EQ(t.rows[0].input_text, "post one");  // the dataset prompt, not the formatted one
  EXPECT_EQ(t.rows[0].response_b, "b one");
  EXPECT_EQ(t.rows[1].response_b, "b two");
  EXPECT_EQ(t.rows[1].words_a, 3);
  EXPECT_EQ(t.a.label, "smollm2-135m-instruct");
  EXPECT_EQ(t.b.label, "smollm2-135m-instruct + policy");
  EXPECT_EQ(t.a.settings["instruction"], "Summarize.");
  // Our rows carry the dataset prompt: the reward model gets it untouched.
  bool stripped = true;
  EXPECT_EQ(reward_prompt(t.a.rows[0], "Summarize.", &stripped).text, "post one");
  EXPECT_FALSE(stripped);

  // Ours against plain rows: joined on the dataset prompt.
  t = join_sxs(read_sxs_side((dir / "ours_a.jsonl").string()), read_sxs_side((dir / "plain.jsonl").string()));
  EXPECT_EQ(t.join_on, "input_text");
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0].response_b, "plain one");
  EXPECT_EQ(t.rows[1].response_b, "plain two");
  EXPECT_EQ(t.b.label, "plain");
  // Forced onto inputs_pretokenized, the plain file cannot join: the error names its line.
  std::string e = error_of([&] {
    join_sxs(read_sxs_side((dir / "ours_a.jsonl").string()), read_sxs_side((dir / "plain.jsonl").string()),
             JoinOn::Pretokenized);
  });
  EXPECT_NE(e.find("plain.jsonl:1"), std::string::npos) << e;
  EXPECT_NE(e.find("inputs.inputs_pretokenized"), std::string::npos) << e;
}

TEST(Sxs, KeepsAsOrderPairsDuplicatesInOrderAndReportsUnmatchedPrompts) {
  auto dir = testing::scratch_dir();
  auto row = [](const std::string& p, const std::string& c) { return json{{"input_text", p}, {"prediction", c}}; };
  write_lines(dir / "a.jsonl", {row("p1", "a1"), row("p3", "a3"), row("p2", "a2"), row("p1", "a1 again"),
                                row("p1", "a1 third")});
  write_lines(dir / "b.jsonl", {row("p2", "b2"), row("p1", "b1"), row("p4", "b4"), row("p1", "b1 again")});
  SxsTable t = join_sxs(read_sxs_side((dir / "a.jsonl").string()), read_sxs_side((dir / "b.jsonl").string()));
  ASSERT_EQ(t.rows.size(), 3u);
  EXPECT_EQ(t.rows[0].response_a, "a1");
  EXPECT_EQ(t.rows[0].response_b, "b1");
  EXPECT_EQ(t.rows[1].response_a, "a2");
  EXPECT_EQ(t.rows[1].response_b, "b2");
  EXPECT_EQ(t.rows[2].response_a, "a1 again");
  EXPECT_EQ(t.rows[2].response_b, "b1 again");
  EXPECT_EQ(t.rows[2].id, 3);
  EXPECT_EQ(t.unmatched_a, (std::vector<size_t>{1, 4}));  // p3, and p1's third occurrence
  EXPECT_EQ(t.unmatched_b, (std::vector<size_t>{2}));     // p4
  EXPECT_EQ(t.a.rows[t.unmatched_a[0]].where, (dir / "a.jsonl").string() + ":2");
  EXPECT_EQ(t.duplicates_a, 2u);
  EXPECT_EQ(t.duplicates_b, 1u);
  SxsSummary s = summarize_sxs(t);
  EXPECT_EQ(s.a.unmatched, 2u);
  EXPECT_EQ(s.b.unmatched, 1u);
  EXPECT_NE(format_sxs_summary(s).find("left out: 2 rows only in A, 1 rows only in B"), std::string::npos)
      << format_sxs_summary(s);

  // Nothing in common: an error, not an empty table.
  write_lines(dir / "c.jsonl", {row("q", "c")});
  std::string e = error_of([&] {
    join_sxs(read_sxs_side((dir / "a.jsonl").string()), read_sxs_side((dir / "c.jsonl").string()));
  });
  EXPECT_NE(e.find("no prompt of A is in B"), std::string::npos) << e;
}

TEST(Sxs, BadLinesNameFileLineAndField) {
  auto dir = testing::scratch_dir();
  std::ofstream(dir / "bad.jsonl") << R"({"input_text": "p", "prediction": "x"})" "\n"
                                   << R"({"input_text": "p", "prediction": "x")" "\n";
  std::string e = error_of([&] { read_sxs_side((dir / "bad.jsonl").string()); });
  EXPECT_NE(e.find("bad.jsonl:2"), std::string::npos) << e;
  EXPECT_NE(e.find("JSON"), std::string::npos) << e;

  std::ofstream(dir / "nopred.jsonl") << R"({"input_text": "p", "prediction": "x"})" "\n"
                                      << R"({"input_text": "p"})" "\n";
  e = error_of([&] { read_sxs_side((dir / "nopred.jsonl").string()); });
  EXPECT_NE(e.find("nopred.jsonl:2"), std::string::npos) << e;
  EXPECT_NE(e.find("completion"), std::string::npos) << e;

  std::ofstream(dir / "noprompt.jsonl") << R"({"prediction": "x"})" "\n";
  e = error_of([&] { read_sxs_side((dir / "noprompt.jsonl").string()); });
  EXPECT_NE(e.find("noprompt.jsonl:1"), std::string::npos) << e;
  EXPECT_NE(e.find("input_text"), std::string::npos) << e;

  std::ofstream(dir / "badinputs.jsonl") << R"({"inputs": {"inputs_pretokenized": 3}, "prediction": "x"})" "\n";
  e = error_of([&] { read_sxs_side((dir / "badinputs.jsonl").string()); });
  EXPECT_NE(e.find("badinputs.jsonl:1"), std::string::npos) << e;
  EXPECT_NE(e.find("inputs.inputs_pretokenized"), std::string::npos) << e;

  e = error_of([&] { read_sxs_side((dir / "missing.jsonl").string()); });
  EXPECT_NE(e.find("missing.jsonl"), std::string::npos) << e;

  // skip_invalid: the good line is kept.
  size_t skipped = 0;
  SxsSide s = read_sxs_side((dir / "bad.jsonl").string(), {.skip_invalid = true}, &skipped);
  EXPECT_EQ(s.rows.size(), 1u);
  EXPECT_EQ(skipped, 1u);
  EXPECT_THROW(parse_join_on("nope"), Error);
}

// ---- outputs ----------------------------------------------------------------------------

SxsTable tricky_table(const fs::path& dir) {
  write_lines(dir / "a.jsonl", {{{"input_text", "Say \"hi\", twice,\nthen stop."}, {"prediction", "hi, \"hi\"\r\nbye"}},
                                {{"input_text", "<script>alert('x')</script> & more"}, {"prediction", "<b>bold</b> & 'q' and more words"}},
                                {{"input_text", "plain"}, {"prediction", "one two three"}}});
  write_lines(dir / "b.jsonl", {{{"input_text", "plain"}, {"prediction", "  four  five\tsix\u00a0seven\n"}},
                                {{"input_text", "Say \"hi\", twice,\nthen stop."}, {"prediction", ""}},
                                {{"input_text", "<script>alert('x')</script> & more"}, {"prediction", "</td></tr><script>x()</script>"}}});
  return join_sxs(read_sxs_side((dir / "a.jsonl").string()), read_sxs_side((dir / "b.jsonl").string()));
}

TEST(Sxs, CsvQuotingRoundTrips) {
  auto dir = testing::scratch_dir();
  SxsTable t = tricky_table(dir);
  t.rows[0].score_a = 0.5;
  t.rows[0].score_b = -1.25;
  t.rows[1].score_a = t.rows[1].score_b = t.rows[2].score_a = t.rows[2].score_b = 0.0;
  t.reward_model = "rm";
  const std::string csv = sxs_csv(t);
  auto records = parse_csv(csv);
  ASSERT_EQ(records.size(), t.rows.size() + 1);
  EXPECT_EQ(records[0], (std::vector<std::string>{"id", "input_text", "response_a", "response_b", "words_a", "words_b",
                                                  "score_a", "score_b"}));
  for (size_t i = 0; i < t.rows.size(); ++i) {
    const auto& rec = records[i + 1];
    ASSERT_EQ(rec.size(), 8u) << i;
    EXPECT_EQ(rec[0], std::to_string(i + 1));
    EXPECT_EQ(rec[1], t.rows[i].input_text);
    EXPECT_EQ(rec[2], t.rows[i].response_a);
    EXPECT_EQ(rec[3], t.rows[i].response_b);
    EXPECT_EQ(rec[4], std::to_string(t.rows[i].words_a));
    EXPECT_EQ(rec[5], std::to_string(t.rows[i].words_b));
  }
  EXPECT_EQ(records[1][6], "0.5");
  EXPECT_EQ(records[1][7], "-1.25");
  EXPECT_EQ(records[1][2], "hi, \"hi\"\r\nbye");
  EXPECT_EQ(csv_field("a\"b"), "\"a\"\"b\"");
  EXPECT_EQ(csv_field("plain text"), "plain text");
}

TEST(Sxs, HtmlEscapesEverythingAndNeedsNoNetwork) {
  auto dir = testing::scratch_dir();
  SxsTable t = tricky_table(dir);
  t.a.label = "<i>model</i>";
  const std::string html = sxs_html(t, summarize_sxs(t));
  EXPECT_EQ(html.find("<script"), std::string::npos);  // neither the data's nor any of its own
  EXPECT_EQ(html.find("<b>bold"), std::string::npos);
  EXPECT_EQ(html.find("<i>model"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"), std::string::npos);
  EXPECT_NE(html.find("&lt;/td&gt;&lt;/tr&gt;&lt;script&gt;x()&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(html.find("&lt;i&gt;model&lt;/i&gt;"), std::string::npos);
  for (const char* ref : {"http://", "https://", "src=", "href=", "@import", "url("})
    EXPECT_EQ(html.find(ref), std::string::npos) << ref;
}

TEST(Sxs, WritesTheFourFilesAtomicallyWithTheSummary) {
  auto dir = testing::scratch_dir();
  SxsTable t = tricky_table(dir);
  // Words: A 3, 6, 3; B 0, 1 ("</td></tr><script>x()</script>"), 4; over 3 words: one each.
  SxsSummary s = summarize_sxs(t, 3);
  EXPECT_NEAR(s.a.mean_words, 4.0, 1e-12);
  EXPECT_NEAR(s.a.over_max_words, 1 / 3.0, 1e-12);
  EXPECT_NEAR(s.b.mean_words, (0 + 1 + 4) / 3.0, 1e-12);
  EXPECT_NEAR(s.b.over_max_words, 1 / 3.0, 1e-12);
  EXPECT_FALSE(s.a.mean_score);

  const fs::path out = dir / "out" / "sxs";
  write_sxs_output(out.string(), t, s);
  for (const char* f : {"sxs.jsonl", "sxs.csv", "sxs.html", "summary.json"}) EXPECT_TRUE(fs::exists(out / f)) << f;
  size_t entries = 0;
  for (const auto& e : fs::directory_iterator(dir / "out")) ++entries, (void)e;
  EXPECT_EQ(entries, 1u) << "no temporary folder left beside the output";
  auto rows = read_jsonl(out / "sxs.jsonl");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0]["input_text"], t.rows[0].input_text);
  EXPECT_EQ(rows[0]["response_a"], t.rows[0].response_a);
  EXPECT_EQ(rows[2]["words_b"], 4);
  EXPECT_FALSE(rows[0].contains("score_a"));
  auto summary = json::parse(testing::read_text(out / "summary.json"));
  EXPECT_EQ(summary["rows"], 3);
  EXPECT_EQ(summary["max_words"], 3);
  EXPECT_NEAR(summary["a"]["over_max_words"].get<double>(), 1 / 3.0, 1e-12);
  EXPECT_FALSE(summary.contains("b_score_higher"));

  // With scores: the shares of prompts where B's score is higher.
  t.reward_model = "rm";
  t.rows[0].score_a = 1, t.rows[0].score_b = 2;
  t.rows[1].score_a = 3, t.rows[1].score_b = 2;
  t.rows[2].score_a = 0, t.rows[2].score_b = 0.5;
  s = summarize_sxs(t, 3);
  EXPECT_NEAR(*s.b_higher, 2 / 3.0, 1e-12);
  EXPECT_NEAR(*s.a_higher, 1 / 3.0, 1e-12);
  EXPECT_NEAR(*s.a.mean_score, 4 / 3.0, 1e-12);
  EXPECT_NEAR(*s.b.mean_score, 4.5 / 3.0, 1e-12);
  write_sxs_output(out.string(), t, s);  // an earlier output is replaced
  rows = read_jsonl(out / "sxs.jsonl");
  EXPECT_EQ(rows[1]["score_a"], 3.0);
  summary = json::parse(testing::read_text(out / "summary.json"));
  EXPECT_NEAR(summary["b_score_higher"].get<double>(), 2 / 3.0, 1e-12);
  EXPECT_NE(testing::read_text(out / "sxs.html").find("reward B"), std::string::npos);

  // A folder holding anything else is not replaced.
  std::ofstream(dir / "out" / "sxs" / "notes.txt") << "mine";
  std::string e = error_of([&] { write_sxs_output(out.string(), t, s); });
  EXPECT_NE(e.find("notes.txt"), std::string::npos) << e;
  EXPECT_TRUE(fs::exists(out / "notes.txt"));
}

// ---- the page in a browser --------------------------------------------------------------

TEST(SxsHtml, RendersInHeadlessChromium) {
  REQUIRE_COURSE_DATA();
  if (testing::run("command -v chromium >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "chromium is not installed (scripts/setup --dev installs it)";
  auto dir = testing::scratch_dir();
  SxsTable t = join_sxs(read_sxs_side((course_dir() / "eval_results_untuned.jsonl").string()),
                        read_sxs_side((course_dir() / "eval_results_tuned.jsonl").string()));
  write_sxs_output((dir / "sxs").string(), t, summarize_sxs(t));
  const std::string page = "file://" + fs::absolute(dir / "sxs" / "sxs.html").string();
  const std::string chromium = "timeout 60 chromium --headless --no-sandbox --disable-gpu --user-data-dir=" +
                               (dir / "profile").string() + " ";
  const fs::path png = dir / "page.png";
  ASSERT_EQ(testing::run(chromium + "--screenshot=" + png.string() + " --window-size=1280,2000 '" + page + "' 2>" +
                         (dir / "screenshot.log").string() + " >&2"),
            0)
      << testing::read_text(dir / "screenshot.log");
  const std::string bytes = testing::read_text(png);
  EXPECT_GT(bytes.size(), 20000u);
  std::string why;
  auto img = testing::decode_png(bytes, &why);
  ASSERT_TRUE(img) << why;
  EXPECT_EQ(img->width, 1280u);
  EXPECT_EQ(img->height, 2000u);
  std::set<uint32_t> colours;
  bool header = false, side_a = false, side_b = false;
  auto near = [](const uint8_t* px, int r, int g, int b) {
    return std::abs(px[0] - r) <= 3 && std::abs(px[1] - g) <= 3 && std::abs(px[2] - b) <= 3;
  };
  for (size_t i = 0; i < img->rgb.size(); i += 3) {
    const uint8_t* px = &img->rgb[i];
    colours.insert((uint32_t(px[0]) << 16) | (uint32_t(px[1]) << 8) | px[2]);
    header |= near(px, 0x2f, 0x3b, 0x52);  // the table head's background
    side_a |= near(px, 0x3d, 0x7b, 0xe0);  // A's and B's column marks
    side_b |= near(px, 0xe0, 0x86, 0x3d);
  }
  EXPECT_GT(colours.size(), 50u) << "text in several colours, antialiased";
  EXPECT_TRUE(header && side_a && side_b) << "the page's own colours are on screen (the CSS applied)";

  int rc = 0;
  const std::string dom = testing::capture(chromium + "--dump-dom '" + page + "' 2>/dev/null", &rc);
  ASSERT_EQ(rc, 0);
  const size_t table = dom.find("id=\"sxs\"");
  ASSERT_NE(table, std::string::npos) << dom.substr(0, 2000);
  const size_t body = dom.find("<tbody>", table), end = dom.find("</tbody>", body);
  ASSERT_NE(end, std::string::npos);
  const std::string rows = dom.substr(body, end - body);
  size_t n = 0;
  for (size_t at = rows.find("<tr"); at != std::string::npos; at = rows.find("<tr", at + 1)) ++n;
  EXPECT_EQ(n, t.rows.size());
  const std::string snippet = "My country's equivalent to Valentine's Day is coming.";
  ASSERT_NE(t.rows[0].response_b.find(snippet), std::string::npos);
  EXPECT_NE(rows.find(snippet), std::string::npos) << "a prediction, its apostrophes unescaped by the browser";
}

}  // namespace
}  // namespace rlhf::eval
