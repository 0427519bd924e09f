#include "rlhf/annotate/session.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <random>
#include <set>

#include <fmt/format.h>

#include "rlhf/eval/sxs.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"
#include "rlhf/util/hash.h"
#include "rlhf/util/http.h"

namespace rlhf::annotate {
namespace fs = std::filesystem;
using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

namespace {

constexpr const char* kFormat = "rlhf-annotate/1";
constexpr size_t kMaxRationaleChars = 4000;
constexpr size_t kMaxSessionBytes = size_t(64) << 20;
constexpr size_t kMaxLogBytes = size_t(4) << 30;
constexpr double kMaxSeconds = 7 * 24 * 3600.0;

std::string now_utc() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03d}Z", buf, static_cast<int>(ms));
}

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

uint64_t splitmix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::string items_jsonl(const std::vector<Item>& items) {
  std::string out;
  for (const auto& it : items) {
    ojson row;
    row["id"] = it.id;
    put_prompt_fields(row, it.prompt);
    row["candidate_0"] = it.candidates[0];
    row["candidate_1"] = it.candidates[1];
    out += row.dump(-1, ' ', false, ojson::error_handler_t::strict) + "\n";
  }
  return out;
}

void check_annotator_name(const std::string& name) {
  if (name.empty() || name.size() > 64)
    fail("annotator name '{}' must be 1 to 64 characters", name.substr(0, 80));
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-'))
      fail("annotator name '{}' may hold only letters, digits, '.', '_' and '-'", name.substr(0, 80));
}

std::string joined(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ",") + n;
  return s;
}

int category(Choice c) { return c == Choice::Candidate0 ? 0 : c == Choice::Candidate1 ? 1 : 2; }

void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

// ---- items -------------------------------------------------------------------------------------

void put_prompt_fields(ojson& row, const data::PromptText& p) {
  if (!p.is_chat()) {
    row["input_text"] = p.text;
    return;
  }
  ojson messages = ojson::array();
  for (const auto& t : p.messages) messages.push_back({{"role", t.author}, {"content", t.content}});
  row["messages"] = messages;
  if (!p.context.empty()) row["context"] = p.context;
}

std::string content_id(const data::PromptText& prompt, const std::array<std::string, 2>& candidates) {
  ojson row;
  put_prompt_fields(row, prompt);
  row["candidate_0"] = candidates[0];
  row["candidate_1"] = candidates[1];
  return sha256_hex(row.dump(-1, ' ', false, ojson::error_handler_t::replace)).substr(0, 16);
}

namespace {

std::vector<Item> with_unique_ids(std::vector<Item> items) {
  std::map<std::string, std::string> seen;  // id -> where
  for (const auto& it : items) {
    auto [pos, fresh] = seen.emplace(it.id, it.where);
    if (!fresh)
      fail("{}: field 'id': '{}' is the id of {} too (each item needs its own id)", it.where, it.id, pos->second);
  }
  if (items.empty()) fail("no items to annotate");
  return items;
}

}  // namespace

std::vector<Item> read_pairs(const std::string& spec) {
  std::vector<Item> items;
  for (auto& r : data::read_prompt_dataset(spec)) {
    const json j = json::parse(r.json);
    Item it;
    it.prompt = std::move(r.prompt);
    it.where = r.where;
    for (int c = 0; c < 2; ++c) {
      const std::string f = fmt::format("candidate_{}", c);
      auto v = j.find(f);
      if (v == j.end()) fail("{}: field '{}' is missing (pairs hold a prompt, candidate_0 and candidate_1)", r.where, f);
      if (!v->is_string()) fail("{}: field '{}' must be a string", r.where, f);
      it.candidates[c] = v->get<std::string>();
    }
    auto id = j.find("id");
    if (id == j.end() || id->is_null()) {
      it.id = content_id(it.prompt, it.candidates);
    } else if (id->is_string()) {
      it.id = id->get<std::string>();
      if (it.id.empty() || it.id.size() > 256) fail("{}: field 'id' must be 1 to 256 characters", r.where);
    } else if (id->is_number_integer()) {
      it.id = id->dump();
    } else {
      fail("{}: field 'id' must be a string or a whole number", r.where);
    }
    items.push_back(std::move(it));
  }
  return with_unique_ids(std::move(items));
}

