#include <fmt/format.h>
#include <omp.h>

#include <vector>

#include "cli/bench_util.h"
#include "cli/commands.h"
#include "ops/int8_kernels.h"
#include "ops/matmul.h"
#include "serve/http.h"
#include "simd/vexp.h"
#include "train/dist.h"

namespace logattn::cli {

std::string machine_config() {
  return fmt::format("sgemm={} exp={} int8={} threads={}", ops::gemm_backend_name(),
                     simd::exp_isa(), ops::int8_kernel_name(ops::int8_kernel()),
                     omp_get_max_threads());
}

std::string version_text(const std::string& version, const std::string& commit) {
  std::string libs = ops::gemm_backend_name(ops::GemmBackend::kOneDnn) + ", " +
                     ops::gemm_backend_name(ops::GemmBackend::kOpenBlas) + ", " +
                     simd::sleef_version() + ", " + serve::http_library_version();
  const std::string mpi = train::Dist::library_version();
  libs += mpi.empty() ? ", no MPI" : ", " + mpi;
  return fmt::format("logattn {} (commit {})\nbuilt with: {}", version, commit, libs);
}

std::string matrix_product_rate() {
  const int64_t n = 512;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  auto product = [&] {
    ops::gemm(false, false, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
  };
  const double sec = seconds_per_call(0.1, product);  // after a warm-up call
  return fmt::format(
      "matrix products: {} at {:.1f} GFLOP/s on {} threads (`logattn bench sgemm` compares "
      "settings)",
      ops::gemm_backend_name(), 2.0 * n * n * n / sec / 1e9, omp_get_max_threads());
}

}  // namespace logattn::cli
