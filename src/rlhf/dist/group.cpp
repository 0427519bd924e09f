#include "rlhf/dist/group.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL  // the CUDA build (CMakeLists.txt)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#include "rlhf/util/error.h"

namespace rlhf::dist {

namespace {

// An exception's message without c10's backtrace.
std::string message_of(const std::exception& e) {
  if (const auto* c = dynamic_cast<const c10::Error*>(&e)) return c->what_without_backtrace();
  return e.what();
}

// torchrun serves the store from its agent (and says so in TORCHELASTIC_USE_AGENT_STORE); a
// rank 0 that tried to serve it too would fail to bind the port (c10d logs it and goes on).
bool torchrun_serves_the_store() {
  const char* v = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
  return v && std::string_view(v) == "True";
}

// The network device Gloo uses: GLOO_SOCKET_IFNAME's interface when set (as in PyTorch), the
// loopback for a job on one machine, else the one the host name resolves to.
std::shared_ptr<::gloo::transport::Device> gloo_device(const std::string& master_addr) {
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
    return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  if (master_addr == "localhost" || master_addr.starts_with("127."))
    return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

// A rank's sign of life in the store, "heartbeat/<rank>" = "<unix ms> <collectives entered>",
// with " exited" appended by its last one.
constexpr auto kBeatEvery = std::chrono::seconds(1);
constexpr auto kStillFor = std::chrono::seconds(4);     // a heartbeat that does not move this long stopped
constexpr auto kStoreAnswer = std::chrono::seconds(3);  // the heartbeat connection's wait for the store

std::string heartbeat_key(int rank) { return "heartbeat/" + std::to_string(rank); }

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Beat {
  std::string raw;
  int64_t unix_ms = 0;
  uint64_t collectives = 0;
  bool exited = false;
};

Beat parse_beat(const std::vector<uint8_t>& v) {
  Beat b;
  b.raw.assign(v.begin(), v.end());
  long long ms = 0;
  unsigned long long n = 0;
  if (std::sscanf(b.raw.c_str(), "%lld %llu", &ms, &n) == 2) {
    b.unix_ms = ms;
    b.collectives = n;
  }
  b.exited = b.raw.ends_with(" exited");
  return b;
}

bool is_timeout(const std::string& message) {
  return message.find("Timeout") != std::string::npos || message.find("timed out") != std::string::npos ||
         message.find("Timed out") != std::string::npos;
}

// This rank's heartbeat and the reading of the others'. A thread of its own writes the
// heartbeat (a store `set`: no answer awaited, so a silent store never blocks it) and, when a
// collective failed, reads the others' (diagnose). Everything it touches lives here, shared
// with the thread, so that a thread stuck on a silent store may outlive its Group.
struct Heartbeat {
  int rank = 0, size = 1;
  std::string store_at;                   // MASTER_ADDR:MASTER_PORT
  std::string store_owner;                // who serves it: "rank 0 of N", or torchrun's agent
  c10::intrusive_ptr<c10d::Store> store;  // its own connection, waits up to kStoreAnswer
  std::atomic<uint64_t> collectives{0};   // entered by this rank so far

  std::mutex m;
  std::condition_variable cv;
  bool stopping = false, finished = false;
  bool asked = false, answered = false;
  bool store_answered = false;  // the diagnosis asked for has read the store once
  std::string answer;
  std::string store_lost;  // the store's error once a write failed (only the thread touches it)

  void beat(bool last) {
    if (!store_lost.empty()) return;
    std::string v = std::to_string(unix_ms()) + " " + std::to_string(collectives.load());
    if (last) v += " exited";
    try {
      store->set(heartbeat_key(rank), std::vector<uint8_t>(v.begin(), v.end()));
    } catch (const std::exception& e) {
      store_lost = message_of(e);
    }
  }

  std::string store_gone(const std::string& why) const {
    return fmt::format("{} died: the job's store it serves at {} is gone ({})", store_owner, store_at, why);
  }
  std::string store_silent() const {
    return fmt::format("{} stopped answering (it hangs or was stopped): the job's store it serves at {} is silent",
                       store_owner, store_at);
  }

  // What became of the other ranks, read from their heartbeats over kStillFor at most.
  std::string diagnose() {
    if (!store_lost.empty()) return store_gone(store_lost);
    std::vector<std::string> keys;
    for (int r = 0; r < size; ++r) keys.push_back(heartbeat_key(r));
    auto read = [&] {
      std::vector<Beat> beats;
      for (const auto& v : store->multiGet(keys)) beats.push_back(parse_beat(v));
      return beats;
    };
    try {
      const auto t0 = std::chrono::steady_clock::now();
      const std::vector<Beat> first = read();
      {
        std::lock_guard lock(m);
        store_answered = true;
        cv.notify_all();
      }
      std::vector<Beat> last = first;
      std::vector<bool> moved(static_cast<size_t>(size), false);
      moved[static_cast<size_t>(rank)] = true;
      auto settled = [&] {
        for (int r = 0; r < size; ++r)
          if (!moved[r] && !last[r].exited) return false;
        return true;
      };
      while (!settled() && std::chrono::steady_clock::now() - t0 < kStillFor) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        const std::vector<Beat> now = read();
        for (int r = 0; r < size; ++r)
          if (!moved[r] && now[r].raw != first[r].raw) {
            moved[r] = true;
            last[r] = now[r];
          }
      }
      const double watched = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const int64_t now_ms = unix_ms();
      std::vector<std::string> lost, behind;
      for (int r = 0; r < size; ++r) {
        if (r == rank) continue;
        const Beat& b = last[r];
        // Seconds since its last heartbeat: the clocks of two machines may differ, but it was
        // seen not to move for `watched` seconds at least.
        const double ago = std::max(watched, double(now_ms - b.unix_ms) / 1000.0);
        if (b.exited)
          lost.push_back(fmt::format("rank {} of {} has exited ({:.0f} s ago)", r, size, ago));
        else if (!moved[r])
          lost.push_back(fmt::format(
              "rank {} of {} stopped answering (its last sign of life {:.0f} s ago): it died or hangs", r, size, ago));
        else if (b.collectives < collectives.load())
          behind.push_back(
              fmt::format("rank {} of {} is alive but has not reached this collective (it has entered {}, "
                          "this rank {}): it is stuck or slower than the timeout",
                          r, size, b.collectives, collectives.load()));
      }
      if (!lost.empty()) return fmt::format("{}", fmt::join(lost, "; "));
      if (!behind.empty()) return fmt::format("{}", fmt::join(behind, "; "));
      return "every rank still answers and has reached this collective";
    } catch (const std::exception& e) {
      const std::string why = message_of(e);
      return is_timeout(why) ? store_silent() : store_gone(why);
    }
  }

  void run() {
    std::unique_lock lock(m);
    while (!stopping) {
      lock.unlock();
      beat(false);
      lock.lock();
      cv.wait_for(lock, kBeatEvery, [&] { return stopping || asked; });
      if (asked) {
        lock.unlock();
        std::string a = diagnose();
        lock.lock();
        answer = std::move(a);
        answered = true;
        asked = false;
        cv.notify_all();
      }
    }
    lock.unlock();
    beat(true);
    lock.lock();
    finished = true;
    cv.notify_all();
  }
};

}  // namespace

struct Group::Impl {
  std::chrono::milliseconds timeout;
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#ifdef USE_C10D_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;  // once use_device named a GPU
#endif
  torch::Device device = torch::kCPU;  // use_device's GPU, else the CPU
  std::shared_ptr<Heartbeat> heartbeat;
  std::thread heartbeat_thread;