std::vector<Item> pair_inference_outputs(const std::string& a, const std::string& b) {
  eval::SxsTable t = eval::join_sxs(eval::read_sxs_side(a), eval::read_sxs_side(b));
  std::vector<Item> items;
  for (const auto& row : t.rows) {
    const eval::SxsInputRow& ra = t.a.rows[row.a];
    Item it;
    it.prompt.text = row.input_text;
    it.candidates = {row.response_a, row.response_b};
    it.where = ra.where;
    if (ra.id.is_string()) it.id = ra.id.get<std::string>();
    else if (ra.id.is_number_integer()) it.id = ra.id.dump();
    else it.id = content_id(it.prompt, it.candidates);
    items.push_back(std::move(it));
  }
  return with_unique_ids(std::move(items));
}

json choice_json(Choice c) {
  switch (c) {
    case Choice::Candidate0: return 0;
    case Choice::Candidate1: return 1;
    case Choice::Tie: return "tie";
    case Choice::Skip: return "skip";
  }
  return nullptr;
}

// ---- opening ------------------------------------------------------------------------------------

std::unique_ptr<Session> Session::open(const SessionOptions& o) {
  std::unique_ptr<Session> s(new Session());
  s->dir_ = o.dir;
  s->read_only_ = o.read_only;
  const fs::path dir(o.dir);
  const bool exists = fs::exists(dir / "session.json");
  if (!exists && o.read_only) fail("{}: no session.json here: not an `rlhf annotate` folder", o.dir);
  if (!exists && !o.items) fail("{} holds no annotation session yet: give --pairs (or --from-infer)", o.dir);
  if (!o.read_only) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) fail("cannot create {}: {}", o.dir, ec.message());
    if (!fs::is_directory(dir)) fail("{} is not a folder", o.dir);
    s->lock_fd_ = ::open((dir / ".lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    if (s->lock_fd_ < 0) fail("cannot open {}: {}", (dir / ".lock").string(), std::strerror(errno));
    if (::flock(s->lock_fd_, LOCK_EX | LOCK_NB) != 0)
      fail("{} is in use: another `rlhf annotate` is serving this folder", o.dir);
  }
  if (exists) s->load(o);
  else s->create(o);
  s->assign();
  s->replay();
  if (!o.read_only) {
    const std::string log = (dir / "annotations.jsonl").string();
    s->log_fd_ = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (s->log_fd_ < 0) fail("cannot open {}: {}", log, std::strerror(errno));
    fsync_dir(o.dir);  // the log's name is on disk before its first line is acknowledged
  }
  return s;
}

Session::~Session() {
  if (log_fd_ >= 0) ::close(log_fd_);
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the lock
}

void Session::create(const SessionOptions& o) {
  const fs::path dir(o.dir);
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename() != ".lock")
      fail("{} holds files but no session.json: give a new or empty folder as --output", o.dir);
  ::chmod(o.dir.c_str(), 0700);  // the tokens are secrets
  items_ = *o.items;
  per_item_ = o.per_item > 0 ? o.per_item : 1;
  std::vector<std::string> names = o.annotators.empty() ? std::vector<std::string>{"annotator"} : o.annotators;
  std::set<std::string> unique;
  for (const auto& n : names) {
    check_annotator_name(n);
    if (!unique.insert(n).second) fail("annotator '{}' is named twice", n);
  }
  if (per_item_ > static_cast<int64_t>(names.size()))
    fail("--per-item {} needs at least {} annotators (there are {}): an item never goes twice to one annotator",
         per_item_, per_item_, names.size());
  for (const auto& n : names) annotators_.push_back({n, http::random_token(), {}, {}, {}});
  admin_token_ = http::random_token();
  std::random_device rd;
  seed_ = (uint64_t(rd()) << 32) | rd();
  guidelines_ = o.guidelines.value_or("");

  const std::string items_text = items_jsonl(items_);
  write_file_atomic((dir / "items.jsonl").string(), items_text);
  ojson session;
  session["format"] = kFormat;
  session["created"] = now_utc();
  session["source"] = o.source;
  session["items"] = items_.size();
  session["items_sha256"] = sha256_hex(items_text);
  session["per_item"] = per_item_;
  session["seed"] = seed_;
  session["guidelines"] = guidelines_;
  session["admin_token"] = admin_token_;
  ojson list = ojson::array();
  for (const auto& a : annotators_) list.push_back({{"name", a.name}, {"token", a.token}});
  session["annotators"] = list;
  // session.json last: a folder with it holds a whole session.
  const std::string path = (dir / "session.json").string();
  write_file_atomic(path, session.dump(2) + "\n");
  ::chmod(path.c_str(), 0600);  // the tokens are secrets (the folder is 0700 too)
  fsync_dir(o.dir);
}

