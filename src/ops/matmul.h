// Matrix products (row-major): through OpenBLAS, except one-row products (a generation
// step's), which use the kernels of ops/gemv.h and split with the partner thread. Inside an
// OpenMP parallel region the OpenMP build of OpenBLAS runs on the calling thread only, so
// per-head products do not oversubscribe the cores.
#pragma once

#include <cstdint>

namespace logattn::ops {

// c[m, n] = alpha * op(a) op(b) + beta * c, with op(a) [m, k] and op(b) [k, n];
// ta / tb: a is stored [k, m] / b is stored [n, k].
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace logattn::ops
