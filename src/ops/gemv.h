// Matrix-vector kernels for one-row products (a generation step's), apart from ops::gemm,
// which checks and dispatches. Each output is one row's sum in a fixed order, whatever the
// rows a caller hands out to threads: results do not depend on the thread count.
#pragma once

#include <cstdint>

namespace logattn::ops::kernels {

// c[j] = alpha * dot(b[j, :], x) + beta * c[j] for j < n.
// b: [n, k] with row stride ldb; x: [k]; c: [n]. (beta == 0 ignores c's contents.)
void gemv_rows(int64_t n, int64_t k, float alpha, const float* b, int64_t ldb, const float* x,
               float beta, float* c);

// c[j] = alpha * sum_i x[i] b[i, j] + beta * c[j] for j < n.
// b: [k, n] with row stride ldb; x: [k]; c: [n].
void gemv_cols(int64_t n, int64_t k, float alpha, const float* b, int64_t ldb, const float* x,
               float beta, float* c);

}  // namespace logattn::ops::kernels
