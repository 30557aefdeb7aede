#include "ops/matmul.h"

#include <cblas.h>

#include <algorithm>
#include <vector>

#include "logattn/error.h"
#include "ops/gemv.h"
#include "threading/partner.h"

namespace logattn::ops {

namespace {

// Elements of b from which a one-row product is split between two threads, and rows per
// block of the split.
constexpr int64_t kGemvSplit = 65536;
constexpr int64_t kGemvRows = 16;

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
    // One row (a generation step): the kernels of ops/gemv.h, not OpenBLAS's sgemv, which
    // would start OpenMP threads that fight the partner thread for the cores (or, from the
    // partner thread itself, a team of its own). Large products against b [n, k] split
    // their rows with the partner (threading/partner.h); a row's sum is the same either way.
    const float* x = a;
    thread_local std::vector<float> xs;
    if (ta && lda != 1) {
      xs.resize(static_cast<size_t>(k));
      for (int64_t i = 0; i < k; ++i) xs[i] = a[i * lda];
      x = xs.data();
    }
    if (!tb) {
      kernels::gemv_cols(n, k, alpha, b, ldb, x, beta, c);
    } else if (n * k < kGemvSplit || !partner_available()) {
      kernels::gemv_rows(n, k, alpha, b, ldb, x, beta, c);
    } else {
      // Blocks of kGemvRows rows (whole cache lines of c).
      run_blocks((n + kGemvRows - 1) / kGemvRows, [&](int64_t i) {
        const int64_t j0 = i * kGemvRows, j1 = std::min(n, j0 + kGemvRows);
        kernels::gemv_rows(j1 - j0, k, alpha, b + j0 * ldb, ldb, x, beta, c + j0);
      });
    }
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

}  // namespace logattn::ops
