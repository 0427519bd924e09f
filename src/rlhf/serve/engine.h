// Engine: continuous batching for the server. One thread owns the model and runs a decode
// batch of up to max_batch sequences; a submitted sequence waits in a bounded queue, joins
// the batch at the next token boundary (its prompt is read then), and leaves it when it ends
// (a stop id, its token limit, or cancel()), freeing its slot for the next one. Sequences in
// one batch may use different LoRA adapters of the same base.
//
// Each sequence samples with its own CPU generator seeded with its seed, so what it returns
// does not depend on which other sequences share the batch (greedy is argmax). Log-probs are
// those of generate(): of the chosen token under logits / temperature (1 when greedy).
//
// Thread safety: submit(), stats() and the streams' methods may be called from any thread;
// the model is used by the engine's thread only.
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace rlhf {
class Transformer;
struct LoraAdapter;
}  // namespace rlhf

namespace rlhf::serve {

struct SequenceRequest {
  std::vector<int32_t> prompt;            // ids, at least one; prompt + max_new_tokens fit the context
  const LoraAdapter* adapter = nullptr;   // one of the base's adapters, or null for the base alone
  std::vector<int32_t> stop_ids;          // a sampled stop id ends the sequence (it is reported)
  double temperature = 1.0;               // 0 = greedy
  double top_p = 1.0;                     // nucleus mass (1 = off)
  int64_t top_k = 0;                      // 0 = off
  uint64_t seed = 0;
  int64_t max_new_tokens = 16;            // >= 1
  int32_t top_logprobs = 0;               // alternatives reported with each token (0..20),
                                          // under the distribution `logprob` is taken from
};

struct TokenEvent {
  int32_t token = 0;
  float logprob = 0;                               // of `token`, as generate() reports it
  std::vector<std::pair<int32_t, float>> top;      // the top_logprobs most likely, best first
};

enum class Finish {
  kStop,       // sampled a stop id
  kLength,     // reached max_new_tokens
  kCancelled,  // cancel() was called
  kError,      // the engine failed (message in Update::error)
};

// A submitted sequence as its submitter sees it.
class SequenceStream {
 public:
  struct Update {
    std::vector<TokenEvent> tokens;  // new since the last wait(), in order
    std::optional<Finish> finish;    // set with the last tokens, and in every later update
    std::string error;               // with kError
  };
  virtual ~SequenceStream() = default;
  // Returns what arrived since the last call, waiting up to `timeout` when nothing has (once
  // finished it returns at once).
  virtual Update wait(std::chrono::milliseconds timeout) = 0;
  // Ends the sequence at the engine's next token boundary and frees its slot (or its queue
  // place). Idempotent; the stream then finishes with kCancelled unless it already finished.
  virtual void cancel() = 0;
  // Microseconds from submit() until the first token was produced (0 before).
  virtual int64_t first_token_micros() const = 0;
};

// Thrown by submit() when max_queue sequences already wait: the server answers 503.
struct QueueFull : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct EngineOptions {
  int64_t max_batch = 32;    // sequences decoded together
  int64_t max_queue = 256;   // sequences waiting for a slot; more are refused (QueueFull)
  int32_t pad_id = 0;        // the model's pad id (rows are masked, not padded: unused here)
  // false: one batch mixes adapters (each adapter's LoRA term runs on its rows only);
  // true: each step decodes the rows of one adapter, the adapters taking turns.
  bool group_by_adapter = false;
};

struct EngineStats {
  int64_t queued = 0;               // waiting for a slot
  int64_t running = 0;              // in the decode batch
  int64_t max_batch = 0;
  uint64_t sequences_finished = 0;  // since start
  uint64_t prompt_tokens = 0;       // read by prefill, since start
  uint64_t generated_tokens = 0;    // since start
  uint64_t decode_steps = 0;        // batch steps since start
  uint64_t decode_rows = 0;         // sum over steps of rows decoded (occupancy = rows / steps)
};

class Engine {
 public:
  // Starts the engine's thread. `net` must outlive the engine.
  Engine(const Transformer& net, const EngineOptions& options);
  ~Engine();  // shutdown(), then joins
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues the sequences, all or none (n completions of one request). Throws QueueFull when
  // they do not fit in the queue (beyond the free slots of the batch, at most max_queue wait), rlhf::Error for a request the model cannot take (no prompt,
  // a token id outside the vocabulary, prompt + max_new_tokens over the context).
  std::vector<std::shared_ptr<SequenceStream>> submit(std::vector<SequenceRequest> requests);
  EngineStats stats() const;
  // Refuses new submissions (QueueFull), lets queued and running sequences finish, then ends
  // the engine's thread. Returns when it has ended or `timeout` passed (then the rest are
  // finished with kError "the server is shutting down"). Idempotent.
  void shutdown(std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rlhf::serve
