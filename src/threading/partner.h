// A second thread for work too short for an OpenMP region: a one-token generation step's
// matrix-vector products take microseconds each, and libgomp's fork and join cost a futex
// system call each (microseconds in a VM), which ate the gain of a second core.
//
// The split is static: the caller runs the first blocks, the partner the rest, so that each
// core reads the same part of every weight matrix at every step (it stays in that core's
// caches; on this kind of VM the two virtual CPUs may sit on different L3 slices). Moving a
// cache line between the cores costs about 0.3 us here, so a task moves as few as it can:
// the caller posts it in one line, the partner takes its part with one compare-and-swap on
// that line and reports completion in a line of its own. A partner that has not taken its
// part when the caller is done with its own (a virtual CPU descheduled for a while, or
// asleep) loses it: the caller runs it too and waits for nothing.
//
// The partner spins for a while after each task (about 100 us), so that back-to-back tasks
// start within a cache-line transfer, then sleeps until the next one. While it spins it
// holds a core: a generation step uses the partner and no OpenMP region.
#pragma once

#include <cstdint>
#include <functional>

namespace logattn {

// Runs block(i) for i in [0, n) on the calling thread and the partner thread, each block
// exactly once, and returns when all are done: the caller takes blocks [0, (n + 1) / 2), the
// partner the rest (the caller starts first; measured, a larger caller's share gained
// nothing). With one core (or inside an OpenMP region, or when the partner is busy with another
// caller's work), runs them all on the calling thread. Which thread runs a block varies: block(i)
// must not depend on it. Exceptions must not leave block.
void run_blocks(int64_t n, const std::function<void(int64_t)>& block);

// Whether run_blocks may use a second thread here.
bool partner_available();

}  // namespace logattn
