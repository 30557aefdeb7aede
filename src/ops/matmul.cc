#include "ops/matmul.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#include "logattn/error.h"
#include "threading/partner.h"

namespace logattn::ops {

namespace {

// Elements of b from which a one-row product is split between two threads, and per block.
constexpr int64_t kGemvSplit = 65536;
constexpr int64_t kGemvBlock = 32768;

// c[j] = alpha * dot(b[j, :], x) + beta * c[j] for j < n; b: [n, k] with row stride ldb.
// Four rows at a time: four independent vector accumulators, so that the FMAs' latency
// does not bound a loop that should be bound by streaming b. Each row's sum does not depend
// on how the rows are split, so results do not depend on the thread count. (OpenBLAS's
// sgemv would start OpenMP threads of its own from the partner thread.)
void gemv_rows(int64_t n, int64_t k, float alpha, const float* b, int64_t ldb, const float* x,
               float beta, float* c) {
  auto finish = [&](int64_t j, float acc) {
    c[j] = beta == 0.f ? alpha * acc : alpha * acc + beta * c[j];
  };
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    const float *r0 = b + j * ldb, *r1 = r0 + ldb, *r2 = r1 + ldb, *r3 = r2 + ldb;
    float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
    for (int64_t i = 0; i < k; ++i) {
      a0 += r0[i] * x[i];
      a1 += r1[i] * x[i];
      a2 += r2[i] * x[i];
      a3 += r3[i] * x[i];
    }
    finish(j, a0), finish(j + 1, a1), finish(j + 2, a2), finish(j + 3, a3);
  }
  for (; j < n; ++j) {
    const float* r = b + j * ldb;
    float acc = 0.f;
#pragma omp simd reduction(+ : acc)
    for (int64_t i = 0; i < k; ++i) acc += r[i] * x[i];
    finish(j, acc);
  }
}

// c[j] = alpha * sum_i x[i] b[i, j] + beta * c[j] for j < n; b: [k, n] with row stride ldb.
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
  if (m == 1 && partner_available()) {
    // One row (a generation step) while the partner thread may be spinning: not OpenBLAS's
    // sgemv, which would start OpenMP threads that fight the partner for the cores (or, from
    // the partner thread itself, a team of its own). Against b [n, k], large products split
    // the outputs with the partner (threading/partner.h).
    const float* x = a;
    thread_local std::vector<float> xs;
    if (ta && lda != 1) {
      xs.resize(static_cast<size_t>(k));
      for (int64_t i = 0; i < k; ++i) xs[i] = a[i * lda];
      x = xs.data();
    }
    if (!tb) {
      gemv_cols(n, k, alpha, b, ldb, x, beta, c);
      return;
    }
    if (n * k < kGemvSplit) {
      gemv_rows(n, k, alpha, b, ldb, x, beta, c);
      return;
    }
    // Blocks of rows claimed by whichever thread is free (kGemvBlock elements of b each).
    const int64_t rows = std::max<int64_t>(16, kGemvBlock / k / 16 * 16);
    run_blocks((n + rows - 1) / rows, [&](int64_t i) {
      const int64_t j0 = i * rows, j1 = std::min(n, j0 + rows);
      gemv_rows(j1 - j0, k, alpha, b + j0 * ldb, ldb, x, beta, c + j0);
    });
    return;
  }
  if (m == 1) {
    // One row: a matrix-vector product streams b once, where sgemm would first pack it.
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
