// When a loop is worth an OpenMP parallel region: starting and joining one costs
// microseconds, more than small loops take (a one-token generation step runs dozens of
// them), so loops below this many element operations stay on the calling thread.
#pragma once

#include <cstdint>

namespace logattn {

inline bool parallel_worth_it(int64_t work) {
  return work >= (int64_t{1} << 15);
}

// f(i) for i in [0, n), statically split between OpenMP's threads when `work` (element
// operations in all) is worth it; otherwise on the calling thread without entering a
// parallel region at all: an `if` clause still forms a team of one, whose end costs a futex
// system call, dozens of times per generated token.
template <typename F>
inline void parallel_for(int64_t n, int64_t work, F&& f) {
  if (n > 1 && parallel_worth_it(work)) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) f(i);
  } else {
    for (int64_t i = 0; i < n; ++i) f(i);
  }
}

}  // namespace logattn