void Session::load(const SessionOptions& o) {
  const fs::path dir(o.dir);
  const std::string path = (dir / "session.json").string();
  json s;
  try {
    s = json::parse(read_file(path, kMaxSessionBytes));
  } catch (const json::exception& e) {
    fail("{}: not valid JSON ({})", path, e.what());
  }
  auto field = [&](const char* name) -> const json& {
    auto it = s.find(name);
    if (it == s.end()) fail("{}: field '{}' is missing", path, name);
    return *it;
  };
  try {
    if (field("format") != kFormat) fail("{}: field 'format' is not '{}'", path, kFormat);
    per_item_ = field("per_item").get<int64_t>();
    seed_ = field("seed").get<uint64_t>();
    admin_token_ = field("admin_token").get<std::string>();
    guidelines_ = field("guidelines").get<std::string>();
    for (const auto& a : field("annotators")) {
      annotators_.push_back({a.at("name").get<std::string>(), a.at("token").get<std::string>(), {}, {}, {}});
      check_annotator_name(annotators_.back().name);
    }
    const std::string items_path = (dir / "items.jsonl").string();
    const std::string stored_hash = field("items_sha256").get<std::string>();
    if (o.items) {
      const std::string text = items_jsonl(*o.items);
      if (sha256_hex(text) != stored_hash)
        fail("{} holds a session over other pairs ({} items from {}) than {} ({} items): give a new --output, or "
             "the same pairs",
             o.dir, field("items").get<size_t>(), field("source").get<std::string>(), o.source, o.items->size());
      items_ = *o.items;
    } else {
      if (sha256_hex(read_file(items_path)) != stored_hash)
        fail("{}: its content is not what {} recorded (edited after the session began?)", items_path, path);
      items_ = read_pairs(items_path);
    }
  } catch (const json::exception& e) {
    fail("{}: {}", path, e.what());
  }
  if (annotators_.empty()) fail("{}: no annotators", path);
  std::vector<std::string> stored;
  for (const auto& a : annotators_) stored.push_back(a.name);
  if (!o.annotators.empty() && o.annotators != stored)
    fail("{} holds a session with annotators {}, not {}: give the same annotators, or a new --output", o.dir,
         joined(stored), joined(o.annotators));
  if (o.per_item > 0 && o.per_item != per_item_)
    fail("{} holds a session with --per-item {}, not {}: give the same, or a new --output", o.dir, per_item_,
         o.per_item);
  if (per_item_ < 1 || per_item_ > static_cast<int64_t>(annotators_.size()))
    fail("{}: field 'per_item' must be in [1, {}]", path, annotators_.size());
  if (o.guidelines && *o.guidelines != guidelines_ && !o.read_only) {
    guidelines_ = *o.guidelines;
    json updated = s;
    updated["guidelines"] = guidelines_;
    write_file_atomic(path, updated.dump(2) + "\n");
    ::chmod(path.c_str(), 0600);
  }
}

// Item i goes to annotators iK, iK+1, ..., iK+K-1 (mod N): K different ones, equal shares.
void Session::assign() {
  const size_t n = annotators_.size(), k = static_cast<size_t>(per_item_);
  for (size_t i = 0; i < items_.size(); ++i) {
    index_of_[items_[i].id] = i;
    for (size_t j = 0; j < k; ++j) annotators_[(i * k + j) % n].assigned.push_back(i);
  }
}

