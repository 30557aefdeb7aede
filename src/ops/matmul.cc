#include "ops/matmul.h"

#include <cblas.h>

#include "logattn/error.h"

namespace logattn::ops {

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
    // pack it.
    const int inc_a = ta ? static_cast<int>(lda) : 1;
    if (tb)  // c[1, n] = a . b^T with b [n, k]
      cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(n), static_cast<int>(k), alpha, b,
                  static_cast<int>(ldb), a, inc_a, beta, c, 1);
    else  // c[1, n] = a . b with b [k, n]
      cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<int>(k), static_cast<int>(n), alpha, b,
                  static_cast<int>(ldb), a, inc_a, beta, c, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

}  // namespace logattn::ops