  // What became of the other ranks (Heartbeat::diagnose, on the heartbeat's thread), in about
  // kStillFor; a store silent for kStoreAnswer is its server's hang (the heartbeat's thread may
  // then stay stuck on it: c10d's store waits for an answer without a limit once it has asked).
  std::string lost_ranks() {
    Heartbeat& h = *heartbeat;
    std::unique_lock lock(h.m);
    if (h.finished) return "one of the other ranks died or hangs";
    h.asked = true;
    h.answered = h.store_answered = false;
    h.cv.notify_all();
    const auto slack = std::chrono::seconds(1);
    if (!h.cv.wait_for(lock, kStoreAnswer + slack, [&] { return h.answered || h.store_answered; }) ||
        !h.cv.wait_for(lock, kStillFor + kStoreAnswer + slack, [&] { return h.answered; }))
      return h.store_silent();
    return h.answer;
  }

  // Fails the collective `what`, naming the ranks lost; `error` is what c10d said.
  [[noreturn]] void fail_collective(const char* what, const std::string& error, int rank, int size) {
    fail("rank {} of {}: {} failed: {} (a collective waits up to {} s for the other ranks, --dist-timeout): {}", rank,
         size, what, lost_ranks(), timeout.count() / 1000, error);
  }

  // Waits for `work`; a failure or a timeout names what was being done and the lost ranks.
  // `limit`: how long to wait (zero: the backend's own timeout, which Gloo keeps).
  void wait(const char* what, const c10::intrusive_ptr<c10d::Work>& work, int rank, int size,
            std::chrono::milliseconds limit = ::kNoTimeout) {
    try {
      work->wait(limit);  // Gloo fails an operation itself after the group's timeout
    } catch (const std::exception& e) {
      fail_collective(what, message_of(e), rank, size);
    }
  }
};

Group::Group(const DistEnv& env, std::chrono::milliseconds timeout, torch::Device device)
    : env_(env), impl_(std::make_unique<Impl>()) {
  impl_->timeout = timeout;
  // The threads started here (Gloo's, the heartbeat's) inherit a mask that blocks SIGPIPE: a
  // write to a peer that died fails the collective, which names the peer, instead of ending
  // this process without a word (Gloo writes with writev, which raises SIGPIPE).
  sigset_t pipe, before;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe, &before);
  struct RestoreMask {
    sigset_t mask;
    ~RestoreMask() { ::pthread_sigmask(SIG_SETMASK, &mask, nullptr); }
  } restore{before};
  // c10d logs each failed store operation with a backtrace before it throws; the error that
  // names the lost rank says it once. TORCH_CPP_LOG_LEVEL, when set, is the user's choice.
  if (!std::getenv("TORCH_CPP_LOG_LEVEL")) FLAGS_caffe2_log_level = std::max(FLAGS_caffe2_log_level, 2);
  try {
    c10d::TCPStoreOptions o;
    o.port = static_cast<std::uint16_t>(env.master_port);
    o.isServer = env.rank == 0 && !torchrun_serves_the_store();
    o.numWorkers = static_cast<std::size_t>(env.world_size);
    o.timeout = timeout;
    impl_->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, o);
    // The heartbeat's own connection; its first heartbeat is written before Gloo's rendezvous,
    // so that every rank's exists once any rank has joined.
    auto h = std::make_shared<Heartbeat>();
    h->rank = env.rank;
    h->size = env.world_size;
    h->store_at = env.master_addr + ":" + std::to_string(env.master_port);
    h->store_owner =
        torchrun_serves_the_store() ? std::string("torchrun's agent") : fmt::format("rank 0 of {}", env.world_size);
    c10d::TCPStoreOptions ho;
    ho.port = static_cast<std::uint16_t>(env.master_port);
    ho.waitWorkers = false;
    ho.timeout = std::min<std::chrono::milliseconds>(timeout, kStoreAnswer);
    h->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, ho);
    h->beat(false);
    impl_->heartbeat = h;
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
    opts->devices.push_back(gloo_device(env.master_addr));
    impl_->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(
        c10::make_intrusive<c10d::PrefixStore>("gloo", impl_->store), env.rank, env.world_size, opts);
  } catch (const std::exception& e) {
    fail("rank {} of {}: cannot join the job at {}:{} (MASTER_ADDR:MASTER_PORT) within {} s: {}", env.rank,
         env.world_size, env.master_addr, env.master_port, timeout.count() / 1000, message_of(e));
  }
  use_device(device);  // before the heartbeat's thread: a refusal leaves nothing running
  impl_->heartbeat_thread = std::thread([h = impl_->heartbeat] { h->run(); });
}

