// The partner thread's block scheduler: every block runs exactly once, the caller's half on
// the caller, over many back-to-back tasks (the generation step's pattern) and after pauses
// long enough for the partner to fall asleep (its half then stolen by the caller), with
// nested calls running inline, and across a fork.
#include "threading/partner.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace logattn {
namespace {

TEST(Partner, EveryBlockRunsExactlyOnce) {
  for (int rep = 0; rep < 2000; ++rep) {
    const int64_t n = 1 + rep % 37;
    std::vector<std::atomic<int>> runs(n);
    run_blocks(n, [&](int64_t i) {
      volatile double x = 0;  // a little work, so that both threads take blocks
      for (int k = 0; k < (i % 5) * 200; ++k) x = x + k;
      runs[i].fetch_add(1);
    });
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(runs[i].load(), 1) << "task " << rep << " block " << i;
  }
}

TEST(Partner, TheCallerRunsTheFirstHalf) {
  const auto caller = std::this_thread::get_id();
  for (int rep = 0; rep < 500; ++rep) {
    const int64_t n = 2 + rep % 19;
    std::vector<std::thread::id> who(n);
    run_blocks(n, [&](int64_t i) { who[i] = std::this_thread::get_id(); });
    for (int64_t i = 0; i < (n + 1) / 2; ++i)
      ASSERT_EQ(who[i], caller) << "n " << n << " block " << i;
  }
}

// After a pause the partner sleeps; the caller does not wait for it to wake but steals its
// half, and a partner that wakes to a stolen task leaves it alone.
TEST(Partner, AnAsleepPartnersHalfIsStolenAndRunOnce) {
  const auto caller = std::this_thread::get_id();
  int stolen = 0;
  for (int rep = 0; rep < 100; ++rep) {
    std::this_thread::sleep_for(std::chrono::microseconds(rep % 2 ? 1000 : 50));
    const int64_t n = 2 + rep % 7;
    std::vector<std::atomic<int>> runs(n);
    std::atomic<bool> caller_ran_partner_half{false};
    run_blocks(n, [&](int64_t i) {
      runs[i].fetch_add(1);
      if (i >= (n + 1) / 2 && std::this_thread::get_id() == caller) caller_ran_partner_half = true;
    });
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(runs[i].load(), 1) << "task " << rep << " block " << i;
    stolen += caller_ran_partner_half.load();
  }
  // Waking a sleeping thread takes tens of microseconds, the caller's patience a few.
  EXPECT_GT(stolen, 0);
  // One CPU for this process (or OMP_NUM_THREADS=1, as under mpirun): no partner thread, the
  // caller runs every block.
  if (!partner_available()) {
    int on_caller = 0;
    run_blocks(2, [&](int64_t) { on_caller += std::this_thread::get_id() == caller; });
    EXPECT_EQ(on_caller, 2);
    return;
  }

  // Once awake and polling again, the partner takes up its halves of back-to-back tasks
  // again (after finding it absent the caller steals without waiting, but not from a
  // partner that has taken up its half). Tasks until it has, for at most two seconds (a
  // loaded machine may keep its thread off a CPU for a while).
  std::atomic<int> partner_ran{0};
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (partner_ran.load() < 10 && std::chrono::steady_clock::now() < deadline) {
    run_blocks(2, [&](int64_t) {
      volatile double x = 0;
      for (int k = 0; k < 5000; ++k) x = x + k;  // some microseconds
      if (std::this_thread::get_id() != caller) partner_ran.fetch_add(1);
    });
  }
  EXPECT_GE(partner_ran.load(), 10);
}

// A thread woken by another is placed on the waker's CPU; two spinning threads there would
// share it for milliseconds. The partner moves off the caller's CPU when it wakes.
TEST(Partner, AWokenPartnerRunsOnAnotherCpuThanTheCaller) {
  if (!partner_available()) GTEST_SKIP() << "one CPU: no partner thread";
  const auto caller = std::this_thread::get_id();
  int woken = 0, shared = 0;
  for (int rep = 0; rep < 20; ++rep) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // the partner falls asleep
    std::atomic<int> caller_cpu{-1}, partner_cpu{-1};
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (partner_cpu.load() < 0 && std::chrono::steady_clock::now() < deadline) {
      run_blocks(2, [&](int64_t) {
        volatile double x = 0;
        for (int k = 0; k < 5000; ++k) x = x + k;
        (std::this_thread::get_id() == caller ? caller_cpu : partner_cpu) = sched_getcpu();
      });
    }
    if (partner_cpu.load() < 0) continue;
    ++woken;
    shared += partner_cpu.load() == caller_cpu.load();
  }
  EXPECT_GT(woken, 10);
  EXPECT_LE(shared, 2) << "of " << woken;
}

// An exception from a block, in either thread's half, reaches the caller after both halves
// are done, and the partner works on afterwards.
TEST(Partner, ABlocksExceptionReachesTheCallerFromEitherHalf) {
  for (int rep = 0; rep < 200; ++rep) {
    const int64_t n = 8, bad = rep % n;
    std::atomic<int> ran{0};
    try {
      run_blocks(n, [&](int64_t i) {
        if (i == bad) throw std::runtime_error("block " + std::to_string(i));
        volatile double x = 0;
        for (int k = 0; k < 2000; ++k) x = x + k;
        ran.fetch_add(1);
      });
      FAIL() << "no exception, rep " << rep;
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()), "block " + std::to_string(bad));
    }
    EXPECT_LE(ran.load(), n - 1);
  }
  std::atomic<int> sum{0};
  run_blocks(16, [&](int64_t i) { sum += static_cast<int>(i); });
  EXPECT_EQ(sum.load(), 120);
}

TEST(Partner, NestedCallsRunInline) {
  std::vector<std::atomic<int>> runs(8 * 8);
  run_blocks(8,
             [&](int64_t i) { run_blocks(8, [&](int64_t j) { runs[i * 8 + j].fetch_add(1); }); });
  for (auto& r : runs) EXPECT_EQ(r.load(), 1);
}

TEST(Partner, WorksInAForkedChild) {
  std::atomic<int> sum{0};
  run_blocks(16, [&](int64_t i) { sum += static_cast<int>(i); });  // the partner exists
  ASSERT_EQ(sum.load(), 120);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::atomic<int> s{0};
    for (int rep = 0; rep < 100; ++rep)
      run_blocks(16, [&](int64_t i) { s += static_cast<int>(i); });
    _exit(s.load() == 12000 ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

}  // namespace
}  // namespace logattn
