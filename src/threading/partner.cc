#include "threading/partner.h"

#include <omp.h>
#include <pthread.h>

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

constexpr uint64_t kLow = 0xffffffffu;

class Partner {
 public:
  // Runs the blocks with the partner; false if another caller holds it.
  bool try_run(int64_t n, const std::function<void(int64_t)>& block) {
    bool expected = false;
    if (!busy_.compare_exchange_strong(expected, true, std::memory_order_acquire)) return false;
    start();
    const uint64_t ticket = ++ticket_;
    block_ = &block;
    blocks_ = static_cast<uint64_t>(n);
    finished_.store(ticket << 32, std::memory_order_relaxed);
    claim_.store(ticket << 32, std::memory_order_release);
    posted_.store(ticket, std::memory_order_seq_cst);
    // A partner that went to sleep before seeing the ticket needs a wake-up; the lock makes
    // sure it is waiting (or will see the ticket when it checks, under the lock).
    if (sleeping_.load(std::memory_order_seq_cst)) {
      std::lock_guard<std::mutex> lock(mu_);
      cv_.notify_one();
    }
    work(ticket);
    while ((finished_.load(std::memory_order_acquire) & kLow) != blocks_) spin_wait();
    busy_.store(false, std::memory_order_release);
    return true;
  }

  // After fork() only the forking thread exists in the child: start a new partner there.
  void forget_thread() {
    started_ = false;
    busy_.store(false);
    sleeping_.store(false);
    posted_.store(0);
    claim_.store(0);
    finished_.store(0);
    ticket_ = 0;
    new (&mu_) std::mutex();
    new (&cv_) std::condition_variable();
  }

 private:
  // Claims and runs blocks of the task `ticket` until none is left (or a newer task is
  // posted, for a partner that arrives late). A claimed block keeps the caller waiting, so
  // block_ stays valid while it runs.
  void work(uint64_t ticket) {
    for (;;) {
      uint64_t c = claim_.load(std::memory_order_acquire);
      if ((c >> 32) != ticket || (c & kLow) >= blocks_) return;
      if (!claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel)) continue;
      (*block_)(static_cast<int64_t>(c & kLow));
      finished_.fetch_add(1, std::memory_order_release);
    }
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
      while ((p = posted_.load(std::memory_order_acquire)) == seen) {
        if (++spins < kSpins) {
          spin_wait();
          continue;
        }
        std::unique_lock<std::mutex> lock(mu_);
        sleeping_.store(true, std::memory_order_seq_cst);
        cv_.wait(lock, [&] { return posted_.load(std::memory_order_seq_cst) != seen; });
        sleeping_.store(false, std::memory_order_seq_cst);
        spins = 0;
      }
      seen = p;
      work(p);
    }
  }

  // Each on its own cache line: lines written by one thread and polled by the other move
  // between cores, and a neighbour's write would move the line under a spinning reader.
  alignas(64) std::atomic<bool> busy_{false};  // the caller's side only
  uint64_t ticket_ = 0;
  bool started_ = false;
  alignas(64) std::atomic<bool> sleeping_{false};
  alignas(64) std::atomic<uint64_t> posted_{0};  // the latest ticket
  const std::function<void(int64_t)>* block_ = nullptr;
  uint64_t blocks_ = 0;
  alignas(64) std::atomic<uint64_t> claim_{0};     // ticket << 32 | next block
  alignas(64) std::atomic<uint64_t> finished_{0};  // ticket << 32 | blocks done
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
  if (n > 1 && partner_available() && partner().try_run(n, block)) return;
  for (int64_t i = 0; i < n; ++i) block(i);
}

}  // namespace logattn
