// A second thread for work too short for an OpenMP region: a one-token generation step's
// matrix-vector products take microseconds each, and libgomp's fork and join cost a futex
// system call each (microseconds in a VM), which ate the gain of a second core. The partner
// spins on an atomic for a while after each task (about 100 us), so that back-to-back tasks
// start within the cores' cache-line latency (about a microsecond here), then sleeps until
// the next one. While it spins it holds a core: OpenMP regions right after its tasks run
// slower, so a generation step uses the partner and no OpenMP region.
#pragma once

#include <cstdint>
#include <functional>

namespace logattn {

// Runs task(0) on the calling thread and task(1) on the partner thread, and returns when
// both are done; with one core (or inside an OpenMP region, or when the partner is busy
// with another caller's task), runs both on the calling thread. Exceptions must not leave
// task.
void run_on_two_threads(const std::function<void(int)>& task);

// Whether run_on_two_threads would use a second thread here.
bool partner_available();

}  // namespace logattn
