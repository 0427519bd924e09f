// rlhf annotate's session (assignment, the event log, restart, undo), agreement and export.
// The page in a real browser is tests/annotate/browser_checks.py.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "rlhf/annotate/agreement.h"
#include "rlhf/annotate/export_prefs.h"
#include "rlhf/annotate/session.h"
#include "rlhf/data/dataset.h"
#include "test_util.h"

namespace rlhf::annotate {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::vector<Item> make_items(size_t n) {
  std::vector<Item> items;
  for (size_t i = 0; i < n; ++i) {
    Item it;
    it.id = "item-" + std::to_string(i);
    it.prompt.text = "question " + std::to_string(i);
    it.candidates = {"first answer " + std::to_string(i), "second answer " + std::to_string(i)};
    it.where = "test:" + std::to_string(i + 1);
    items.push_back(it);
  }
  return items;
}

SessionOptions options(const fs::path& dir, const std::vector<Item>& items, std::vector<std::string> names,
                       int64_t k) {
  SessionOptions o;
  o.dir = (dir / "session").string();
  o.items = &items;
  o.source = "test pairs";
  o.annotators = std::move(names);
  o.per_item = k;
  return o;
}

// The button ("A" or "B") that shows candidate c to this annotator now.
std::string button_for(const json& state, const Item& item, int c) {
  return state["item"]["a"] == item.candidates[c] ? "A" : "B";
}

// Labels the annotator's current item with candidate c (or "tie" / "skip"); expects success.
json answer(Session& s, const std::string& who, const std::vector<Item>& items, const std::string& what) {
  const json st = s.state(who);
  const std::string id = st["item"]["id"];
  const Item& item = *std::find_if(items.begin(), items.end(), [&](const Item& x) { return x.id == id; });
  const std::string button = what == "0" ? button_for(st, item, 0) : what == "1" ? button_for(st, item, 1) : what;
  std::optional<Refusal> refusal;
  json next = s.label(who, id, button, "because", 2.5, refusal);
  EXPECT_FALSE(refusal) << refusal->message;
  return next;
}

TEST(AnnotateAgreement, CohensKappaEqualsTheHandComputedValue) {
  // A: 0 0 0 0 0 1 1 1 t t   B: 0 0 0 0 1 1 1 0 t 1   (t = tie = 2)
  // p_o = 7/10; p_e = .5*.5 + .3*.4 + .2*.1 = .39; kappa = .31 / .61
  const std::vector<std::pair<int, int>> v = {{0, 0}, {0, 0}, {0, 0}, {0, 0}, {0, 1},
                                              {1, 1}, {1, 1}, {1, 0}, {2, 2}, {2, 1}};
  const Kappa k = cohen_kappa(v, 3);
  ASSERT_TRUE(k.value);
  EXPECT_NEAR(*k.value, 0.31 / 0.61, 1e-12);
  EXPECT_EQ(k.items, 10u);
  // Perfect agreement is 1; one category throughout has no chance-corrected value.
  EXPECT_NEAR(*cohen_kappa({{0, 0}, {1, 1}}, 3).value, 1.0, 1e-12);
  EXPECT_FALSE(cohen_kappa({{0, 0}, {0, 0}}, 3).value);
  EXPECT_FALSE(cohen_kappa({}, 3).value);
}

TEST(AnnotateAgreement, FleissKappaEqualsTheHandComputedValue) {
  // Three items, three votes each: P = (1 + 1/3 + 1/3) / 3 = 5/9; p = (5, 2, 2)/9,
  // P_e = 33/81; kappa = (5/9 - 11/27) / (16/27) = 1/4. An item with one vote is left out.
  const Kappa k = fleiss_kappa({{3, 0, 0}, {2, 1, 0}, {0, 1, 2}, {1, 0, 0}});
  ASSERT_TRUE(k.value);
  EXPECT_NEAR(*k.value, 0.25, 1e-12);
  EXPECT_EQ(k.items, 3u);
}

TEST(AnnotateSession, EachItemGoesToKDifferentAnnotatorsInEqualShares) {
  const auto dir = testing::scratch_dir();
  const auto items = make_items(9);
  auto s = Session::open(options(dir, items, {"ann", "bo", "cy"}, 2));
  EXPECT_EQ(s->assigned("ann") + s->assigned("bo") + s->assigned("cy"), 18u);
  for (const auto& name : {"ann", "bo", "cy"}) EXPECT_EQ(s->assigned(name), 6u);
  // Labeling everything gives every item exactly two different voters.
  for (const auto& name : {"ann", "bo", "cy"})
    while (!s->state(name)["item"].is_null()) answer(*s, name, items, "0");
  for (const auto& v : s->votes()) EXPECT_EQ(v.size(), 2u);
  // K above the number of annotators is refused.
  EXPECT_NE(testing::error_of([&] { Session::open(options(dir / "k", items, {"ann", "bo"}, 3)); })
                .find("--per-item 3 needs at least 3 annotators"),
            std::string::npos);
}

TEST(AnnotateSession, LabelsAreKeptInTheOriginalOrderAndSurviveARestart) {
  const auto dir = testing::scratch_dir();
  const auto items = make_items(6);
  std::array<int, 2> shown0{};
  {
    auto s = Session::open(options(dir, items, {"alice", "bob"}, 2));
    const json st = s->state("alice");
    EXPECT_EQ(st["done"], 0);
    EXPECT_EQ(st["assigned"], 6);
    EXPECT_EQ(st["item"]["id"], "item-0");
    EXPECT_EQ(st["item"]["prompt"], "question 0");
    shown0 = st["item"]["a"] == items[0].candidates[0] ? std::array<int, 2>{0, 1} : std::array<int, 2>{1, 0};
    answer(*s, "alice", items, "1");   // candidate 1, whichever side it was on
    answer(*s, "alice", items, "tie");
    answer(*s, "bob", items, "skip");
    // A label for an item that is not the current one is refused and changes nothing.
    std::optional<Refusal> refusal;
    s->label("alice", "item-0", "A", "", 1, refusal);
    ASSERT_TRUE(refusal);
    EXPECT_EQ(refusal->status, 409);
    EXPECT_EQ(s->state("alice")["done"], 2);
    refusal.reset();
    s->label("alice", "item-2", "C", "", 1, refusal);
    ASSERT_TRUE(refusal);
    EXPECT_EQ(refusal->field, "choice");
  }
  // The log holds the choice in the original order and the order shown.
  const auto events = testing::read_jsonl(dir / "session" / "annotations.jsonl");
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0]["choice"], 1);
  EXPECT_EQ(events[0]["shown"], json({shown0[0], shown0[1]}));
  EXPECT_EQ(events[0]["rationale"], "because");
  EXPECT_EQ(events[1]["choice"], "tie");
  EXPECT_EQ(events[2]["choice"], "skip");
  EXPECT_EQ(fs::status(dir / "session").permissions() & fs::perms::others_read, fs::perms::none);

  // Opened again (without the pairs: the folder's own), everyone is where they were.
  SessionOptions again;
  again.dir = (dir / "session").string();
  auto s = Session::open(again);
  EXPECT_EQ(s->state("alice")["done"], 2);
  EXPECT_EQ(s->state("alice")["item"]["id"], "item-2");
  EXPECT_EQ(s->state("bob")["item"]["id"], "item-1");
  const auto votes = s->votes();
  EXPECT_EQ(votes[0].at("alice"), 1);
  EXPECT_EQ(votes[1].at("alice"), 2);
  EXPECT_EQ(votes[0].count("bob"), 0u);  // a skip is no vote
}