void Session::replay() {
  const fs::path path = fs::path(dir_) / "annotations.jsonl";
  if (!fs::exists(path)) return;
  const std::string text = read_file(path.string(), kMaxLogBytes);
  size_t line_no = 0, start = 0;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    const bool complete = end != std::string::npos;
    const std::string_view line(text.data() + start, (complete ? end : text.size()) - start);
    ++line_no;
    const std::string where = fmt::format("{}:{}", path.string(), line_no);
    try {
      if (line.find_first_not_of(" \t\r") == std::string_view::npos) {
        start = complete ? end + 1 : text.size();
        continue;
      }
      const json e = json::parse(line);
      const std::string event = e.at("event").get<std::string>();
      const std::string name = e.at("annotator").get<std::string>();
      const std::string id = e.at("item").get<std::string>();
      auto a = std::find_if(annotators_.begin(), annotators_.end(), [&](const Annotator& x) { return x.name == name; });
      if (a == annotators_.end()) fail("{}: field 'annotator': '{}' is not an annotator of this session", where, name);
      auto ix = index_of_.find(id);
      if (ix == index_of_.end()) fail("{}: field 'item': '{}' is not an item of this session", where, id);
      const size_t i = ix->second;
      if (event == "label") {
        if (std::find(a->assigned.begin(), a->assigned.end(), i) == a->assigned.end())
          fail("{}: item '{}' is not assigned to '{}'", where, id, name);
        Label l;
        const json& c = e.at("choice");
        if (c == 0) l.choice = Choice::Candidate0;
        else if (c == 1) l.choice = Choice::Candidate1;
        else if (c == "tie") l.choice = Choice::Tie;
        else if (c == "skip") l.choice = Choice::Skip;
        else fail("{}: field 'choice' must be 0, 1, \"tie\" or \"skip\"", where);
        const json& shown = e.at("shown");
        if (shown != json({0, 1}) && shown != json({1, 0})) fail("{}: field 'shown' must be [0,1] or [1,0]", where);
        l.shown = {shown[0].get<int>(), shown[1].get<int>()};
        l.rationale = e.value("rationale", "");
        l.seconds = e.value("seconds", 0.0);
        l.time = e.value("time", "");
        a->labels[i] = std::move(l);
        std::erase(a->order, i);
        a->order.push_back(i);
      } else if (event == "undo") {
        a->labels.erase(i);
        std::erase(a->order, i);
      } else {
        fail("{}: field 'event' must be \"label\" or \"undo\"", where);
      }
    } catch (const json::exception& ex) {
      if (!complete) {
        // The last line, cut short by a crash while it was written: never acknowledged.
        warnings_.push_back(fmt::format("{}: an incomplete last line (a write cut short) left out", where));
        if (!read_only_) {
          if (::truncate(path.c_str(), static_cast<off_t>(start)) != 0)
            fail("cannot trim {}: {}", path.string(), std::strerror(errno));
        }
        break;
      }
      fail("{}: not a valid event ({})", where, ex.what());
    }
    start = complete ? end + 1 : text.size();
  }
}

// ---- answers -----------------------------------------------------------------------------------

void Session::append(const ojson& event) {
  const std::string line = event.dump(-1, ' ', false, ojson::error_handler_t::strict) + "\n";
  const std::string path = (fs::path(dir_) / "annotations.jsonl").string();
  write_all(log_fd_, line, path);
  if (::fdatasync(log_fd_) != 0) fail("cannot sync {}: {}", path, std::strerror(errno));
}

Session::Annotator& Session::annotator(const std::string& name) {
  for (auto& a : annotators_)
    if (a.name == name) return a;
  fail("unknown annotator '{}'", name);
}
const Session::Annotator& Session::annotator(const std::string& name) const {
  return const_cast<Session*>(this)->annotator(name);
}

std::optional<size_t> Session::current(const Annotator& a) const {
  for (size_t i : a.assigned)
    if (!a.labels.count(i)) return i;
  return std::nullopt;
}

