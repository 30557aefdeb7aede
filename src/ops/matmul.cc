#include "ops/matmul.h"

#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
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

GemmBackend backend_from_env() {
  const char* env = std::getenv("LOGATTN_GEMM");
  if (!env || !*env) {
    // A user who names an OpenBLAS kernel asks for OpenBLAS.
    const char* core = std::getenv("OPENBLAS_CORETYPE");
    return core && *core ? GemmBackend::kOpenBlas : GemmBackend::kOneDnn;
  }
  if (std::strcmp(env, "onednn") == 0) return GemmBackend::kOneDnn;
  if (std::strcmp(env, "openblas") == 0) return GemmBackend::kOpenBlas;
  throw Error(std::string("LOGATTN_GEMM='") + env +
              "' is not a matrix-product backend; use onednn or openblas");
}

const char* onednn_isa_name(dnnl_cpu_isa_t isa) {
  switch (isa) {
    case dnnl_cpu_isa_sse41:
      return "sse41";
    case dnnl_cpu_isa_avx:
      return "avx";
    case dnnl_cpu_isa_avx2:
      return "avx2";
    case dnnl_cpu_isa_avx2_vnni:
      return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core:
      return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx:
      return "avx512_core_amx";
    default:
      return "reference";
  }
}

}  // namespace

GemmBackend gemm_backend() {
  // Read once: a process does not change backends midway (results would change bits).
  static const GemmBackend backend = backend_from_env();
  return backend;
}

std::string gemm_backend_name(GemmBackend backend) {
  if (backend == GemmBackend::kOpenBlas) {
    std::string version = OPENBLAS_VERSION;  // " OpenBLAS 0.3.21 "
    version.erase(0, version.find_first_not_of(' '));
    version.erase(version.find_last_not_of(' ') + 1);
    return version + " " + openblas_get_corename();
  }
  const dnnl_version_t* v = dnnl_version();
  return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
         std::to_string(v->patch) + " " + onednn_isa_name(dnnl_get_effective_cpu_isa());
}

void gemm_with(GemmBackend backend, bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
               int64_t ldc) {
  if (backend == GemmBackend::kOneDnn) {
    const dnnl_status_t st =
        dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    LOGATTN_CHECK(st == dnnl_success);
    return;
  }
  LOGATTN_CHECK(m <= INT32_MAX && n <= INT32_MAX && k <= INT32_MAX);
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
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
  gemm_with(gemm_backend(), ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace logattn::ops