TEST(AnnotateSession, UndoTakesBackTheLastLabelsOneByOne) {
  const auto dir = testing::scratch_dir();
  const auto items = make_items(4);
  auto s = Session::open(options(dir, items, {"alice"}, 1));
  std::optional<Refusal> refusal;
  s->undo("alice", refusal);
  ASSERT_TRUE(refusal);
  EXPECT_EQ(refusal->status, 409);
  answer(*s, "alice", items, "0");
  answer(*s, "alice", items, "1");
  refusal.reset();
  json st = s->undo("alice", refusal);
  EXPECT_FALSE(refusal);
  EXPECT_EQ(st["item"]["id"], "item-1");
  EXPECT_EQ(st["done"], 1);
  st = s->undo("alice", refusal);
  EXPECT_EQ(st["item"]["id"], "item-0");
  EXPECT_FALSE(st["can_undo"].get<bool>());
  answer(*s, "alice", items, "tie");
  s.reset();
  SessionOptions again;
  again.dir = (dir / "session").string();
  auto reopened = Session::open(again);
  EXPECT_EQ(reopened->votes()[0].at("alice"), 2);
  EXPECT_TRUE(reopened->votes()[1].empty());
  EXPECT_EQ(reopened->state("alice")["item"]["id"], "item-1");
}

