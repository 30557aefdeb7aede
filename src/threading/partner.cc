#include "threading/partner.h"

#include <omp.h>
#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
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

class Partner {
 public:
  // Posts task; false if another caller holds the partner.
  bool try_run(const std::function<void(int)>& task) {
    bool expected = false;
    if (!busy_.compare_exchange_strong(expected, true, std::memory_order_acquire)) return false;
    start();
    task_ = &task;
    const uint64_t ticket = ++ticket_;
    posted_.store(ticket, std::memory_order_seq_cst);
    // A partner that went to sleep before seeing the ticket needs a wake-up; the lock makes
    // sure it is waiting (or will see the ticket when it checks, under the lock).
    if (sleeping_.load(std::memory_order_seq_cst)) {
      std::lock_guard<std::mutex> lock(mu_);
      cv_.notify_one();
    }
    task(0);
    while (done_.load(std::memory_order_acquire) != ticket) spin_wait();
    busy_.store(false, std::memory_order_release);
    return true;
  }

  // After fork() only the forking thread exists in the child: start a new partner there.
  void forget_thread() {
    started_ = false;
    busy_.store(false);
    sleeping_.store(false);
    posted_.store(0);
    done_.store(0);
    ticket_ = 0;
    new (&mu_) std::mutex();
    new (&cv_) std::condition_variable();
  }

 private:
  void start() {
    if (started_) return;
    started_ = true;
    std::thread([this] { loop(); }).detach();
  }

  void loop() {
    uint64_t seen = done_.load(std::memory_order_acquire);
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
      (*task_)(1);
      done_.store(p, std::memory_order_release);
    }
  }

  // Each on its own cache line: lines written by one thread and polled by the other move
  // between cores, and a neighbour's write would move the line under a spinning reader.
  alignas(64) std::atomic<bool> busy_{false};  // the caller's side only
  alignas(64) std::atomic<bool> sleeping_{false};
  alignas(64) std::atomic<uint64_t> posted_{0};  // written by the caller with task_
  const std::function<void(int)>* task_ = nullptr;
  alignas(64) std::atomic<uint64_t> done_{0};  // written by the partner
  uint64_t ticket_ = 0;                        // the caller's copy of posted_
  bool started_ = false;
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

void run_on_two_threads(const std::function<void(int)>& task) {
  if (partner_available() && partner().try_run(task)) return;
  task(0);
  task(1);
}

}  // namespace logattn
