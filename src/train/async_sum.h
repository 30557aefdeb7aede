// Sums of float arrays over every process, done by a thread of their own so that the
// caller goes on computing meanwhile: the gradients of a layer are reduced while the
// backward works on the layers below it (what llm.c and PyTorch's DistributedDataParallel
// do with gradient buckets).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "train/dist.h"

namespace logattn::train {

class AsyncSum {
 public:
  // dist.threaded() must hold: MPI then accepts calls from the sum's thread between the
  // caller's own (which finish() orders).
  explicit AsyncSum(const Dist& dist);
  ~AsyncSum();
  AsyncSum(const AsyncSum&) = delete;
  AsyncSum& operator=(const AsyncSum&) = delete;

  // Queues the element-wise sum of x[0, n) over every process, in place. Every process must
  // queue the same sizes in the same order; the caller leaves x alone until finish().
  void start(float* x, int64_t n);
  // Waits until every queued sum is done; rethrows the first error of the sum's thread. The
  // caller may use MPI again once it returns.
  void finish();

 private:
  void run();
  struct Job {
    float* x;
    int64_t n;
  };
  const Dist& dist_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  int64_t busy_ = 0;  // jobs queued or running
  bool quit_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace logattn::train
