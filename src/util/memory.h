// Process memory as the kernel reports it (Linux /proc/self/status).
#pragma once

#include <cstdint>

namespace logattn::util {

// Resident set size now, and its peak (high-water mark) since the process began, in bytes;
// 0 where /proc is not available.
int64_t resident_bytes();
int64_t peak_resident_bytes();

}  // namespace logattn::util
