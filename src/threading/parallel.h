// When a loop is worth an OpenMP parallel region: starting and joining one costs
// microseconds, more than small loops take (a one-token generation step runs dozens of
// them), so loops below this many element operations stay on the calling thread.
#pragma once

#include <cstdint>

namespace logattn {

inline bool parallel_worth_it(int64_t work) {
  return work >= (int64_t{1} << 15);
}

}  // namespace logattn
