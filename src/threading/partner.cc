#include "threading/partner.h"

#include <omp.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <new>
#include <thread>

namespace logattn {

namespace {

constexpr int kSpins = 100000;  // polls before sleeping (about 100 us)

// One poll of a spin loop. Not the pause instruction: under a hypervisor, loops of pause
// trigger pause-loop exits that deschedule the virtual CPU, and a partner's start took
// microseconds instead of one cache-line transfer.
inline void spin_wait() {
  asm volatile("" ::: "memory");
}

// The task word: ticket << 1 | stolen. The caller posts (ticket, 0).
constexpr uint64_t kStolen = 1;

class Partner {
 public:
  // Runs the blocks with the partner; false if another caller holds it.
  bool try_run(int64_t n, const std::function<void(int64_t)>& block, int64_t split) {
    bool expected = false;
    if (!busy_.compare_exchange_strong(expected, true, std::memory_order_acquire)) return false;
    start();
    const uint64_t ticket = ++ticket_;
    block_ = &block;
    begin_ = split;
    end_ = n;
    // A release store, not a fence: the caller goes on with its blocks while the line moves.
    task_.store(ticket << 1, std::memory_order_release);
    // A partner asleep needs a wake-up. Without a fence this may read a stale "awake" and
    // the partner sleep on; the steal below bounds what that costs, and the next task
    // wakes it.
    if (sleeping_.load(std::memory_order_relaxed)) {
      std::lock_guard<std::mutex> lock(mu_);
      cv_.notify_one();
    }
    for (int64_t i = 0; i < split; ++i) block(i);
    // A partner that has not taken up the task after kPatience polls is late: steal it.
    for (int polls = 0; (done_.load(std::memory_order_acquire) >> 1) != ticket; ++polls) {
      if (polls == kPatience) {
        steal(ticket, split, n, block);
        break;
      }
      spin_wait();
    }
    busy_.store(false, std::memory_order_release);
    return true;
  }

  // After fork() only the forking thread exists in the child: start a new partner there.
  void forget_thread() {
    started_ = false;
    busy_.store(false);
    sleeping_.store(false);
    task_.store(0);
    announced_.store(0);
    done_.store(0);
    ticket_ = 0;
    new (&mu_) std::mutex();
    new (&cv_) std::condition_variable();
  }

 private:
  // Polls of done_ before the caller steals the partner's blocks: a few microseconds, well
  // past the start of an awake partner (a cache-line transfer or two); a partner asleep
  // needs tens. (Not a clock: reading one took about a tenth of a step's time in this VM.)
  static constexpr int kPatience = 4000;

  // The caller's side of the hand-over (Dekker's: each side writes its own line, fences,
  // reads the other's, so that at least one sees the other): mark the task stolen, then
  // look whether the partner announced it. If not, the partner will see the mark and leave
  // the blocks alone; if so, it either runs them or, having seen the mark too, backs off.
  void steal(uint64_t ticket, int64_t split, int64_t n, const std::function<void(int64_t)>& block) {
    task_.store(ticket << 1 | kStolen, std::memory_order_seq_cst);
    if (announced_.load(std::memory_order_seq_cst) == ticket) {
      uint64_t d;
      while (((d = done_.load(std::memory_order_acquire)) >> 1) != ticket) spin_wait();
      if (!(d & kStolen)) return;  // the partner ran them
    }
    for (int64_t i = split; i < n; ++i) block(i);
  }

  // The partner's side: announce, fence, and run the blocks unless the task was stolen (or
  // is no longer the posted one). While it runs them the caller waits, so block_ is valid.
  void work(uint64_t posted) {
    const uint64_t ticket = posted >> 1;
    announced_.store(ticket, std::memory_order_seq_cst);
    if (task_.load(std::memory_order_seq_cst) != posted) {
      done_.store(ticket << 1 | kStolen, std::memory_order_release);
      return;
    }
    for (int64_t i = begin_; i < end_; ++i) (*block_)(i);
    done_.store(ticket << 1, std::memory_order_release);
  }

  void start() {
    if (started_) return;
    started_ = true;
    std::thread([this] { loop(); }).detach();
  }

  void loop() {
    uint64_t seen = 0;
    for (;;) {
      int spins = 0;
      uint64_t p;
      while (((p = task_.load(std::memory_order_acquire)) >> 1) == seen) {
        if (++spins < kSpins) {
          spin_wait();
          continue;
        }
        std::unique_lock<std::mutex> lock(mu_);
        sleeping_.store(true, std::memory_order_seq_cst);
        cv_.wait(lock, [&] { return (task_.load(std::memory_order_seq_cst) >> 1) != seen; });
        sleeping_.store(false, std::memory_order_relaxed);
        spins = 0;
      }
      seen = p >> 1;
      if (!(p & kStolen)) work(p);
    }
  }

  // Each on its own cache line, written by one side: a line moves between the cores only
  // when the other side reads it. The caller reads announced_ only when it steals.
  alignas(64) std::atomic<bool> busy_{false};  // the caller's side only
  uint64_t ticket_ = 0;
  bool started_ = false;
  alignas(64) std::atomic<bool> sleeping_{false};
  // The task: written by the caller before posting, read by the partner with it.
  alignas(64) std::atomic<uint64_t> task_{0};
  const std::function<void(int64_t)>* block_ = nullptr;
  int64_t begin_ = 0, end_ = 0;
  alignas(64) std::atomic<uint64_t> announced_{0};  // the last ticket the partner took up
  alignas(64) std::atomic<uint64_t> done_{0};       // ticket << 1 | backed off (stolen)
  std::mutex mu_;
  std::condition_variable cv_;
};

Partner& partner() {
  // Never destroyed: the detached thread may outlive static destruction.
  static Partner* p = [] {
    auto* q = new Partner;
    pthread_atfork(nullptr, nullptr, [] { partner().forget_thread(); });
    return q;
  }();
  return *p;
}

}  // namespace

bool partner_available() {
  return !omp_in_parallel() && omp_get_max_threads() >= 2;
}

void run_blocks(int64_t n, const std::function<void(int64_t)>& block) {
  if (n > 1 && partner_available() && partner().try_run(n, block, (n + 1) / 2)) return;
  for (int64_t i = 0; i < n; ++i) block(i);
}

}  // namespace logattn
