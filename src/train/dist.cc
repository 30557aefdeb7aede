#include "train/dist.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "logattn/error.h"

#ifdef LOGATTN_MPI
#include <mpi.h>
#endif

namespace logattn::train {

namespace {

// The number of processes mpirun started (Open MPI's variables, PMIx's), 0 when not started
// by mpirun.
int launched_size() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"})
    if (const char* s = std::getenv(v)) return std::max(1, std::atoi(s));
  return std::getenv("PMIX_RANK") ? 1 : 0;
}

bool g_parallel = false;

#ifdef LOGATTN_MPI
// MPI counts are int: large arrays go in pieces.
constexpr int64_t kPiece = int64_t{1} << 30;

// A background sum's wait between progress calls: short against a layer's backward
// (milliseconds), long against the cost of a call.
constexpr int kPollMicroseconds = 200;

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) throw Error(std::string("MPI: ") + what + " failed");
}
#endif

}  // namespace

const Dist& Dist::get() {
  static Dist d;
  return d;
}

bool Dist::running_parallel() {
  return g_parallel;
}

Dist::Dist() {
  const int launched = launched_size();
#ifdef LOGATTN_MPI
  if (launched == 0) return;
  int provided = 0;
  // The trainer's thread and the gradient reduction's thread (AsyncSum) use MPI, one at a
  // time; OpenMP's threads never do.
  check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
  mpi_ = true;
  threaded_ = provided >= MPI_THREAD_SERIALIZED;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  g_parallel = size_ > 1;
#else
  if (launched > 1)
    throw Error("mpirun started " + std::to_string(launched) +
                " processes, but this logattn was built without MPI: install libopenmpi-dev "
                "and rebuild (scripts/setup.sh), or run one process");
#endif
}

Dist::~Dist() {
#ifdef LOGATTN_MPI
  if (mpi_) MPI_Finalize();
#endif
}

void Dist::abort_job(int code) {
#ifdef LOGATTN_MPI
  if (g_parallel) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  (void)code;
}

void Dist::fail_job(const char* what) {
  if (!g_parallel) return;
  const auto& d = get();
  std::fprintf(stderr, "logattn: error (rank %d of %d): %s\n", d.rank(), d.size(), what);
  std::fflush(stderr);
  abort_job(1);
}

void Dist::end_job_together(const char* what) {
  if (!g_parallel) return;
  const auto& d = get();
  std::fprintf(stderr, "logattn: error (rank %d of %d): %s\n", d.rank(), d.size(), what);
  std::fflush(stderr);
  d.barrier();
}

std::string Dist::library_version() {
#ifdef LOGATTN_MPI
  char v[MPI_MAX_LIBRARY_VERSION_STRING];
  int n = 0;
  MPI_Get_library_version(v, &n);
  const std::string lib(v, static_cast<size_t>(n));
  return lib.substr(0, lib.find(','));  // "Open MPI v4.1.4, package: ..."
#else
  return "";
#endif
}

std::string Dist::describe() const {
  std::string s = std::to_string(size_) + (size_ == 1 ? " process" : " processes");
#ifdef LOGATTN_MPI
  if (mpi_) s += " (" + library_version() + ")";
#endif
  return s;
}

void Dist::sum(float* x, int64_t n) const {
#ifdef LOGATTN_MPI
  if (size_ == 1) return;
  for (int64_t i = 0; i < n; i += kPiece)
    check(MPI_Allreduce(MPI_IN_PLACE, x + i, static_cast<int>(std::min(kPiece, n - i)), MPI_FLOAT,
                        MPI_SUM, MPI_COMM_WORLD),
          "MPI_Allreduce");
#endif
  (void)x, (void)n;
}

void Dist::sum_polling(float* x, int64_t n) const {
#ifdef LOGATTN_MPI
  if (size_ == 1) return;
  for (int64_t i = 0; i < n; i += kPiece) {
    MPI_Request request;
    check(MPI_Iallreduce(MPI_IN_PLACE, x + i, static_cast<int>(std::min(kPiece, n - i)), MPI_FLOAT,
                         MPI_SUM, MPI_COMM_WORLD, &request),
          "MPI_Iallreduce");
    for (int done = 0;;) {
      check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Test");
      if (done) break;
      std::this_thread::sleep_for(std::chrono::microseconds(kPollMicroseconds));
    }
  }
#endif
  (void)x, (void)n;
}

void Dist::sum(double* x, int64_t n) const {
#ifdef LOGATTN_MPI
  if (size_ == 1) return;
  check(MPI_Allreduce(MPI_IN_PLACE, x, static_cast<int>(n), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD),
        "MPI_Allreduce");
#endif
  (void)x, (void)n;
}