Group::~Group() {
  stop_heartbeat();
#ifdef USE_C10D_NCCL
  if (impl_ && impl_->nccl) {
    try {
      impl_->nccl->shutdown();  // its communicators and watchdog, as destroy_process_group does
    } catch (const std::exception&) {
    }
  }
#endif
}

torch::Device Group::device() const { return impl_->device; }

void Group::use_device(torch::Device device) {
  if (!device.is_cuda()) return;
  const torch::Device gpu(torch::kCUDA, device.has_index() ? device.index() : static_cast<c10::DeviceIndex>(env_.local_rank));
#ifdef USE_C10D_NCCL
  if (impl_->nccl) {
    if (impl_->device != gpu)
      fail("rank {} of {}: the job's all-reduces already use {}, not {}", rank(), size(), impl_->device.str(), gpu.str());
    return;
  }
  // NCCL makes its communicator at the first all-reduce (the ranks exchange its id through
  // the store, under "nccl/"). Its watchdog would end the process at its own timeout: that
  // one is longer than the group's, so that a rank lost in an all-reduce is named first
  // (Impl::wait waits the group's timeout, then reads the heartbeats for up to ~10 s).
  try {
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = impl_->timeout + std::chrono::seconds(60);
    impl_->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(
        c10::make_intrusive<c10d::PrefixStore>("nccl", impl_->store), rank(), size(), opts);
  } catch (const std::exception& e) {
    fail("rank {} of {}: cannot make the NCCL process group for {}: {}", rank(), size(), gpu.str(), message_of(e));
  }
  impl_->device = gpu;
#else
  fail("rank {} of {}: all-reduces on {} need a CUDA build (configure with -DRLHF_CUDA=ON)", rank(), size(), gpu.str());
#endif
}

