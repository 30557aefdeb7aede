// The partner thread's block scheduler: every block runs exactly once, whoever claims it,
// over many back-to-back tasks (the generation step's pattern), with nested calls running
// inline, and across a fork.
#include "threading/partner.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
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
