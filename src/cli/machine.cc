#include <fmt/format.h>
#include <omp.h>

#include "cli/commands.h"
#include "ops/matmul.h"
#include "simd/vexp.h"

namespace logattn::cli {

std::string machine_config() {
  return fmt::format("sgemm={} exp={} threads={}", ops::gemm_backend_name(), simd::exp_isa(),
                     omp_get_max_threads());
}

}  // namespace logattn::cli