void Group::stop_heartbeat() {
  if (!impl_ || !impl_->heartbeat_thread.joinable()) return;
  Heartbeat& h = *impl_->heartbeat;
  bool finished = false;
  {
    std::unique_lock lock(h.m);
    h.stopping = true;
    h.cv.notify_all();
    finished = h.cv.wait_for(lock, std::chrono::seconds(1), [&] { return h.finished; });
  }
  if (finished)
    impl_->heartbeat_thread.join();
  else
    impl_->heartbeat_thread.detach();  // stuck on a silent store; it owns a share of all it touches
}

void Group::all_reduce_sum(std::vector<torch::Tensor>& tensors) {
  if (tensors.empty()) return;
#ifdef USE_C10D_NCCL
  if (impl_->nccl && tensors[0].is_cuda()) {
    for (const auto& t : tensors)
      if (t.device() != impl_->device)
        fail("rank {} of {}: an all-reduce got a tensor on {}; the job's GPU is {}", rank(), size(), t.device().str(),
             impl_->device.str());
    // One all-reduce each (NCCL takes one tensor per call), queued on NCCL's stream, then
    // waited for by this thread up to the timeout.
    ++impl_->heartbeat->collectives;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (auto& t : tensors) {
      std::vector<torch::Tensor> one{t};
      works.push_back(impl_->nccl->allreduce(one));
    }
    for (const auto& w : works) impl_->wait("an all-reduce (NCCL)", w, rank(), size(), impl_->timeout);
    return;
  }
#endif
  ++impl_->heartbeat->collectives;
  impl_->wait("an all-reduce", impl_->gloo->allreduce(tensors), rank(), size());
}

