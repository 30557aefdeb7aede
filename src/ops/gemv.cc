#include "ops/gemv.h"

#include <cstring>
#include <vector>

namespace logattn::ops::kernels {

namespace {

// Sixteen floats (one AVX-512 register, or two AVX2 ones): GCC's vector extension, so that
// the kernel is written once for whatever instruction set the build targets.
typedef float v16 __attribute__((vector_size(64)));

inline v16 load(const float* p) {
  v16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline float reduce(v16 s) {
  typedef float v8 __attribute__((vector_size(32)));
  typedef float v4 __attribute__((vector_size(16)));
  const v8 h = __builtin_shufflevector(s, s, 0, 1, 2, 3, 4, 5, 6, 7) +
               __builtin_shufflevector(s, s, 8, 9, 10, 11, 12, 13, 14, 15);
  const v4 q =
      __builtin_shufflevector(h, h, 0, 1, 2, 3) + __builtin_shufflevector(h, h, 4, 5, 6, 7);
  return (q[0] + q[2]) + (q[1] + q[3]);
}

// How far ahead of the loads the kernel asks for b, in bytes. A step's weights come from L3
// (a few MB per token), rows are 1 KB at the presets' sizes, and the hardware prefetcher,
// which starts afresh at each 4 KB page, left the loads waiting. On the development machine
// (one-row products over the small preset's matrices, two runs) 2 KB ahead took 0.77-0.86x
// the time without on one thread and 0.85-0.93x on two; 1, 4 and 8 KB were no better.
constexpr int64_t kPrefetchBytes = 2048;

}  // namespace

void gemv_rows(int64_t n, int64_t k, float alpha, const float* b, int64_t ldb, const float* x,
               float beta, float* c) {
  const int64_t k64 = k / 64 * 64, k16 = k / 16 * 16;
  for (int64_t j = 0; j < n; ++j) {
    const float* r = b + j * ldb;
    // Four accumulators: the FMAs' latency must not bound a loop bound by streaming b.
    v16 s0 = {}, s1 = {}, s2 = {}, s3 = {};
    for (int64_t i = 0; i < k64; i += 64) {
      const char* p = reinterpret_cast<const char*>(r + i) + kPrefetchBytes;
      __builtin_prefetch(p, 0, 3), __builtin_prefetch(p + 64, 0, 3);
      __builtin_prefetch(p + 128, 0, 3), __builtin_prefetch(p + 192, 0, 3);
      s0 += load(r + i) * load(x + i);
      s1 += load(r + i + 16) * load(x + i + 16);
      s2 += load(r + i + 32) * load(x + i + 32);
      s3 += load(r + i + 48) * load(x + i + 48);
    }
    for (int64_t i = k64; i < k16; i += 16) s0 += load(r + i) * load(x + i);
    float acc = reduce((s0 + s1) + (s2 + s3));
    for (int64_t i = k16; i < k; ++i) acc += r[i] * x[i];
    c[j] = beta == 0.f ? alpha * acc : alpha * acc + beta * c[j];
  }
}

void gemv_cols(int64_t n, int64_t k, float alpha, const float* b, int64_t ldb, const float* x,
               float beta, float* c) {
  thread_local std::vector<float> acc;
  acc.assign(static_cast<size_t>(n), 0.f);
  float* __restrict s = acc.data();
  for (int64_t i = 0; i < k; ++i) {
    const float xi = x[i];
    const float* __restrict r = b + i * ldb;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) s[j] += xi * r[j];
  }
  for (int64_t j = 0; j < n; ++j) c[j] = beta == 0.f ? alpha * s[j] : alpha * s[j] + beta * c[j];
}

}  // namespace logattn::ops::kernels
