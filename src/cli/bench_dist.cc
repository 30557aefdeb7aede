// `logattn bench allreduce`: the time to all-reduce a training step's gradients between the
// processes of an MPI job (shared memory on one machine, TCP between machines).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <vector>

#include "cli/bench_util.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "logattn/error.h"
#include "model/config.h"
#include "train/dist.h"

namespace logattn::cli {

namespace {

struct AllreduceConfig {
  std::string preset = "paper";
  double mb = 0;  // 0: the preset's gradients
  int64_t rounds = 5;
  bool json = false;
};

int run_bench_allreduce(const AllreduceConfig& c, const OptionTable& table) {
  const auto& dist = train::Dist::get();
  if (dist.size() < 2)
    throw Error(
        "bench allreduce: run it under mpirun with two or more processes, e.g. mpirun -np 2 "
        "logattn bench allreduce (add --mca btl tcp,self for TCP)");
  dist.require_same(table.items(), "bench allreduce");
  if (c.rounds < 1 || c.rounds > 100) throw Error("bench allreduce: --rounds must be in [1, 100]");
  if (!(c.mb >= 0 && c.mb <= 16384)) throw Error("bench allreduce: --mb must be in [0, 16384]");
  const int64_t floats = c.mb > 0 ? static_cast<int64_t>(c.mb * 1048576 / 4)
                                  : model::ModelConfig::preset(c.preset).parameter_count();
  std::vector<float> g(static_cast<size_t>(floats), 1.f);
  std::vector<double> times;
  for (int64_t r = 0; r <= c.rounds; ++r) {  // round 0 warms up (connections, pages)
    dist.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    dist.sum(g.data(), floats);
    uint64_t lo = static_cast<uint64_t>(
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count());
    uint64_t hi = lo;
    dist.min_max(&lo, &hi);  // the slowest process's time
    if (r > 0) times.push_back(static_cast<double>(hi) * 1e-9);
  }
  if (!dist.root()) return 0;
  const double sec = median(times), bytes = 4.0 * static_cast<double>(floats);
  const int n = dist.size();
  // Bus bandwidth: what each process sends and receives in a ring all-reduce, 2 (n-1)/n of
  // the buffer, per second (comparable across process counts).
  const double algbw = bytes / sec / 1e9, busbw = algbw * 2.0 * (n - 1) / n;
  nlohmann::json j = {{"processes", n},    {"mpi", dist.describe()}, {"bytes", bytes},
                      {"seconds", sec},    {"algbw_gb_s", algbw},    {"busbw_gb_s", busbw},
                      {"rounds", c.rounds}};
  if (c.json) {
    fmt::print("{}\n", j.dump());
    return 0;
  }
  fmt::print("logattn bench allreduce\nconfig: {} {}\n", table.describe(), machine_config());
  fmt::print(
      "{}: all-reduce (sum) of {:.1f} MB of float32 in {:.3f} s (median of {} rounds): {:.2f} "
      "GB/s of buffer, {:.2f} GB/s bus bandwidth\n",
      dist.describe(), bytes / 1e6, sec, c.rounds, algbw, busbw);
  return 0;
}

}  // namespace

Runner add_bench_allreduce_command(CLI::App& bench) {
  auto* cmd = bench.add_subcommand(
      "allreduce", "Under mpirun: time to all-reduce a preset's gradients between the processes");
  auto cfg = std::make_shared<AllreduceConfig>();
  auto table = std::make_shared<OptionTable>();
  table
      ->add("--preset", &cfg->preset,
            "model preset whose gradients are reduced: small, paper, tiny")
      .add("--mb", &cfg->mb, "buffer size in MiB instead of a preset's gradients (0: the preset's)")
      .add("--rounds", &cfg->rounds, "timed all-reduces (after one warm-up)")
      .add("--json", &cfg->json, "print JSON");
  table->attach(cmd);
  return [cfg, table, cmd] { return cmd->parsed() ? run_bench_allreduce(*cfg, *table) : -1; };
}

}  // namespace logattn::cli
