// `logattn bench tokenize`: tokenisation throughput (MB of text and tokens per second) of a
// file, for each thread count; every repeat starts with fresh encoders (cold piece caches).
#include <fmt/format.h>

#include <algorithm>

#include "cli/bench_util.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "io/files.h"
#include "logattn/error.h"
#include "tokenizer/tokenizer.h"
#include "train/corpus.h"

namespace logattn::cli {

namespace {

struct TokenizeBenchConfig {
  std::string data;
  std::string tokenizer = "gpt2";
  std::string gpt2_dir;
  std::vector<int64_t> threads = {1, 2};
  int64_t repeat = 5;
  int64_t block_kib = 64;
  bool json = false;
};

int run_bench_tokenize(const TokenizeBenchConfig& c, const OptionTable& table) {
  if (c.data.empty()) throw Error("bench tokenize: --data (a text file) is required");
  if (c.repeat < 1 || c.block_kib < 1)
    throw Error("bench tokenize: --repeat and --block-kib must be at least 1");
  for (const int64_t t : c.threads)
    if (t < 1 || t > 1024) throw Error("bench tokenize: every --threads must be in [1, 1024]");
  const auto tok = tokenizer::load_tokenizer(c.tokenizer, c.gpt2_dir);
  const io::MappedFile file(c.data);
  const std::string_view text = file.bytes();
  if (text.empty()) throw Error("bench tokenize: " + c.data + " is empty");
  if (!c.json)
    fmt::print("logattn bench tokenize\nconfig: {}\n", table.describe() + " " + machine_config());
  for (const int64_t threads : c.threads) {
    std::vector<double> secs;
    size_t n = 0;
    for (int64_t r = 0; r <= c.repeat; ++r) {  // the first is a warm-up
      train::ParallelEncoder enc(*tok, static_cast<int>(threads));
      const auto t0 = Clock::now();
      n = enc.encode_all(text, static_cast<size_t>(c.block_kib) << 10).size();
      if (r > 0) secs.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    }
    std::sort(secs.begin(), secs.end());
    const double med = secs[secs.size() / 2];
    const std::string rec = fmt::format(
        "{{\"tokenizer\": \"{}\", \"threads\": {}, \"bytes\": {}, \"tokens\": {}, "
        "\"seconds\": {:.6g}, \"mb_per_s\": {:.4g}, \"tokens_per_s\": {:.6g}}}",
        tok->name(), threads, text.size(), n, med, text.size() / 1e6 / med, n / med);
    if (c.json)
      fmt::print("{}\n", rec);
    else
      fmt::print("{} threads: {:.2f} MB/s, {:.0f} tokens/s ({} tokens, median of {})\n", threads,
                 text.size() / 1e6 / med, n / med, n, c.repeat);
  }
  return 0;
}

}  // namespace

Runner add_bench_tokenize_command(CLI::App& bench) {
  auto* cmd = bench.add_subcommand("tokenize", "Tokenisation throughput of a text file");
  auto cfg = std::make_shared<TokenizeBenchConfig>();
  auto table = std::make_shared<OptionTable>();
  table->add("--data", &cfg->data, "text file")
      .add("--tokenizer", &cfg->tokenizer, "gpt2 or bytes")
      .add("--gpt2-dir", &cfg->gpt2_dir, "folder of GPT-2's encoder.json and vocab.bpe")
      .add("--threads", &cfg->threads, "thread counts to measure")
      .add("--repeat", &cfg->repeat, "timed passes per thread count (after one warm-up)")
      .add("--block-kib", &cfg->block_kib, "text per parallel work item, KiB")
      .add("--json", &cfg->json, "print JSON lines");
  table->attach(cmd);
  return [cfg, table, cmd] { return cmd->parsed() ? run_bench_tokenize(*cfg, *table) : -1; };
}

}  // namespace logattn::cli
