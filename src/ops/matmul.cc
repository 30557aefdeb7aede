#include "ops/matmul.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>

#include "logattn/error.h"

namespace logattn::ops {

namespace {
// Elements of b per thread below which a matrix-vector product stays on one thread.
constexpr int64_t kGemvPerThread = 32768;
}  // namespace

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  LOGATTN_CHECK(m <= INT32_MAX && n <= INT32_MAX && k <= INT32_MAX);
  if (k == 0) {
    // BLAS leaves c untouched for k == 0 only when beta == 1; make it explicit.
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.f ? 0.f : beta * c[i * ldc + j];
    return;
  }
  if (m == 1) {
    // One row (generation): a matrix-vector product streams b once, where sgemm would first
    // pack it. The outputs are split between threads in one parallel region (each slice a
    // single-threaded sgemv): streaming b from cache is the whole cost, and both cores'
    // bandwidth halves it.
    const int inc_a = ta ? static_cast<int>(lda) : 1;
    auto slice = [&](int64_t j0, int64_t j1) {
      if (tb)  // c[1, n] = a . b^T with b [n, k]
        cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(j1 - j0), static_cast<int>(k),
                    alpha, b + j0 * ldb, static_cast<int>(ldb), a, inc_a, beta, c + j0, 1);
      else  // c[1, n] = a . b with b [k, n]
        cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<int>(k), static_cast<int>(j1 - j0),
                    alpha, b + j0, static_cast<int>(ldb), a, inc_a, beta, c + j0, 1);
    };
    const int64_t threads =
        omp_in_parallel() ? 1 : std::min<int64_t>(omp_get_max_threads(), n * k / kGemvPerThread);
    if (threads < 2) {
      slice(0, n);
      return;
    }
#pragma omp parallel num_threads(static_cast <int>(threads))
    {
      const int64_t t = omp_get_thread_num();
      // Slices of 16 outputs: whole vectors for the kernels.
      const int64_t j0 = std::min(n, (n * t / threads + 15) / 16 * 16);
      const int64_t j1 = t + 1 == threads ? n : std::min(n, (n * (t + 1) / threads + 15) / 16 * 16);
      if (j1 > j0) slice(j0, j1);
    }
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

}  // namespace logattn::ops
