// `logattn bench train`: seconds per training step (forward, backward, AdamW), tokens/s
// and peak memory of a model configuration, measured in a child process.
#include <fmt/format.h>

#include <random>

#include "cli/bench_util.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "logattn/error.h"
#include "model/model.h"
#include "train/adamw.h"
#include "util/memory.h"

namespace logattn::cli {

namespace {

struct TrainBenchConfig {
  std::string preset = "small";
  int64_t batch = 16;
  int64_t context = 128;
  int64_t steps = 5;
  bool json = false;
};

std::string measure_train(const TrainBenchConfig& c) {
  model::ModelConfig mc = model::ModelConfig::preset(c.preset);
  model::Model m(mc);
  m.init(0);
  train::AdamW opt(m.layout(), train::AdamWConfig{});
  const int64_t B = c.batch, T = c.context;
  std::mt19937_64 rng(1);
  std::vector<int32_t> x(B * T), y(B * T);
  for (auto& t : x) t = static_cast<int32_t>(rng() % mc.vocab);
  for (auto& t : y) t = static_cast<int32_t>(rng() % mc.vocab);
  auto step = [&] {
    m.zero_grads();
    m.forward(x.data(), y.data(), B, T, true);
    train::clip_grad_norm(m.grads(), 1.0);
    opt.update(m.weights().data(), m.grads().data(), 1e-4);
  };
  step();  // warm-up (allocations)
  const auto t0 = Clock::now();
  for (int64_t i = 0; i < c.steps; ++i) step();
  const double sec = std::chrono::duration<double>(Clock::now() - t0).count() / c.steps;
  return fmt::format(
      "{{\"preset\": \"{}\", \"parameters\": {}, \"batch\": {}, \"context\": {}, "
      "\"seconds_per_step\": "
      "{:.6g}, \"tokens_per_s\": {:.6g}, \"peak_mib\": {:.1f}}}",
      c.preset, mc.parameter_count(), B, T, sec, B * T / sec,
      util::peak_resident_bytes() / 1048576.0);
}

int run_bench_train(const TrainBenchConfig& c, const OptionTable& table) {
  if (c.batch < 1 || c.context < 1 || c.steps < 1)
    throw Error("bench train: --batch, --context and --steps must be at least 1");
  if (!c.json) fmt::print("logattn bench train\nconfig: {}\n", table.describe());
  std::fflush(stdout);
  const std::string r = in_child([&] { return measure_train(c); });
  if (c.json) {
    fmt::print("{}\n", r);
  } else {
    fmt::print("{}\n", r);
  }
  return 0;
}

}  // namespace

Runner add_bench_train_command(CLI::App& bench) {
  auto* cmd =
      bench.add_subcommand("train", "Training step time, tokens/s and peak memory of a preset");
  auto cfg = std::make_shared<TrainBenchConfig>();
  auto table = std::make_shared<OptionTable>();
  table->add("--preset", &cfg->preset, "model preset: small, paper or tiny")
      .add("--batch", &cfg->batch, "sequences per step")
      .add("--context", &cfg->context, "tokens per sequence")
      .add("--steps", &cfg->steps, "steps to time (after one warm-up step)")
      .add("--json", &cfg->json, "print JSON");
  table->attach(cmd);
  return [cfg, table, cmd] { return cmd->parsed() ? run_bench_train(*cfg, *table) : -1; };
}

}  // namespace logattn::cli
