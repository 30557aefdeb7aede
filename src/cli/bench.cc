// `logattn bench attention` and `logattn bench sgemm`: throughput and peak memory. Each
// measurement runs in a child process (fork), so its peak resident memory is its own.
#include <fmt/format.h>
#include <omp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "cli/bench_util.h"
#include "cli/commands.h"
#include "cli/compare.h"
#include "cli/options.h"
#include "cli/progress.h"
#include "logattn/attention.h"
#include "ops/matmul.h"
#include "simd/vexp.h"
#include "util/checked.h"
#include "util/memory.h"

namespace logattn::cli {

namespace {

struct AttentionBenchConfig {
  std::vector<int64_t> n = {1024, 2048, 4096, 8192, 16384, 32768, 65536};
  int64_t batch = 1;
  int64_t heads = 8;
  int64_t dk = 32;
  int64_t dv = 32;
  int64_t chunk = 64;
  bool log_values = false;
  double min_time = 0.5;
  bool json = false;
};

std::vector<float> random_tensor(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> x(n);
  for (auto& e : x) e = normal(rng);
  return x;
}

enum class Mode { kForward, kForwardBackward, kStep };

std::string measure(const AttentionBenchConfig& c, int64_t n, Mode mode) {
  const int64_t B = c.batch, H = c.heads, dk = c.dk, dv = c.dv;
  AttentionOptions opt;
  opt.causal = true;
  opt.values = c.log_values ? Values::kLog : Values::kSigned;
  opt.chunk = c.chunk;
  const AttentionDims dims{B, H, n, n, dk, dv};
  const auto q = random_tensor(B * H * n * dk, 1), k = random_tensor(B * H * n * dk, 2),
             v = random_tensor(B * H * n * dv, 3);
  std::vector<float> y(B * H * n * dv), log_d(B * H * n);
  int64_t io_bytes = 4 * (q.size() + k.size() + v.size() + y.size() + log_d.size());
  double sec = 0;
  if (mode == Mode::kForward) {
    sec = seconds_per_call(c.min_time, [&] { attention_forward(opt, dims, q, k, v, y, log_d); });
  } else if (mode == Mode::kForwardBackward) {
    std::vector<float> gq(q.size()), gk(k.size()), gv(v.size());
    const auto gy = random_tensor(y.size(), 4);
    io_bytes += 4 * (gq.size() + gk.size() + gv.size() + gy.size());
    sec = seconds_per_call(c.min_time, [&] {
      attention_forward(opt, dims, q, k, v, y, log_d);
      attention_backward(opt, dims, q, k, v, y, log_d, gy, gq, gk, gv);
    });
  } else {
    // Prefill n tokens of context, then time one-token steps.
    AttentionState st(B, H, dk, dv, opt.values);
    attention_forward(opt, dims, q, k, v, y, log_d, &st);
    std::vector<float> yt(B * H * dv);
    std::vector<float> qs(B * H * dk), ks(B * H * dk), vs(B * H * dv);
    std::copy(q.begin(), q.begin() + qs.size(), qs.begin());
    std::copy(k.begin(), k.begin() + ks.size(), ks.begin());
    std::copy(v.begin(), v.begin() + vs.size(), vs.begin());
    // The median of rounds of 256 steps: steps are microseconds, and a noisy machine's
    // interruptions land in a few rounds.
    const int64_t steps = 256;
    std::vector<double> rounds;
    const auto t_end = Clock::now() + std::chrono::duration<double>(c.min_time);
    while (rounds.size() < 5 || Clock::now() < t_end) {
      const auto t0 = Clock::now();
      for (int64_t i = 0; i < steps; ++i) attention_step(qs, ks, vs, yt, st);
      rounds.push_back(std::chrono::duration<double>(Clock::now() - t0).count() / steps);
    }
    std::nth_element(rounds.begin(), rounds.begin() + rounds.size() / 2, rounds.end());
    sec = rounds[rounds.size() / 2];
  }
  const double tokens = static_cast<double>(B * n) / (mode == Mode::kStep ? n : 1);
  const double flops = 4.0 * B * H * (mode == Mode::kStep ? 1 : n) * dk * dv;
  return fmt::format(
      "{{\"seconds\": {:.6g}, \"tokens_per_s\": {:.6g}, \"gflops\": {:.4g}, \"peak_mib\": {:.2f}, "
      "\"io_mib\": {:.2f}}}",
      sec, tokens / sec, flops / sec / 1e9, util::peak_resident_bytes() / 1048576.0,
      io_bytes / 1048576.0);
}

int run_bench_attention(const AttentionBenchConfig& c, const OptionTable& table) {
  if (c.n.empty()) throw Error("bench attention: --n needs at least one length");
  for (int64_t n : c.n)
    if (n < 1 || n > (int64_t{1} << 24))
      throw Error("bench attention: every --n must be in [1, 2^24]");
  if (!(c.min_time > 0 && c.min_time <= 60))
    throw Error("bench attention: --min-time must be in (0, 60] seconds");
  if (c.batch < 1 || c.heads < 1 || c.dk < 1 || c.dv < 1 || c.chunk < 1)
    throw Error("bench attention: --batch, --heads, --dk, --dv and --chunk must be at least 1");
  for (int64_t n : c.n)
    util::checked_product({c.batch, c.heads, n, std::max(c.dk, c.dv)},
                          "bench attention: batch x heads x n x d");
  if (!c.json)
    fmt::print("logattn bench attention\nconfig: {} {}\n", table.describe(), machine_config());
  const char* names[] = {"forward", "forward_backward", "step"};
  if (!c.json)
    fmt::print("{:>7} {:>17} {:>8} {:>9} {:>17} {:>9} {:>12} {:>9} {:>8}\n", "n", "fwd tokens/s",
               "GFLOP/s", "peak MiB", "fwd+bwd tokens/s", "peak MiB", "step us/tok", "peak MiB",
               "io MiB");
  std::string json = "[";
  Progress progress("bench", static_cast<int64_t>(c.n.size()) * 3);
  int64_t done = 0;
  for (int64_t n : c.n) {
    std::string rec[3];
    for (int m = 0; m < 3; ++m) {
      rec[m] = in_child([&] { return measure(c, n, static_cast<Mode>(m)); });
      progress.update(++done, fmt::format("n={}", n));
    }
    json += fmt::format(
        "{}{{\"n\": {}, \"batch\": {}, \"heads\": {}, \"dk\": {}, \"dv\": {}, "
        "\"{}\": {}, \"{}\": {}, \"{}\": {}}}",
        json.size() > 1 ? ", " : "", n, c.batch, c.heads, c.dk, c.dv, names[0], rec[0], names[1],
        rec[1], names[2], rec[2]);
    if (!c.json) {
      if (progress.on_terminal()) std::fprintf(stderr, "\r\033[K");
      fmt::print(
          "{:>7} {:>17.0f} {:>8.2f} {:>9.1f} {:>17.0f} {:>9.1f} {:>12.3f} {:>9.1f} {:>8.1f}\n", n,
          json_number(rec[0], "tokens_per_s"), json_number(rec[0], "gflops"),
          json_number(rec[0], "peak_mib"), json_number(rec[1], "tokens_per_s"),
          json_number(rec[1], "peak_mib"), json_number(rec[2], "seconds") * 1e6,
          json_number(rec[2], "peak_mib"), json_number(rec[0], "io_mib"));
      std::fflush(stdout);
    }
  }
  progress.finish();
  if (c.json) fmt::print("{}]\n", json);
  return 0;
}

struct SgemmConfig {
  int64_t size = 1024;
  double min_time = 0.5;
  int64_t rounds = 3;
  std::string backend = "all";
  std::string openblas_cores = "auto";
  bool json = false;
};

int run_bench_sgemm(const SgemmConfig& c, const OptionTable& table) {
  if (c.size < 1 || c.size > 16384) throw Error("bench sgemm: --size must be in [1, 16384]");
  if (!(c.min_time > 0 && c.min_time <= 60))
    throw Error("bench sgemm: --min-time must be in (0, 60] seconds");
  if (c.rounds < 1 || c.rounds > 100) throw Error("bench sgemm: --rounds must be in [1, 100]");
  if (c.backend != "all" && c.backend != "onednn" && c.backend != "openblas")
    throw Error("bench sgemm: --backend must be all, onednn or openblas, not '" + c.backend + "'");
  const nlohmann::json record = {
      {"size", c.size}, {"threads", omp_get_max_threads()}, {"sgemm", ops::gemm_backend_name()}};
  if (c.backend != "all") {
    // One backend, in this process (as each setting of `all` runs it).
    const auto b = c.backend == "onednn" ? ops::GemmBackend::kOneDnn : ops::GemmBackend::kOpenBlas;
    GemmSetting s{"LOGATTN_GEMM=" + c.backend, {}, b, ops::gemm_backend_name(b), {}};
    for (int64_t r = 0; r < c.rounds; ++r) s.rates.push_back(sgemm_gflops(b, c.size, c.min_time));
    if (!c.json)
      fmt::print("logattn bench sgemm: {0}x{0}x{0}\nconfig: {1} {2}\n", c.size, table.describe(),
                 machine_config());
    report_settings({s}, "gflops", "GFLOP/s", c.rounds, c.json, record);
    return 0;
  }
  std::vector<std::string> cores;
  if (c.openblas_cores == "auto") {
    cores = openblas_cores_for_this_cpu();
  } else if (c.openblas_cores != "none") {
    for (size_t p = 0; p <= c.openblas_cores.size();) {
      const size_t q = std::min(c.openblas_cores.find(',', p), c.openblas_cores.size());
      if (q > p) cores.push_back(c.openblas_cores.substr(p, q - p));
      p = q + 1;
    }
  }
  if (!c.json)
    fmt::print("logattn bench sgemm: {0}x{0}x{0}, {1} alternating rounds\nconfig: {2} {3}\n",
               c.size, c.rounds, table.describe(), machine_config());
  std::fflush(stdout);
  auto settings = gemm_settings(cores);
  measure_settings(
      settings, c.rounds,
      [&](const GemmSetting& s) {
        return std::vector<std::string>{
            "bench",      "sgemm",
            "--backend",  s.backend == ops::GemmBackend::kOneDnn ? "onednn" : "openblas",
            "--rounds",   "1",
            "--size",     std::to_string(c.size),
            "--min-time", fmt::format("{}", c.min_time),
            "--json"};
      },
      [](const nlohmann::json& j) {
        const auto& r = j.at("results").at(0);
        return std::pair{r.at("kernel").get<std::string>(), r.at("gflops").get<double>()};
      });
  report_settings(settings, "gflops", "GFLOP/s", c.rounds, c.json, record);
  return 0;
}

}  // namespace

double sgemm_gflops(ops::GemmBackend backend, int64_t n, double min_time) {
  const auto a = random_tensor(n * n, 1), b = random_tensor(n * n, 2);
  std::vector<float> out(n * n);
  const double sec = seconds_per_call(min_time, [&] {
    ops::gemm_with(backend, false, false, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, out.data(),
                   n);
  });
  return 2.0 * n * n * n / sec / 1e9;
}

Runner add_bench_attention_command(CLI::App& bench) {
  auto* cmd =
      bench.add_subcommand("attention",
                           "Causal forward, forward+backward and one-token step: tokens/s, GFLOP/s "
                           "(4 n dk dv per head) and peak memory");
  auto cfg = std::make_shared<AttentionBenchConfig>();
  auto table = std::make_shared<OptionTable>();
  table->add("--n", &cfg->n, "sequence lengths (comma-separated)")
      .add("--batch", &cfg->batch, "batch size")
      .add("--heads", &cfg->heads, "heads")
      .add("--dk", &cfg->dk, "key / query features per head")
      .add("--dv", &cfg->dv, "value features per head")
      .add("--chunk", &cfg->chunk, "tokens per chunk of the parallel path")
      .add("--log-values", &cfg->log_values, "use the log-value interface")
      .add("--min-time", &cfg->min_time, "seconds to repeat each measurement for")
      .add("--json", &cfg->json, "print JSON");
  table->attach(cmd);
  cmd->get_option("--n")->delimiter(',');
  return [cfg, table, cmd] { return cmd->parsed() ? run_bench_attention(*cfg, *table) : -1; };
}

Runner add_bench_sgemm_command(CLI::App& bench) {
  auto* cmd = bench.add_subcommand(
      "sgemm",
      "Matrix-product rate of each backend and OpenBLAS kernel on this machine, side by side");
  auto cfg = std::make_shared<SgemmConfig>();
  auto table = std::make_shared<OptionTable>();
  table->add("--size", &cfg->size, "matrix size")
      .add("--min-time", &cfg->min_time, "seconds to repeat each measurement for")
      .add("--rounds", &cfg->rounds, "alternating rounds (each setting once per round)")
      .add("--backend", &cfg->backend, "all, onednn or openblas")
      .add("--openblas-cores", &cfg->openblas_cores,
           "OpenBLAS kernels to try through OPENBLAS_CORETYPE (comma-separated), auto (those "
           "this CPU runs) or none")
      .add("--json", &cfg->json, "print JSON");
  table->attach(cmd);
  return [cfg, table, cmd] { return cmd->parsed() ? run_bench_sgemm(*cfg, *table) : -1; };
}

}  // namespace logattn::cli