std::vector<std::string> Group::all_gather_bytes(const std::string& mine) {
  // Two all-gathers of Gloo, each with the timeout: the lengths, then the bytes padded to the
  // longest. (Through the store, a rank 0 that hangs would hang the others: a store waits for
  // an answer without a limit.)
  const char* what = "gathering the ranks' results";
  std::vector<torch::Tensor> length{torch::full({1}, static_cast<int64_t>(mine.size()), torch::kInt64)};
  std::vector<std::vector<torch::Tensor>> lengths(1);
  for (int r = 0; r < size(); ++r) lengths[0].push_back(torch::zeros({1}, torch::kInt64));
  ++impl_->heartbeat->collectives;
  impl_->wait(what, impl_->gloo->allgather(lengths, length), rank(), size());
  int64_t longest = 0;
  for (const auto& l : lengths[0]) longest = std::max(longest, l.item<int64_t>());
  std::vector<std::string> out(static_cast<size_t>(size()));
  if (longest == 0) return out;
  std::vector<torch::Tensor> bytes{torch::zeros({longest}, torch::kUInt8)};
  if (!mine.empty()) std::memcpy(bytes[0].data_ptr<uint8_t>(), mine.data(), mine.size());
  std::vector<std::vector<torch::Tensor>> all(1);
  for (int r = 0; r < size(); ++r) all[0].push_back(torch::zeros({longest}, torch::kUInt8));
  ++impl_->heartbeat->collectives;
  impl_->wait(what, impl_->gloo->allgather(all, bytes), rank(), size());
  for (int r = 0; r < size(); ++r)
    out[static_cast<size_t>(r)].assign(
        reinterpret_cast<const char*>(all[0][static_cast<size_t>(r)].data_ptr<uint8_t>()),
        static_cast<size_t>(lengths[0][static_cast<size_t>(r)].item<int64_t>()));
  return out;
}

void Group::barrier() {
  // A one-element all-reduce: Gloo's barrier has no timeout of its own to report.
  std::vector<torch::Tensor> t{torch::zeros({1})};
  ++impl_->heartbeat->collectives;
  impl_->wait("a barrier", impl_->gloo->allreduce(t), rank(), size());
}

void Group::set_key(const std::string& key, const std::string& value) {
  try {
    impl_->store->set(key, std::vector<uint8_t>(value.begin(), value.end()));
  } catch (const std::exception& e) {
    fail("rank {} of {}: cannot reach the job's store at {}:{} (rank 0 is gone?): {}", rank(), size(), env_.master_addr,
         env_.master_port, message_of(e));
  }
}

namespace {

// wait_key's poller. A thread of its own reads the key and rank 0's heartbeat, so that a store
// that stops answering blocks it and not the waiting rank, which watches how recent its
// answers are; shared with the thread, which may outlive the wait.
struct KeyPoll {
  using Clock = std::chrono::steady_clock;
  std::mutex m;
  std::condition_variable cv;
  bool done = false, stop = false;
  uint64_t polls = 0;
  std::optional<std::string> value;
  std::string error;
  Clock::time_point answered = Clock::now();     // the store's last answer
  Clock::time_point owner_moved = Clock::now();  // rank 0's heartbeat last changed
  std::string owner_beat;

  void run(const c10::intrusive_ptr<c10d::Store>& store, const std::string& key) {
    const std::string owner = heartbeat_key(0);
    auto read = [&](const std::string& k) -> std::optional<std::string> {
      if (!store->check({k})) return std::nullopt;
      const std::vector<uint8_t> v = store->get(k);
      return std::string(v.begin(), v.end());
    };
    try {
      for (std::chrono::milliseconds pause{1};; pause = std::min(2 * pause, std::chrono::milliseconds(50))) {
        std::optional<std::string> v = read(key);
        const std::string beat = v ? "" : read(owner).value_or("");
        {
          std::lock_guard lock(m);
          answered = Clock::now();
          ++polls;
          if (beat != owner_beat) owner_beat = beat, owner_moved = answered;
          if (v) value = std::move(v), done = true;
          cv.notify_all();
          if (done || stop) return;
        }
        std::this_thread::sleep_for(pause);
      }
    } catch (const std::exception& e) {
      std::lock_guard lock(m);
      error = message_of(e);
      done = true;
      cv.notify_all();
    }
  }
};

// How long a rank waiting on rank 0 takes silence for a hang: the collective timeout, but at
// least kStillFor (rank 0 beats every second, busy or not) and, for the store, at most 30 s
// (the store answers from a thread of its own even while rank 0 is busy).
std::chrono::milliseconds still_limit(std::chrono::milliseconds timeout) {
  return std::max<std::chrono::milliseconds>(timeout, kStillFor);
}
std::chrono::milliseconds silent_store_limit(std::chrono::milliseconds timeout) {
  return std::max<std::chrono::milliseconds>(std::min<std::chrono::milliseconds>(timeout, std::chrono::seconds(30)),
                                             kStillFor);
}

}  // namespace

