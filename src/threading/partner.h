// A second thread for work too short for an OpenMP region: a one-token generation step's
// matrix-vector products take microseconds each, and libgomp's fork and join cost a futex
// system call each (microseconds in a VM), which ate the gain of a second core.
//
// The work is a number of blocks that the calling thread and the partner claim from a
// shared counter, so that a partner that starts late (a virtual CPU descheduled for a while)
// costs nothing but its share: the caller does the rest and waits only for blocks the
// partner has claimed. The partner spins on an atomic for a while after each task (about
// 100 us), so that back-to-back tasks start within the cores' cache-line latency, then
// sleeps until the next one. While it spins it holds a core: a generation step uses the
// partner and no OpenMP region.
#pragma once

#include <cstdint>
#include <functional>

namespace logattn {

// Runs block(i) for i in [0, n) on the calling thread and the partner thread, each block
// exactly once, and returns when all are done. With one core (or inside an OpenMP region, or
// when the partner is busy with another caller's work), runs them all on the calling thread.
// Which thread runs a block varies: block(i) must not depend on it. Exceptions must not
// leave block.
void run_blocks(int64_t n, const std::function<void(int64_t)>& block);

// Whether run_blocks may use a second thread here.
bool partner_available();

}  // namespace logattn
