// Processes training one model together (data parallelism): Open MPI when logattn was built
// with MPI and started by mpirun, one process otherwise. Every collective here is called by
// every process in the same order; in one process each is a no-op.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "logattn/error.h"

namespace logattn::train {

// An error every process of the job has found alike (require_same): each process reports it
// and they end together (end_job_together), none killed by another's abort before it has
// said why.
struct JobWideError : Error {
  using Error::Error;
};

class Dist {
 public:
  // The processes of this run, MPI initialised on first use when mpirun started this
  // process. Throws logattn::Error when mpirun started several processes of a logattn built
  // without MPI (each would train alone and write the same files).
  static const Dist& get();
  // Whether get() has set up several processes (for error paths that must not start MPI).
  static bool running_parallel();
  // Ends every process of the job with code (after an error on one of them); a no-op in
  // one process.
  static void abort_job(int code);
  // When several processes run: prints "logattn: error (rank r of N): what" and ends the
  // job (the others would wait for this process forever). Returns in one process.
  static void fail_job(const char* what);
  // For a JobWideError: prints "logattn: error (rank r of N): what", then waits for every
  // process to have printed. Returns; the caller exits with an error.
  static void end_job_together(const char* what);

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool root() const { return rank_ == 0; }
  // Whether a second thread may call the collectives below while this one waits for it
  // (MPI_THREAD_SERIALIZED); always in one process.
  bool threaded() const { return threaded_; }
  // "1 process" or "2 processes (Open MPI 4.1.4)".
  std::string describe() const;
  // The MPI library logattn was built with ("Open MPI v4.1.4"), or "" without MPI; callable
  // before (and without) starting MPI.
  static std::string library_version();

  // In place, over every process: element-wise sums, minimum and maximum.
  void sum(float* x, int64_t n) const;
  // The same sum, waiting by polling with short sleeps instead of MPI's busy wait, so that a
  // thread doing it in the background leaves the cores to the computation.
  void sum_polling(float* x, int64_t n) const;
  void sum(double* x, int64_t n) const;
  void min_max(uint64_t* lo, uint64_t* hi) const;
  // Whether b holds in any process.
  bool any(bool b) const;
  // From rank 0 to every process.
  void broadcast(void* bytes, int64_t n) const;
  void broadcast(std::string& s) const;
  void barrier() const;
  // Every process's s, in rank order.
  std::vector<std::string> all_gather(const std::string& s) const;

  // Named values that must be the same on every process (options, the model's
  // configuration). Called by every process at the same point; throws JobWideError on
  // every process, with the same message naming the first value that differs, its value on
  // rank 0 and on the first process where it differs. `what` names the operation.
  using Items = std::vector<std::pair<std::string, std::string>>;
  void require_same(const Items& items, const std::string& what) const;

  ~Dist();
  Dist(const Dist&) = delete;
  Dist& operator=(const Dist&) = delete;

 private:
  Dist();
  int rank_ = 0, size_ = 1;
  bool mpi_ = false;
  bool threaded_ = true;
};

}  // namespace logattn::train
