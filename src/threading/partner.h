// A second thread for work too short for an OpenMP region: a one-token generation step's
// matrix-vector products take microseconds each, and libgomp's fork and join cost a futex
// system call each (microseconds in a VM), which ate the gain of a second core.
//
// The split is static: the caller runs the first half of the blocks, the partner the rest,
// so that each core reads the same part of every weight matrix (and the same heads' states)
// at every step, from its own caches. Moving a cache line between the two cores costs about
// 0.3 us on the development VM (a ping-pong round trip measured 0.66 us), so a task moves
// few: the caller posts it in one line, the partner announces that it took it up in a line
// of its own and reports completion in another; the caller reads the completion line only.
// A partner that has not taken up its half a few microseconds after the caller is done with
// its own (a virtual CPU descheduled for a while, or asleep) loses it: the caller steals
// the half and runs it too (Dekker's hand-over decides between the two).
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
// partner the rest (a larger share for the caller, which starts first, measured no faster).
// With one core (or inside an OpenMP region, or when the partner is busy with another
// caller's work, as in a nested call), runs them all on the calling thread, as it does a
// late partner's half: which thread runs a block varies, and block(i) must not depend on it.
// A block's exception stops that thread's half and reaches the caller once both halves are
// done (the caller's own first, else the partner's).
void run_blocks(int64_t n, const std::function<void(int64_t)>& block);

// Whether run_blocks may use a second thread here.
bool partner_available();

}  // namespace logattn