std::optional<std::string> Group::wait_key(const std::string& key, std::chrono::milliseconds limit) {
  using Clock = KeyPoll::Clock;
  const auto t0 = Clock::now();
  auto poll = std::make_shared<KeyPoll>();
  std::thread([poll, store = impl_->store, key] { poll->run(store, key); }).detach();
  std::unique_lock lock(poll->m);
  const std::string store_at = fmt::format("{}:{}", env_.master_addr, env_.master_port);
  while (!poll->cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return poll->done; })) {
    const auto now = Clock::now();
    if (limit != std::chrono::milliseconds::max() && now - t0 >= limit && poll->polls > 0) {
      poll->stop = true;
      return std::nullopt;
    }
    if (now - poll->answered > silent_store_limit(impl_->timeout)) {
      poll->stop = true;
      fail("rank {} of {}: the job's store at {} stopped answering while this rank waited for rank 0 (rank 0, or "
           "the launcher serving the store, hangs or was stopped)",
           rank(), size(), store_at);
    }
    // Rank 0 beats every second while it lives, busy or not: a heartbeat still for the
    // collective timeout is a rank 0 stopped or hung.
    if (rank() != 0 && now - poll->owner_moved > still_limit(impl_->timeout)) {
      poll->stop = true;
      fail("rank {} of {}: rank 0 of {} stopped answering while this rank waited for it (its last sign of life {:.0f} "
           "s ago, --dist-timeout {} s): it died or hangs",
           rank(), size(), size(), std::chrono::duration<double>(now - poll->owner_moved).count(),
           impl_->timeout.count() / 1000);
    }
  }
  if (!poll->error.empty())
    fail("rank {} of {}: lost the job's store at {} while waiting for the other ranks (rank 0 is gone?): {}", rank(),
         size(), store_at, poll->error);
  return poll->value;
}

Group* job() {
  // Made once and never destroyed: the Gloo threads are left to the process's exit rather
  // than to the order of static destructors.
  static Group* const group = []() -> Group* {
    const DistEnv env = read_dist_env();
    if (!env.distributed()) return nullptr;
    auto* g = new Group(env, std::chrono::seconds(env.timeout_seconds));
    std::atexit([] { job()->stop_heartbeat(); });
    return g;
  }();
  return group;
}

Group* job(torch::Device device) {
  Group* g = job();
  if (g) g->use_device(device);
  return g;
}

CheckResult check_job(Group& group, size_t bytes, int iterations) {
  CheckResult r;
  const auto on = torch::TensorOptions().device(group.device());
  std::vector<torch::Tensor> one{torch::full({4}, double(group.rank() + 1), on.dtype(torch::kFloat64))};
  group.all_reduce_sum(one);
  r.sum = one[0][0].item<double>();
  r.expected = double(group.size()) * double(group.size() + 1) / 2;
  const int64_t n = std::max<int64_t>(1, static_cast<int64_t>(bytes / sizeof(float)));
  r.bytes = static_cast<size_t>(n) * sizeof(float);
  std::vector<torch::Tensor> big{torch::ones({n}, on)};
  std::vector<double> ms;
  constexpr int kWarmUp = 50;  // a new job's first all-reduces are slower: connections, buffers, threads settle
  for (int i = 0; i < kWarmUp + iterations; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    group.all_reduce_sum(big);
    const double dt = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (i >= kWarmUp) ms.push_back(dt);
  }
  std::sort(ms.begin(), ms.end());
  r.median_ms = ms.empty() ? 0 : ms[ms.size() / 2];
  return r;
}

}  // namespace rlhf::dist
