// Fault injection for the tests of crash safety: with LOGATTN_KILL_AT=<point>:<step> in the
// environment, the process ends with SIGKILL when it reaches that point at that step, as a
// kill at the worst moment would (between a write and the rename that follows it). Unset,
// as outside those tests, a point costs one comparison.
#pragma once

#include <signal.h>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace logattn::util {

inline void kill_point(const char* point, int64_t step) {
  static const std::string target = [] {
    const char* v = std::getenv("LOGATTN_KILL_AT");
    return std::string(v ? v : "");
  }();
  if (!target.empty() && target == std::string(point) + ":" + std::to_string(step))
    ::raise(SIGKILL);
}

}  // namespace logattn::util
