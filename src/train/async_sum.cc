#include "train/async_sum.h"

#include "logattn/error.h"

namespace logattn::train {

AsyncSum::AsyncSum(const Dist& dist) : dist_(dist) {
  if (!dist.threaded())
    throw Error(
        "train: this MPI library does not accept calls from a second thread "
        "(MPI_THREAD_SERIALIZED); train with --overlap-reduce off");
  thread_ = std::thread([this] { run(); });
}

AsyncSum::~AsyncSum() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    quit_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void AsyncSum::start(float* x, int64_t n) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back({x, n});
    ++busy_;
  }
  cv_.notify_all();
}

void AsyncSum::finish() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return busy_ == 0; });
  if (error_) {
    auto e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
}

void AsyncSum::run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return quit_ || !queue_.empty(); });
    if (queue_.empty()) return;
    const Job job = queue_.front();
    queue_.pop_front();
    lock.unlock();
    // The mutex orders this thread's MPI calls after the caller's last ones (start) and
    // before its next ones (finish), as MPI_THREAD_SERIALIZED asks.
    std::exception_ptr err;
    try {
      dist_.sum_polling(job.x, job.n);
    } catch (...) {
      err = std::current_exception();
    }
    lock.lock();
    if (err && !error_) error_ = err;
    if (--busy_ == 0) cv_.notify_all();
  }
}

}  // namespace logattn::train