std::array<int, 2> Session::shown_order(size_t item, const std::string& annotator) const {
  const uint64_t h = splitmix(seed_ ^ fnv1a(items_[item].id) ^ splitmix(fnv1a(annotator)));
  return (h & 1) ? std::array<int, 2>{1, 0} : std::array<int, 2>{0, 1};
}

std::vector<std::pair<std::string, std::string>> Session::annotator_tokens() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& a : annotators_) out.emplace_back(a.name, a.token);
  return out;
}

size_t Session::assigned(const std::string& name) const { return annotator(name).assigned.size(); }

size_t Session::labels_kept() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const auto& a : annotators_) n += a.labels.size();
  return n;
}

std::optional<std::string> Session::annotator_of(std::string_view token) const {
  std::optional<std::string> found;
  for (const auto& a : annotators_)  // every token compared: the time says nothing about which
    if (http::equal_constant_time(token, a.token)) found = a.name;
  return found;
}

bool Session::is_admin(std::string_view token) const { return http::equal_constant_time(token, admin_token_); }

json Session::state_locked(const Annotator& a) const {
  json s;
  s["annotator"] = a.name;
  s["guidelines"] = guidelines_;
  s["done"] = a.labels.size();
  s["assigned"] = a.assigned.size();
  s["can_undo"] = !a.order.empty();
  const auto cur = current(a);
  if (!cur) {
    s["item"] = nullptr;
    return s;
  }
  const Item& it = items_[*cur];
  const auto shown = shown_order(*cur, a.name);
  const size_t number = std::find(a.assigned.begin(), a.assigned.end(), *cur) - a.assigned.begin() + 1;
  s["item"] = {{"id", it.id},
               {"prompt", eval::prompt_as_text(it.prompt)},
               {"a", it.candidates[shown[0]]},
               {"b", it.candidates[shown[1]]},
               {"number", number}};
  return s;
}

json Session::state(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_locked(annotator(name));
}

json Session::label(const std::string& name, const std::string& item, const std::string& shown_choice,
                    const std::string& rationale, double seconds, std::optional<Refusal>& refusal) {
  std::lock_guard<std::mutex> lock(mu_);
  Annotator& a = annotator(name);
  if (shown_choice != "A" && shown_choice != "B" && shown_choice != "tie" && shown_choice != "skip") {
    refusal = Refusal{400, "choice must be \"A\", \"B\", \"tie\" or \"skip\"", "choice"};
    return state_locked(a);
  }
  size_t chars = 0;
  for (unsigned char c : rationale) chars += (c & 0xC0) != 0x80;
  if (chars > kMaxRationaleChars) {
    refusal = Refusal{400, fmt::format("the rationale is {} characters; at most {}", chars, kMaxRationaleChars),
                      "rationale"};
    return state_locked(a);
  }
  if (!std::isfinite(seconds) || seconds < 0) {
    refusal = Refusal{400, "seconds must be a number of seconds, not negative", "seconds"};
    return state_locked(a);
  }
  const auto cur = current(a);
  if (!cur) {
    refusal = Refusal{409, "all your items are labeled", "item"};
    return state_locked(a);
  }
  if (items_[*cur].id != item) {
    refusal = Refusal{409,
                      "this is not your current item (was the page open twice?): the current one is shown now",
                      "item"};
    return state_locked(a);
  }
  Label l;
  l.shown = shown_order(*cur, a.name);
  l.choice = shown_choice == "A"   ? Choice(l.shown[0])
             : shown_choice == "B" ? Choice(l.shown[1])
             : shown_choice == "tie" ? Choice::Tie
                                     : Choice::Skip;
  l.rationale = rationale;
  l.seconds = std::min(seconds, kMaxSeconds);
  l.time = now_utc();
  ojson e;
  e["event"] = "label";
  e["item"] = item;
  e["annotator"] = a.name;
  e["choice"] = choice_json(l.choice);
  e["shown"] = {l.shown[0], l.shown[1]};
  e["rationale"] = l.rationale;
  e["seconds"] = std::round(l.seconds * 1000) / 1000;
  e["time"] = l.time;
  append(e);  // on disk before anything changes here or the page hears of it
  a.labels[*cur] = std::move(l);
  a.order.push_back(*cur);
  return state_locked(a);
}

