#include "threading/partner.h"

#include <omp.h>
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <new>
#include <thread>
#include <utility>

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

// Runs block(i) for i in [begin, end), stopping at the first exception, which it returns.
std::exception_ptr run_range(const std::function<void(int64_t)>& block, int64_t begin,
                             int64_t end) {
  try {
    for (int64_t i = begin; i < end; ++i) block(i);
  } catch (...) {
    return std::current_exception();
  }
  return nullptr;
}

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
      waker_cpu_ = sched_getcpu();
      cv_.notify_one();
    }
    // An exception leaves only when the partner is done with block too.
    std::exception_ptr error = run_range(block, 0, split);
    // A partner not done after patience_ polls may be late: steal its half unless it has
    // taken it up.
    for (int polls = 0; (done_.load(std::memory_order_acquire) >> 1) != ticket; ++polls) {
      if (polls == patience_) {
        std::exception_ptr stolen = steal(ticket, split, n, block);
        if (!error) error = stolen;
        break;
      }
      spin_wait();
    }
    // Written by the partner before its done_ (acquired above), null if it ran no block.
    std::exception_ptr theirs = std::exchange(partner_error_, nullptr);
    busy_.store(false, std::memory_order_release);
    if (error) std::rethrow_exception(error);
    if (theirs) std::rethrow_exception(theirs);
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
    patience_ = kPatience;
    waker_cpu_ = -1;
    partner_error_ = nullptr;
    new (&mu_) std::mutex();
    new (&cv_) std::condition_variable();
  }

 private:
  // Polls of done_ before the caller tries to steal the partner's half: a few microseconds,
  // past the finish of a partner that started a cache-line transfer or two after the caller
  // (a partner asleep needs tens). None after a steal found the partner absent: it is
  // likely absent still (its virtual CPU descheduled, it asleep), and each task would wait
  // for it in vain; a partner back at work takes up its half while the caller runs its
  // own, and the next steal finds it there. (Polls, not a clock: reading one took about a
  // tenth of a step's time in this VM.)
  static constexpr int kPatience = 4000;
  int patience_ = kPatience;

  // The caller's side of the hand-over (Dekker's: each side writes its own line, fences,
  // reads the other's, so that at least one sees the other): mark the task stolen, then
  // look whether the partner announced it. If not, the partner will see the mark and leave
  // the blocks alone; if so, it either runs them or, having seen the mark too, backs off.
  std::exception_ptr steal(uint64_t ticket, int64_t split, int64_t n,
                           const std::function<void(int64_t)>& block) {
    task_.store(ticket << 1 | kStolen, std::memory_order_seq_cst);
    const bool present = announced_.load(std::memory_order_seq_cst) == ticket;
    patience_ = present ? kPatience : 0;
    if (present) {
      uint64_t d;
      while (((d = done_.load(std::memory_order_acquire)) >> 1) != ticket) spin_wait();
      if (!(d & kStolen)) return nullptr;  // the partner ran them
    }
    return run_range(block, split, n);
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
    partner_error_ = run_range(*block_, begin_, end_);
    done_.store(ticket << 1, std::memory_order_release);
  }

  void start() {
    if (started_) return;
    started_ = true;
    const int cpu = sched_getcpu();
    std::thread([this, cpu] {
      leave_cpu(cpu);
      loop();
    }).detach();
  }

  // Moves this thread off the caller's CPU, if it is there. A woken thread is placed on its
  // waker's CPU (the scheduler's wake-affine choice), and two spinning threads sharing a CPU
  // run in turns of milliseconds until the load balancer parts them: measured, tasks took
  // 2.6-3.3x their time with the two apart (longer than one thread alone) for tens of
  // milliseconds after a wake-up. Allowed every CPU
  // but that one, the thread moves at once; allowed all again, it stays where it went.
  static void leave_cpu(int caller_cpu) {
    cpu_set_t all;
    if (caller_cpu < 0 || sched_getcpu() != caller_cpu ||
        sched_getaffinity(0, sizeof all, &all) != 0 || CPU_COUNT(&all) < 2 ||
        !CPU_ISSET(caller_cpu, &all))
      return;
    cpu_set_t others = all;
    CPU_CLR(caller_cpu, &others);
    if (sched_setaffinity(0, sizeof others, &others) == 0) sched_setaffinity(0, sizeof all, &all);
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
        leave_cpu(waker_cpu_);
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
  std::exception_ptr partner_error_;  // the partner's block's exception, until the caller takes it
  alignas(64) std::atomic<uint64_t> announced_{0};  // the last ticket the partner took up
  alignas(64) std::atomic<uint64_t> done_{0};       // ticket << 1 | backed off (stolen)
  std::mutex mu_;
  std::condition_variable cv_;
  int waker_cpu_ = -1;  // the caller's CPU when it last woke the partner (under mu_)
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