TEST(AnnotateSession, ALastLineCutShortIsLeftOutAndABrokenOneIsNamed) {
  const auto dir = testing::scratch_dir();
  const auto items = make_items(3);
  { auto s = Session::open(options(dir, items, {"alice"}, 1)); answer(*s, "alice", items, "0"); }
  const auto log = dir / "session" / "annotations.jsonl";
  { std::ofstream(log, std::ios::app) << R"({"event":"label","item":"item-1","annot)"; }
  {
    SessionOptions again;
    again.dir = (dir / "session").string();
    auto s = Session::open(again);
    ASSERT_EQ(s->warnings().size(), 1u);
    EXPECT_NE(s->warnings()[0].find("annotations.jsonl:2"), std::string::npos);
    EXPECT_EQ(s->state("alice")["done"], 1);
    answer(*s, "alice", items, "1");  // appended after the trimmed line: the log reads whole again
  }
  EXPECT_EQ(testing::read_jsonl(log).size(), 2u);
  { std::ofstream(log, std::ios::app) << "not json\n" << R"({"event":"undo","item":"item-1","annotator":"alice"})" << "\n"; }
  SessionOptions again;
  again.dir = (dir / "session").string();
  EXPECT_NE(testing::error_of([&] { Session::open(again); }).find("annotations.jsonl:3: not a valid event"),
            std::string::npos);
}

TEST(AnnotateSession, AFolderOfAnotherSessionIsRefusedNamingWhatDiffers) {
  const auto dir = testing::scratch_dir();
  const auto items = make_items(3);
  { auto s = Session::open(options(dir, items, {"alice", "bob"}, 1)); }
  const auto other = make_items(4);
  EXPECT_NE(testing::error_of([&] { Session::open(options(dir, other, {"alice", "bob"}, 1)); }).find("other pairs"),
            std::string::npos);
  EXPECT_NE(testing::error_of([&] { Session::open(options(dir, items, {"alice", "carol"}, 1)); })
                .find("annotators alice,bob, not alice,carol"),
            std::string::npos);
  EXPECT_NE(testing::error_of([&] { Session::open(options(dir, items, {"alice", "bob"}, 2)); }).find("--per-item 1"),
            std::string::npos);
  // One server per folder.
  auto first = Session::open(options(dir, items, {"alice", "bob"}, 1));
  EXPECT_NE(testing::error_of([&] { Session::open(options(dir, items, {"alice", "bob"}, 1)); }).find("is in use"),
            std::string::npos);
  // Names are checked; a folder holding other files is not taken over.
  EXPECT_NE(testing::error_of([&] { Session::open(options(dir / "n", items, {"al ice"}, 1)); }).find("may hold only"),
            std::string::npos);
  fs::create_directories(dir / "busy" / "session");
  std::ofstream(dir / "busy" / "session" / "notes.txt") << "mine";
  EXPECT_NE(testing::error_of([&] { Session::open(options(dir / "busy", items, {"a"}, 1)); }).find("holds files"),
            std::string::npos);
  EXPECT_FALSE(first->annotator_of("").has_value());
  EXPECT_EQ(first->annotator_of(first->annotator_tokens()[1].second), "bob");
  EXPECT_TRUE(first->is_admin(first->admin_token()));
  EXPECT_FALSE(first->is_admin(first->annotator_tokens()[0].second));
}

TEST(AnnotatePairs, IdsComeFromTheRowOrTheContentAndRepeatsAreNamed) {
  const auto dir = testing::scratch_dir();
  {
    std::ofstream f(dir / "pairs.jsonl");
    f << R"({"id": "x1", "input_text": "p", "candidate_0": "a", "candidate_1": "b"})" << "\n";
    f << R"({"id": 7, "input_text": "p", "candidate_0": "a", "candidate_1": "c"})" << "\n";
    f << R"({"messages": [{"role": "user", "content": "hi"}], "candidate_0": "a", "candidate_1": "b", "choice": 1})"
      << "\n";
  }
  const auto items = read_pairs((dir / "pairs.jsonl").string());
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].id, "x1");
  EXPECT_EQ(items[1].id, "7");
  EXPECT_EQ(items[2].id, content_id(items[2].prompt, items[2].candidates));
  EXPECT_EQ(items[2].id.size(), 16u);
  EXPECT_EQ(read_pairs((dir / "pairs.jsonl").string())[2].id, items[2].id);  // stable
  {
    std::ofstream f(dir / "dup.jsonl");
    f << R"({"id": "x", "input_text": "p", "candidate_0": "a", "candidate_1": "b"})" << "\n";
    f << R"({"id": "x", "input_text": "q", "candidate_0": "a", "candidate_1": "b"})" << "\n";
  }
  EXPECT_NE(testing::error_of([&] { read_pairs((dir / "dup.jsonl").string()); }).find("dup.jsonl:2: field 'id'"),
            std::string::npos);
  {
    std::ofstream f(dir / "missing.jsonl");
    f << R"({"input_text": "p", "candidate_0": "a"})" << "\n";
  }
  EXPECT_NE(testing::error_of([&] { read_pairs((dir / "missing.jsonl").string()); })
                .find("missing.jsonl:1: field 'candidate_1' is missing"),
            std::string::npos);
}