json Session::undo(const std::string& name, std::optional<Refusal>& refusal) {
  std::lock_guard<std::mutex> lock(mu_);
  Annotator& a = annotator(name);
  if (a.order.empty()) {
    refusal = Refusal{409, "there is no label to undo", ""};
    return state_locked(a);
  }
  const size_t i = a.order.back();
  ojson e;
  e["event"] = "undo";
  e["item"] = items_[i].id;
  e["annotator"] = a.name;
  e["time"] = now_utc();
  append(e);
  a.order.pop_back();
  a.labels.erase(i);
  return state_locked(a);
}

// ---- agreement -----------------------------------------------------------------------------------

std::vector<std::map<std::string, int>> Session::votes() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::map<std::string, int>> out(items_.size());
  for (const auto& a : annotators_)
    for (const auto& [i, l] : a.labels)
      if (l.choice != Choice::Skip) out[i][a.name] = category(l.choice);
  return out;
}

Kappa Session::agreement(std::string* measure) const { return agreement_of(votes(), measure); }

Kappa Session::agreement_of(const std::vector<std::map<std::string, int>>& all, std::string* measure) const {
  if (annotators_.size() == 2) {
    if (measure) *measure = "cohen";
    std::vector<std::pair<int, int>> pairs;
    for (const auto& v : all) {
      auto x = v.find(annotators_[0].name), y = v.find(annotators_[1].name);
      if (x != v.end() && y != v.end()) pairs.emplace_back(x->second, y->second);
    }
    return cohen_kappa(pairs, 3);
  }
  if (annotators_.size() > 2) {
    if (measure) *measure = "fleiss";
    std::vector<std::vector<int>> counts;
    for (const auto& v : all) {
      std::vector<int> c(3, 0);
      for (const auto& [name, cat] : v) ++c[cat];
      counts.push_back(c);
    }
    return fleiss_kappa(counts);
  }
  if (measure) *measure = "";
  return {};
}

json Session::admin() const {
  json out;
  std::string measure;
  const auto all = votes();
  const Kappa k = agreement_of(all, &measure);
  std::lock_guard<std::mutex> lock(mu_);
  out["items"] = items_.size();
  out["per_item"] = per_item_;
  size_t labels = 0;
  json people = json::array();
  for (const auto& a : annotators_) {
    size_t ties = 0, skips = 0;
    std::vector<double> secs;
    for (const auto& [i, l] : a.labels) {
      ties += l.choice == Choice::Tie;
      skips += l.choice == Choice::Skip;
      secs.push_back(l.seconds);
    }
    json median = nullptr;
    if (!secs.empty()) {
      std::sort(secs.begin(), secs.end());
      const size_t m = secs.size() / 2;
      median = secs.size() % 2 ? secs[m] : (secs[m - 1] + secs[m]) / 2;
    }
    labels += a.labels.size();
    people.push_back({{"name", a.name},
                      {"assigned", a.assigned.size()},
                      {"done", a.labels.size()},
                      {"labels", a.labels.size() - skips},
                      {"ties", ties},
                      {"skips", skips},
                      {"median_seconds", median}});
  }
  out["labels"] = labels;
  out["annotators"] = people;
  out["agreement"] = {{"measure", measure.empty() ? json(nullptr) : json(measure)},
                      {"kappa", k.value ? json(*k.value) : json(nullptr)},
                      {"items", k.items}};
  json disagreements = json::array();
  for (size_t i = 0; i < all.size(); ++i) {
    if (all[i].size() < 2) continue;
    std::set<int> distinct;
    for (const auto& [name, c] : all[i]) distinct.insert(c);
    if (distinct.size() < 2) continue;
    json votes = json::object();
    for (const auto& [name, c] : all[i]) votes[name] = c == 2 ? json("tie") : json(c);
    disagreements.push_back({{"id", items_[i].id},
                             {"prompt", eval::prompt_as_text(items_[i].prompt)},
                             {"candidate_0", items_[i].candidates[0]},
                             {"candidate_1", items_[i].candidates[1]},
                             {"votes", votes}});
  }
  out["disagreements"] = disagreements;
  return out;
}

}  // namespace rlhf::annotate
