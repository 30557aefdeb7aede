// logattn: the command-line tool. Without a subcommand it runs the default job.
#include <fmt/format.h>
#include <malloc.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <new>

#include "build_info.h"
#include "cli/commands.h"
#include "logattn/error.h"
#include "ops/int8_kernels.h"
#include "ops/matmul.h"
#include "train/dist.h"

int main(int argc, char** argv) {
  using namespace logattn::cli;
  // Buffers of 128 KiB and more are mapped and returned to the system when freed. glibc would
  // otherwise raise that threshold to the largest buffer freed so far (a checkpoint's file
  // image, a float32 model just quantized), and every buffer below it, freed or shrunk,
  // would stay resident: generation's memory would depend on what came before it.
  mallopt(M_MMAP_THRESHOLD, 128 << 10);
  CLI::App app{"logattn: softmax attention with constant cost per token (Heinsen, 2024)"};
  app.set_version_flag("--version", [] { return version_text(LOGATTN_VERSION, LOGATTN_COMMIT); });
  std::vector<Runner> runners;
  runners.push_back(add_demo_command(app));
  runners.push_back(add_train_command(app));
  runners.push_back(add_eval_command(app));
  runners.push_back(add_generate_command(app));
  runners.push_back(add_tokenize_command(app));
  runners.push_back(add_quantize_command(app));
  runners.push_back(add_serve_command(app));
  runners.push_back(add_stream_command(app));
  auto* bench = app.add_subcommand("bench", "Benchmarks");
  bench->require_subcommand(1);
  runners.push_back(add_bench_attention_command(*bench));
  runners.push_back(add_bench_sgemm_command(*bench));
  runners.push_back(add_bench_train_command(*bench));
  runners.push_back(add_bench_generate_command(*bench));
  runners.push_back(add_bench_tokenize_command(*bench));
  runners.push_back(add_bench_allreduce_command(*bench));
  // No arguments at all: the default job.
  const char* default_argv[] = {argv[0], "demo"};
  try {
    if (argc <= 1)
      app.parse(2, default_argv);
    else
      app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    // A bad LOGATTN_GEMM or LOGATTN_INT8 is an error before any work.
    logattn::ops::gemm_backend();
    logattn::ops::int8_kernel();
    for (auto& run : runners) {
      const int rc = run();
      if (rc >= 0) return rc;
    }
    std::fprintf(stderr, "%s", app.help().c_str());
    return 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr,
                 "logattn: error: out of memory: the sizes asked for need more memory than this "
                 "machine has (smaller --batch, --context or model)\n");
    return 1;
  } catch (const logattn::train::JobWideError& e) {
    // Every process found it: each says so and they end together, exit 1.
    logattn::train::Dist::end_job_together(e.what());
    if (!logattn::train::Dist::running_parallel())
      std::fprintf(stderr, "logattn: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    // Under mpirun, the process that fails says which it is and ends the whole job: the
    // others would otherwise wait for it forever.
    logattn::train::Dist::fail_job(e.what());
    std::fprintf(stderr, "logattn: error: %s\n", e.what());
    return 1;
  }
}
