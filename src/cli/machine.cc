#include <fmt/format.h>
#include <omp.h>

#include <chrono>
#include <vector>

#include "cli/commands.h"
#include "ops/matmul.h"
#include "simd/vexp.h"

namespace logattn::cli {

std::string machine_config() {
  return fmt::format("sgemm={} exp={} threads={}", ops::gemm_backend_name(), simd::exp_isa(),
                     omp_get_max_threads());
}

std::string matrix_product_rate() {
  const int64_t n = 512;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  auto product = [&] {
    ops::gemm(false, false, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
  };
  product();  // warm-up: threads, packing buffers
  using Clock = std::chrono::steady_clock;
  int64_t calls = 0;
  const auto t0 = Clock::now();
  double elapsed = 0;
  do {
    product();
    ++calls;
    elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  } while (elapsed < 0.1);
  return fmt::format(
      "matrix products: {} at {:.1f} GFLOP/s on {} threads (`logattn bench sgemm` compares "
      "settings)",
      ops::gemm_backend_name(), 2.0 * n * n * n * calls / elapsed / 1e9, omp_get_max_threads());
}

}  // namespace logattn::cli