TEST(AnnotateExport, MajoritiesTiesAndAgreementAsTheTrainersReadThem) {
  const auto dir = testing::scratch_dir();
  const auto items = make_items(6);
  {
    auto s = Session::open(options(dir, items, {"ann", "bo", "cy"}, 3));
    // item:  0        1        2          3         4             5
    // ann:   0        1        tie        0         0             skip
    // bo:    0        0        tie        1         skip          skip
    // cy:    0        1        tie        tie       skip          skip
    const std::vector<std::vector<std::string>> plan = {{"0", "1", "tie", "0", "0", "skip"},
                                                        {"0", "0", "tie", "1", "skip", "skip"},
                                                        {"0", "1", "tie", "tie", "skip", "skip"}};
    const std::vector<std::string> names = {"ann", "bo", "cy"};
    for (size_t a = 0; a < 3; ++a)
      for (const auto& what : plan[a]) answer(*s, names[a], items, what);
  }
  ExportOptions o;
  o.dir = (dir / "session").string();
  o.output = (dir / "prefs.jsonl").string();
  ExportSummary s = export_preferences(o);
  EXPECT_EQ(s.items, 6u);
  EXPECT_EQ(s.written, 3u);  // items 0, 1, 4
  EXPECT_EQ(s.unanimous, 1u);
  EXPECT_EQ(s.ties, 1u);
  EXPECT_EQ(s.split, 1u);  // item 3: one vote each
  EXPECT_EQ(s.no_votes, 1u);
  EXPECT_EQ(s.measure, "fleiss");
  auto rows = testing::read_jsonl(o.output);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0]["id"], "item-0");
  EXPECT_EQ(rows[0]["choice"], 0);
  EXPECT_EQ(rows[0]["agreement"], 1.0);
  EXPECT_EQ(rows[1]["choice"], 1);
  EXPECT_NEAR(rows[1]["agreement"].get<double>(), 0.6667, 1e-9);
  EXPECT_EQ(rows[1]["annotators"], json({"ann", "bo", "cy"}));
  EXPECT_EQ(rows[1]["votes"]["bo"], 0);
  EXPECT_EQ(rows[2]["id"], "item-4");
  EXPECT_EQ(rows[2]["input_text"], "question 4");
  EXPECT_EQ(rows[2]["candidate_1"], "second answer 4");
  // The trainers' reader takes the file as it is: chosen is the majority's candidate.
  const auto prefs = data::read_preference_dataset(o.output);
  ASSERT_EQ(prefs.size(), 3u);
  EXPECT_EQ(prefs[1].chosen, "second answer 1");
  EXPECT_EQ(prefs[1].rejected, "first answer 1");

  o.keep_ties = true;
  o.min_agreement = 0.9;
  s = export_preferences(o);
  rows = testing::read_jsonl(o.output);
  ASSERT_EQ(rows.size(), 3u);  // 0, the tie 2, 4; item 1 (2/3) is below 0.9
  EXPECT_EQ(s.below_agreement, 1u);
  EXPECT_EQ(rows[1]["id"], "item-2");
  EXPECT_EQ(rows[1]["tie"], true);
  EXPECT_NE(format_export_summary(s, true).find("3 written (2 unanimous), 1 tie kept, 1 without a majority"),
            std::string::npos)
      << format_export_summary(s, true);
  EXPECT_NE(testing::error_of([&] {
              ExportOptions bad = o;
              bad.dir = dir.string();
              export_preferences(bad);
            }).find("not an `rlhf annotate` folder"),
            std::string::npos);
}

}  // namespace
}  // namespace rlhf::annotate