void Dist::min_max(uint64_t* lo, uint64_t* hi) const {
#ifdef LOGATTN_MPI
  if (size_ == 1) return;
  check(MPI_Allreduce(MPI_IN_PLACE, lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD), "MPI_Allreduce");
  check(MPI_Allreduce(MPI_IN_PLACE, hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce");
#endif
  (void)lo, (void)hi;
}

bool Dist::any(bool b) const {
  double x = b ? 1.0 : 0.0;
  sum(&x, 1);
  return x > 0;
}

void Dist::broadcast(void* bytes, int64_t n) const {
#ifdef LOGATTN_MPI
  if (size_ == 1) return;
  auto* p = static_cast<char*>(bytes);
  for (int64_t i = 0; i < n; i += kPiece)
    check(MPI_Bcast(p + i, static_cast<int>(std::min(kPiece, n - i)), MPI_BYTE, 0, MPI_COMM_WORLD),
          "MPI_Bcast");
#endif
  (void)bytes, (void)n;
}

void Dist::broadcast(std::string& s) const {
  if (size_ == 1) return;
  int64_t n = static_cast<int64_t>(s.size());
  broadcast(&n, sizeof n);
  s.resize(static_cast<size_t>(n));
  broadcast(s.data(), n);
}

std::vector<std::string> Dist::all_gather(const std::string& s) const {
  if (size_ == 1) return {s};
  std::vector<std::string> out(static_cast<size_t>(size_));
#ifdef LOGATTN_MPI
  if (s.size() > static_cast<size_t>(kPiece)) throw Error("all_gather: more than 2^30 bytes");
  const int n = static_cast<int>(s.size());
  std::vector<int> sizes(static_cast<size_t>(size_)), offsets(static_cast<size_t>(size_));
  check(MPI_Allgather(&n, 1, MPI_INT, sizes.data(), 1, MPI_INT, MPI_COMM_WORLD), "MPI_Allgather");
  int64_t total = 0;
  for (int r = 0; r < size_; ++r) {
    offsets[r] = static_cast<int>(total);
    total += sizes[r];
    if (total > kPiece) throw Error("all_gather: more than 2^30 bytes in all");
  }
  std::string all(static_cast<size_t>(total), '\0');
  check(MPI_Allgatherv(s.data(), n, MPI_CHAR, all.data(), sizes.data(), offsets.data(), MPI_CHAR,
                       MPI_COMM_WORLD),
        "MPI_Allgatherv");
  for (int r = 0; r < size_; ++r) out[r] = all.substr(offsets[r], sizes[r]);
#endif
  return out;
}

namespace {

// Items as one string: each name and value preceded by its length, so that no byte of a value
// (a path with newlines) can be taken for a separator.
std::string encode(const Dist::Items& items) {
  std::string s;
  for (const auto& [name, value] : items)
    for (const auto* x : {&name, &value}) s += std::to_string(x->size()) + ":" + *x;
  return s;
}

Dist::Items decode(const std::string& s) {
  Dist::Items items;
  std::vector<std::string> parts;
  for (size_t i = 0; i < s.size();) {
    const size_t colon = s.find(':', i);
    if (colon == std::string::npos) break;
    const size_t n = std::stoull(s.substr(i, colon - i));
    parts.push_back(s.substr(colon + 1, n));
    i = colon + 1 + n;
  }
  for (size_t i = 0; i + 1 < parts.size(); i += 2) items.emplace_back(parts[i], parts[i + 1]);
  return items;
}

}  // namespace

void Dist::require_same(const Items& items, const std::string& what) const {
  if (size_ == 1) return;
  const auto all = all_gather(encode(items));
  const Items first = decode(all[0]);
  for (int r = 1; r < size_; ++r) {
    if (all[r] == all[0]) continue;
    const Items other = decode(all[r]);
    for (size_t i = 0; i < std::max(first.size(), other.size()); ++i) {
      const std::string name = i < first.size() ? first[i].first : other[i].first;
      const std::string a = i < first.size() ? first[i].second : "(none)";
      const std::string b = i < other.size() ? other[i].second : "(none)";
      if (i < first.size() && i < other.size() && first[i] == other[i]) continue;
      throw JobWideError(what + ": the processes of this job differ: " + name + " is '" + a +
                         "' on rank 0 but '" + b + "' on rank " + std::to_string(r) +
                         "; every process must be started with the same options and files");
    }
  }
}

void Dist::barrier() const {
#ifdef LOGATTN_MPI
  if (size_ > 1) check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
#endif
}

}  // namespace logattn::train
