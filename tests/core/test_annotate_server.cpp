// rlhf annotate's HTTP side, driven by an HTTP client: tokens, the refusals that keep other
// sites and other annotators out, limits, and the answers the page builds on. The page in a
// real browser is tests/annotate/browser_checks.py.
#include <gtest/gtest.h>

#include <httplib.h>

#include <thread>

#include "rlhf/annotate/server.h"
#include "rlhf/annotate/session.h"
#include "test_util.h"

namespace rlhf::annotate {
namespace {

using nlohmann::json;

struct Running {
  std::vector<Item> items;
  std::unique_ptr<Session> session;
  std::unique_ptr<Server> server;
  std::thread thread;
  int port = 0;
  std::string alice, bob, admin;

  explicit Running(const std::filesystem::path& dir) {
    for (int i = 0; i < 3; ++i) {
      Item it;
      it.id = "item-" + std::to_string(i);
      it.prompt.text = i == 1 ? "<script>alert(1)</script>" : "question " + std::to_string(i);
      it.candidates = {"one " + std::to_string(i), "two " + std::to_string(i)};
      items.push_back(it);
    }
    SessionOptions o;
    o.dir = (dir / "session").string();
    o.items = &items;
    o.annotators = {"alice", "bob"};
    o.per_item = 2;
    session = Session::open(o);
    alice = session->annotator_tokens()[0].second;
    bob = session->annotator_tokens()[1].second;
    admin = session->admin_token();
    ServerConfig c;
    c.port = 0;
    server = std::make_unique<Server>(*session, c);
    port = server->bind();
    thread = std::thread([this] { server->run(); });
  }
  ~Running() {
    server->stop();
    thread.join();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(10, 0);
    return c;
  }
};

httplib::Headers bearer(const std::string& token, httplib::Headers more = {}) {
  more.emplace("Authorization", "Bearer " + token);
  return more;
}

json error_body(const httplib::Result& r) { return json::parse(r->body)["error"]; }

TEST(AnnotateServer, PagesCarryAPolicyAndTheApiNeedsATokenOfItsOwn) {
  Running s(testing::scratch_dir());
  auto c = s.client();
  auto page = c.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->get_header_value("Content-Security-Policy").find("script-src 'self'"), std::string::npos);
  EXPECT_EQ(page->get_header_value("X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(page->body.find("question"), std::string::npos);  // the page holds no data
  EXPECT_EQ(c.Get("/static/annotate.js")->status, 200);
  EXPECT_EQ(c.Get("/admin")->status, 200);

  auto none = c.Get("/api/me");
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(c.Get("/api/me", bearer("0123456789abcdef0123456789abcdef"))->status, 401);
  auto me = c.Get("/api/me", bearer(s.alice));
  ASSERT_EQ(me->status, 200);
  const json st = json::parse(me->body);
  EXPECT_EQ(st["annotator"], "alice");
  EXPECT_EQ(st["item"]["id"], "item-0");
  EXPECT_EQ(st["assigned"], 3);
  // The admin data needs the admin token: an annotator's is forbidden.
  EXPECT_EQ(c.Get("/api/admin", bearer(s.alice))->status, 403);
  EXPECT_EQ(c.Get("/api/admin")->status, 401);
  auto admin = c.Get("/api/admin", bearer(s.admin));
  ASSERT_EQ(admin->status, 200);
  EXPECT_EQ(json::parse(admin->body)["annotators"].size(), 2u);
  EXPECT_EQ(c.Get("/etc/passwd")->status, 404);
  EXPECT_EQ(c.Get("/static/../session/session.json")->status, 404);
}

TEST(AnnotateServer, ALabelIsKeptOnlyFromItsAnnotatorsOwnPage) {
  const auto dir = testing::scratch_dir();
  Running s(dir);
  auto c = s.client();
  const std::string label = R"({"item": "item-0", "choice": "A", "rationale": "clear", "seconds": 3.5})";
  // No token, a form's content type, another site's page: refused, nothing written.
  EXPECT_EQ(c.Post("/api/label", label, "application/json")->status, 401);
  EXPECT_EQ(c.Post("/api/label", bearer(s.alice), "item=item-0&choice=A", "application/x-www-form-urlencoded")->status,
            415);
  EXPECT_EQ(c.Post("/api/label", bearer(s.alice), label, "text/plain")->status, 415);
  auto foreign = c.Post("/api/label", bearer(s.alice, {{"Origin", "http://evil.example"}}), label, "application/json");
  EXPECT_EQ(foreign->status, 403);
  EXPECT_EQ(c.Post("/api/label", bearer(s.alice, {{"Sec-Fetch-Site", "cross-site"}}), label, "application/json")->status,
            403);
  EXPECT_FALSE(std::filesystem::exists(dir / "session" / "annotations.jsonl") &&
               std::filesystem::file_size(dir / "session" / "annotations.jsonl") > 0);

  // Fields are checked and named.
  auto bad = c.Post("/api/label", bearer(s.alice), R"({"item": "item-0", "choice": "C"})", "application/json");
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(error_body(bad)["field"], "choice");
  bad = c.Post("/api/label", bearer(s.alice), R"({"item": 3, "choice": "A"})", "application/json");
  EXPECT_EQ(error_body(bad)["field"], "item");
  bad = c.Post("/api/label", bearer(s.alice), R"({"item": "item-0", "choice": "A", "admin": true})", "application/json");
  EXPECT_EQ(error_body(bad)["field"], "admin");
  EXPECT_EQ(c.Post("/api/label", bearer(s.alice), "{not json", "application/json")->status, 400);
  const std::string big = R"({"item": "item-0", "choice": "A", "rationale": ")" + std::string(70 * 1024, 'x') + "\"}";
  EXPECT_EQ(c.Post("/api/label", bearer(s.alice), big, "application/json")->status, 413);

  // The page's own request: same origin, JSON, the token in the header.
  const std::string origin = "http://127.0.0.1:" + std::to_string(s.port);
  auto ok = c.Post("/api/label", bearer(s.alice, {{"Origin", origin}}), label, "application/json");
  ASSERT_EQ(ok->status, 200) << ok->body;
  EXPECT_EQ(json::parse(ok->body)["item"]["id"], "item-1");
  EXPECT_EQ(json::parse(ok->body)["done"], 1);
  // Bob may not label for alice: his token labels his own current item only (item-0 still).
  auto as_bob = c.Post("/api/label", bearer(s.bob), R"({"item": "item-1", "choice": "A"})", "application/json");
  EXPECT_EQ(as_bob->status, 409);
  EXPECT_EQ(json::parse(as_bob->body)["state"]["item"]["id"], "item-0");
  EXPECT_EQ(json::parse(c.Get("/api/me", bearer(s.alice))->body)["done"], 1);
  // A stale page (the item already labeled) gets 409 with the current state.
  auto stale = c.Post("/api/label", bearer(s.alice), label, "application/json");
  EXPECT_EQ(stale->status, 409);
  EXPECT_EQ(json::parse(stale->body)["state"]["item"]["id"], "item-1");
  // The hostile prompt comes back as data, a JSON string, for the page to show as text.
  EXPECT_EQ(json::parse(stale->body)["state"]["item"]["prompt"], "<script>alert(1)</script>");

  auto undo = c.Post("/api/undo", bearer(s.alice), "{}", "application/json");
  ASSERT_EQ(undo->status, 200);
  EXPECT_EQ(json::parse(undo->body)["item"]["id"], "item-0");
  EXPECT_EQ(c.Post("/api/undo", bearer(s.alice), "{}", "application/json")->status, 409);
  const auto events = testing::read_jsonl(dir / "session" / "annotations.jsonl");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0]["event"], "label");
  EXPECT_EQ(events[0]["seconds"], 3.5);
  EXPECT_EQ(events[1]["event"], "undo");
}

}  // namespace
}  // namespace rlhf::annotate
