// `logattn stream`: one token at a time through the constant-size state, reporting time and
// resident memory per token as the context grows (the paper's constant cost per token).
#include <fmt/format.h>

#include <chrono>
#include <random>
#include <vector>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/progress.h"
#include "logattn/attention.h"
#include "util/memory.h"

namespace logattn::cli {

namespace {

struct StreamConfig {
  int64_t tokens = 65536;
  int64_t heads = 8;
  int64_t dk = 32;
  int64_t dv = 32;
  bool log_values = false;
  uint64_t seed = 0;
  bool json = false;
};

int run_stream(const StreamConfig& cfg, const OptionTable& table) {
  if (cfg.tokens < 1 || cfg.heads < 1 || cfg.dk < 1 || cfg.dv < 1)
    throw Error("stream: --tokens, --heads, --dk and --dv must be at least 1");
  const Values values = cfg.log_values ? Values::kLog : Values::kSigned;
  AttentionState state(1, cfg.heads, cfg.dk, cfg.dv, values);
  // A pool of random tokens, cycled, so that the timing is of the attention step alone.
  const int64_t pool = 4096, H = cfg.heads;
  std::mt19937_64 rng(cfg.seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> q(pool * H * cfg.dk), k(pool * H * cfg.dk), v(pool * H * cfg.dv);
  for (auto* x : {&q, &k, &v})
    for (auto& e : *x) e = normal(rng);
  std::vector<float> y(H * cfg.dv);

  if (!cfg.json) {
    fmt::print("logattn stream: {} tokens through the one-token path\nconfig: {}\n", cfg.tokens,
               table.describe() + " " + machine_config());
    fmt::print("state: {} heads x {} floats = {:.1f} KiB, whatever the context length\n", H,
               state.floats_per_head(), state.data().size() * 4 / 1024.0);
    fmt::print("{:>10} {:>11} {:>11} {:>9}\n", "context", "us/token", "tokens/s", "RSS MiB");
  }
  struct Row {
    int64_t context;
    double us_per_token;
    double rss_mib;
  };
  std::vector<Row> rows;
  Progress progress("stream", cfg.tokens);
  int64_t next_report = std::min<int64_t>(1024, cfg.tokens), window_start = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t t = 0; t < cfg.tokens; ++t) {
    const int64_t i = t % pool;
    attention_step({q.data() + i * H * cfg.dk, size_t(H * cfg.dk)},
                   {k.data() + i * H * cfg.dk, size_t(H * cfg.dk)},
                   {v.data() + i * H * cfg.dv, size_t(H * cfg.dv)}, y, state);
    if (t + 1 == next_report) {
      const auto t1 = std::chrono::steady_clock::now();
      const double us = std::chrono::duration<double, std::micro>(t1 - t0).count() /
                        static_cast<double>(t + 1 - window_start);
      rows.push_back({t + 1, us, util::resident_bytes() / 1048576.0});
      if (!cfg.json) {
        if (progress.on_terminal()) std::fprintf(stderr, "\r\033[K");
        fmt::print("{:>10} {:>11.3f} {:>11.0f} {:>9.1f}\n", t + 1, us, 1e6 / us,
                   rows.back().rss_mib);
        std::fflush(stdout);
      }
      next_report = std::min(next_report * 2, cfg.tokens);
      if (next_report == t + 1) next_report = cfg.tokens + 1;
      window_start = t + 1;
      t0 = std::chrono::steady_clock::now();
    }
    if ((t & 1023) == 0) progress.update(t + 1, fmt::format("{} tokens", t + 1));
  }
  progress.finish();
  if (cfg.json) {
    fmt::print("[");
    for (size_t i = 0; i < rows.size(); ++i)
      fmt::print("{}{{\"context\": {}, \"us_per_token\": {:.4f}, \"rss_mib\": {:.2f}}}",
                 i ? ", " : "", rows[i].context, rows[i].us_per_token, rows[i].rss_mib);
    fmt::print("]\n");
  } else if (rows.size() >= 2) {
    fmt::print(
        "time per token at {} vs {} tokens of context: {:.2f}x; resident memory {:+.1f} "
        "MiB\n",
        rows.back().context, rows.front().context,
        rows.back().us_per_token / rows.front().us_per_token,
        rows.back().rss_mib - rows.front().rss_mib);
  }
  return 0;
}

}  // namespace

Runner add_stream_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "stream",
      "Stream tokens one at a time through the attention state; print time and memory "
      "per token as the context grows");
  auto cfg = std::make_shared<StreamConfig>();
  auto table = std::make_shared<OptionTable>();
  table->add("--tokens", &cfg->tokens, "tokens to stream")
      .add("--heads", &cfg->heads, "attention heads")
      .add("--dk", &cfg->dk, "key / query features per head")
      .add("--dv", &cfg->dv, "value features per head")
      .add("--log-values", &cfg->log_values, "use the log-value interface")
      .add("--seed", &cfg->seed, "random seed of the token data")
      .add("--json", &cfg->json, "print the table as JSON");
  table->attach(cmd);
  return [cfg, table, cmd] { return cmd->parsed() ? run_stream(*cfg, *table) : -1; };
}

}  // namespace logattn::cli
