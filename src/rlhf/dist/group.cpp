#include "rlhf/dist/group.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "rlhf/util/error.h"

namespace rlhf::dist {

namespace {

// An exception's message without c10's backtrace.
std::string message_of(const std::exception& e) {
  if (const auto* c = dynamic_cast<const c10::Error*>(&e)) return c->what_without_backtrace();
  return e.what();
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

}  // namespace

struct Group::Impl {
  std::chrono::milliseconds timeout;
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
  uint64_t gathers = 0;  // all_gather_bytes calls so far: the store keys of each are their own

  // Waits for `work`; a failure or a timeout names what was being done.
  void wait(const char* what, const c10::intrusive_ptr<c10d::Work>& work, int rank, int size) {
    try {
      work->wait();  // Gloo fails an operation itself after the group's timeout
    } catch (const std::exception& e) {
      fail("rank {} of {}: {} failed after waiting up to {} s for the other ranks (one of them died or hangs): {}",
           rank, size, what, timeout.count() / 1000, message_of(e));
    }
  }
};

Group::Group(const DistEnv& env, std::chrono::milliseconds timeout) : env_(env), impl_(std::make_unique<Impl>()) {
  impl_->timeout = timeout;
  try {
    c10d::TCPStoreOptions o;
    o.port = static_cast<std::uint16_t>(env.master_port);
    o.isServer = env.rank == 0;
    o.numWorkers = static_cast<std::size_t>(env.world_size);
    o.timeout = timeout;
    impl_->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, o);
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
    opts->devices.push_back(gloo_device(env.master_addr));
    impl_->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(
        c10::make_intrusive<c10d::PrefixStore>("gloo", impl_->store), env.rank, env.world_size, opts);
  } catch (const std::exception& e) {
    fail("rank {} of {}: cannot join the job at {}:{} (MASTER_ADDR:MASTER_PORT) within {} s: {}", env.rank,
         env.world_size, env.master_addr, env.master_port, timeout.count() / 1000, message_of(e));
  }
}

Group::~Group() = default;

void Group::all_reduce_sum(std::vector<torch::Tensor>& tensors) {
  if (tensors.empty()) return;
  impl_->wait("an all-reduce", impl_->gloo->allreduce(tensors), rank(), size());
}

std::vector<std::string> Group::all_gather_bytes(const std::string& mine) {
  const std::string prefix = "gather/" + std::to_string(impl_->gathers++) + "/";
  std::vector<std::string> out(static_cast<size_t>(size()));
  try {
    impl_->store->set(prefix + std::to_string(rank()), std::vector<uint8_t>(mine.begin(), mine.end()));
    for (int r = 0; r < size(); ++r) {
      const std::vector<uint8_t> v = impl_->store->get(prefix + std::to_string(r));
      out[static_cast<size_t>(r)].assign(v.begin(), v.end());
    }
  } catch (const std::exception& e) {
    fail("rank {} of {}: gathering the ranks' results failed after waiting up to {} s (a rank died or hangs): {}",
         rank(), size(), impl_->timeout.count() / 1000, message_of(e));
  }
  barrier();  // every rank has read every key
  impl_->store->deleteKey(prefix + std::to_string(rank()));
  return out;
}

void Group::barrier() {
  // A one-element all-reduce: Gloo's barrier has no timeout of its own to report.
  std::vector<torch::Tensor> t{torch::zeros({1})};
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

std::optional<std::string> Group::wait_key(const std::string& key, std::chrono::milliseconds limit) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  try {
    for (std::chrono::milliseconds poll{1};; poll = std::min(2 * poll, std::chrono::milliseconds(50))) {
      if (impl_->store->check({key})) {
        const std::vector<uint8_t> v = impl_->store->get(key);
        return std::string(v.begin(), v.end());
      }
      if (limit != std::chrono::milliseconds::max() && Clock::now() - t0 >= limit) return std::nullopt;
      std::this_thread::sleep_for(poll);
    }
  } catch (const std::exception& e) {
    fail("rank {} of {}: lost the job's store at {}:{} while waiting for the other ranks (rank 0 is gone?): {}",
         rank(), size(), env_.master_addr, env_.master_port, message_of(e));
  }
}

Group* job() {
  // Made once and never destroyed: the Gloo threads are left to the process's exit rather
  // than to the order of static destructors.
  static Group* const group = []() -> Group* {
    const DistEnv env = read_dist_env();
    if (!env.distributed()) return nullptr;
    return new Group(env, std::chrono::seconds(env.timeout_seconds));
  }();
  return group;
}

CheckResult check_job(Group& group, size_t bytes, int iterations) {
  CheckResult r;
  std::vector<torch::Tensor> one{torch::full({4}, double(group.rank() + 1), torch::kFloat64)};
  group.all_reduce_sum(one);
  r.sum = one[0][0].item<double>();
  r.expected = double(group.size()) * double(group.size() + 1) / 2;
  const int64_t n = std::max<int64_t>(1, static_cast<int64_t>(bytes / sizeof(float)));
  r.bytes = static_cast<size_t>(n) * sizeof(float);
  std::vector<torch::Tensor> big{torch::ones({n})};
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
