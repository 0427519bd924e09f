// An annotation session (`rlhf annotate`, docs/annotate.md): the items to label, who labels
// which, and every answer, kept in one folder:
//   session.json       the annotators and their tokens, the admin token, K, the seed of the
//                      shown orders, the items' hash (written once; the folder is mode 0700)
//   items.jsonl        the items as read: id, the prompt (input_text, or messages + context),
//                      candidate_0, candidate_1
//   annotations.jsonl  append-only events, each fsynced before it is acknowledged:
//                      {"event":"label","item","annotator","choice": 0|1|"tie"|"skip",
//                       "shown":[a,b],"rationale","seconds","time"} and
//                      {"event":"undo","item","annotator","time"}
// Opening a folder again replays the events: everyone continues where they were. Torch-free.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/annotate/agreement.h"
#include "rlhf/data/dataset.h"

namespace rlhf::annotate {

// One pair to label.
struct Item {
  std::string id;
  data::PromptText prompt;
  std::array<std::string, 2> candidates;
  std::string where;  // "file:line" it came from
};

// Rows with a prompt (input_text, prompt or messages) and candidate_0, candidate_1; an "id"
// (string or number) or one derived from the content. Throws rlhf::Error naming file:line and
// the field, or the two lines that share an id.
std::vector<Item> read_pairs(const std::string& spec);
// Two bulk-inference outputs joined on the prompt as `rlhf sxs` joins them: candidate 0 is A's
// response, candidate 1 is B's.
std::vector<Item> pair_inference_outputs(const std::string& a, const std::string& b);
// The prompt as items.jsonl and the export write it: input_text for a plain prompt, messages
// (role, content) and context for a conversation.
void put_prompt_fields(nlohmann::ordered_json& row, const data::PromptText& prompt);
// The id of an item without one: the first 16 hex digits of the SHA-256 of its content.
std::string content_id(const data::PromptText& prompt, const std::array<std::string, 2>& candidates);

// What an annotator answered, in the original candidate order.
enum class Choice { Candidate0 = 0, Candidate1 = 1, Tie = 2, Skip = 3 };
nlohmann::json choice_json(Choice c);  // 0, 1, "tie", "skip"

struct Label {
  Choice choice = Choice::Skip;
  std::array<int, 2> shown{0, 1};  // the candidates as shown, A then B
  std::string rationale;
  double seconds = 0;
  std::string time;  // UTC, ISO 8601
};

struct SessionOptions {
  std::string dir;
  const std::vector<Item>* items = nullptr;  // null: the folder's (it must hold a session)
  std::string source;                        // where the items came from, for messages
  std::vector<std::string> annotators;       // empty: the folder's, else one named "annotator"
  int64_t per_item = 0;                      // 0: the folder's, else 1
  std::optional<std::string> guidelines;     // absent: the folder's
  bool read_only = false;                    // export: no lock, nothing written
};

// What the server answers when a label or an undo cannot be taken.
struct Refusal {
  int status;           // 400, 409
  std::string message;
  std::string field;
};

class Session {
 public:
  // Creates the folder's session on first use (the folder absent or empty), else checks that
  // the items, annotators and K agree with what it holds (rlhf::Error naming what differs)
  // and replays its events. Locks the folder against a second server (unless read_only).
  static std::unique_ptr<Session> open(const SessionOptions& options);
  ~Session();

  size_t items() const { return items_.size(); }
  int64_t per_item() const { return per_item_; }
  const std::string& admin_token() const { return admin_token_; }
  std::vector<std::pair<std::string, std::string>> annotator_tokens() const;  // name, token
  size_t assigned(const std::string& annotator) const;
  size_t labels_kept() const;  // current labels of everyone (skips included)
  // Lines of the event log left out when opening (a last line cut short by a crash).
  const std::vector<std::string>& warnings() const { return warnings_; }

  // The annotator a token belongs to (compared in constant time), or nullopt.
  std::optional<std::string> annotator_of(std::string_view token) const;
  bool is_admin(std::string_view token) const;

  // The annotator's state: {"annotator","guidelines","done","assigned","can_undo",
  // "item": null | {"id","prompt","a","b","number"}}.
  nlohmann::json state(const std::string& annotator) const;
  // Labels the annotator's current item; `shown_choice` is "A", "B", "tie" or "skip" as the
  // annotator saw them. Appends and fsyncs the event, then returns the new state; a refusal
  // (not the current item, a bad value) returns it in `refusal` and changes nothing.
  nlohmann::json label(const std::string& annotator, const std::string& item, const std::string& shown_choice,
                       const std::string& rationale, double seconds, std::optional<Refusal>& refusal);
  // Takes back the annotator's last label (409 when there is none).
  nlohmann::json undo(const std::string& annotator, std::optional<Refusal>& refusal);

  // The admin page's data: per annotator counts and median seconds, agreement, disagreements.
  nlohmann::json admin() const;

  // The current votes (skips left out): per item index, annotator -> 0, 1 or 2 (tie).
  std::vector<std::map<std::string, int>> votes() const;
  const Item& item(size_t i) const { return items_[i]; }
  // Cohen's κ for two annotators, Fleiss' for more; the measure's name in `measure`.
  Kappa agreement(std::string* measure) const;

 private:
  struct Annotator {
    std::string name, token;
    std::vector<size_t> assigned;        // item indexes, in order
    std::map<size_t, Label> labels;      // current labels by item index
    std::vector<size_t> order;           // items in the order they were labeled (undo pops)
  };
  Session() = default;
  void create(const SessionOptions& o);
  void load(const SessionOptions& o);
  void assign();
  void replay();
  void append(const nlohmann::ordered_json& event);
  Annotator& annotator(const std::string& name);
  const Annotator& annotator(const std::string& name) const;
  std::optional<size_t> current(const Annotator& a) const;
  std::array<int, 2> shown_order(size_t item, const std::string& annotator) const;
  nlohmann::json state_locked(const Annotator& a) const;
  Kappa agreement_of(const std::vector<std::map<std::string, int>>& votes, std::string* measure) const;

  std::string dir_;
  std::vector<Item> items_;
  std::map<std::string, size_t> index_of_;  // item id -> index
  std::vector<Annotator> annotators_;
  int64_t per_item_ = 1;
  uint64_t seed_ = 0;
  std::string admin_token_, guidelines_;
  std::vector<std::string> warnings_;
  bool read_only_ = false;
  int log_fd_ = -1, lock_fd_ = -1;
  mutable std::mutex mu_;
};

}  // namespace rlhf::annotate
