// Matrix products (row-major), in one place: every product of the library, the model and
// the benchmarks goes through ops::gemm, which dispatches on the backend chosen once per
// process. One-row products (a generation step's) use the kernels of ops/gemv.h and split
// with the partner thread, whatever the backend.
//
// Backends: oneDNN (the default) picks its kernels by the CPU's features (AVX2, AVX-512,
// AMX), so a CPU newer than the libraries runs at full speed; Debian's OpenBLAS picks its
// kernels by CPU model and falls back to generic SSE3 kernels on models it does not know.
// LOGATTN_GEMM=openblas selects OpenBLAS, and so does OPENBLAS_CORETYPE set without
// LOGATTN_GEMM (a user naming an OpenBLAS kernel gets it); DNNL_MAX_CPU_ISA caps oneDNN's.
// Inside an OpenMP parallel region both run on the calling thread only, so per-head
// products do not oversubscribe the cores.
#pragma once

#include <cstdint>
#include <string>

namespace logattn::ops {

enum class GemmBackend { kOneDnn, kOpenBlas };

// The backend of this process: LOGATTN_GEMM (onednn | openblas); when unset, OpenBLAS if
// OPENBLAS_CORETYPE is set, else oneDNN.
// Throws logattn::Error naming the variable when it holds anything else.
GemmBackend gemm_backend();

// The library, its version and the kernel family that runs, e.g. "oneDNN 2.6.3 avx2" or
// "OpenBLAS 0.3.21 Prescott": printed in `config:` lines so a slow machine is seen.
std::string gemm_backend_name(GemmBackend backend);
inline std::string gemm_backend_name() {
  return gemm_backend_name(gemm_backend());
}

// c[m, n] = alpha * op(a) op(b) + beta * c, with op(a) [m, k] and op(b) [k, n];
// ta / tb: a is stored [k, m] / b is stored [n, k].
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// The same product through a given backend, never the one-row kernels (benchmarks compare
// the backends side by side with it).
void gemm_with(GemmBackend backend, bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
               int64_t ldc);

}  // namespace logattn::ops
