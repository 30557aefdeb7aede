// `logattn tokenize`: text (a file or a folder) to the uint16 .bin files that training reads
// (train.bin, val.bin: the first 90% and the rest), in parallel, with a progress bar; or the
// ids of one string (--text), or the text of ids (--decode).
#include <fmt/format.h>
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <sstream>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/progress.h"
#include "logattn/error.h"
#include "tokenizer/tokenizer.h"
#include "train/corpus.h"
#include "train/data.h"

namespace logattn::cli {

namespace {

struct TokenizeConfig {
  std::string data;
  std::string out;
  std::string tokenizer = "gpt2";
  std::string gpt2_dir;
  int64_t threads = 0;
  std::string text;
  std::string decode;
};

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) {
    size_t used = 0;
    int64_t v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || v < 0 || v > INT32_MAX)
      throw Error("tokenize: --decode takes comma-separated ids; '" + item + "' is not one");
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

int run_tokenize(const TokenizeConfig& c, const OptionTable& table) {
  const int modes = !c.data.empty() + !c.text.empty() + !c.decode.empty();
  if (modes != 1) throw Error("tokenize: give exactly one of --data, --text and --decode");
  if (c.threads < 0 || c.threads > 1024)
    throw Error("tokenize: --threads must be in [0, 1024] (0: all cores), got " +
                std::to_string(c.threads));
  const auto tok = tokenizer::load_tokenizer(c.tokenizer, c.gpt2_dir);
  if (!c.text.empty()) {
    fmt::print("[{}]\n", fmt::join(tok->encode(c.text), ", "));
    return 0;
  }
  if (!c.decode.empty()) {
    const std::string s = tok->decode(parse_ids(c.decode));
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fputc('\n', stdout);
    return 0;
  }
  if (c.out.empty()) throw Error("tokenize: --out (a folder) is required with --data");
  fmt::print("logattn tokenize\nconfig: {}\n", table.describe() + " " + machine_config());
  std::fflush(stdout);
  train::TokenizeOptions opt;
  opt.threads = static_cast<int>(c.threads);
  const auto t0 = std::chrono::steady_clock::now();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  std::unique_ptr<Progress> bar;
  opt.progress = [&](int64_t done, int64_t total) {
    if (!bar) bar = std::make_unique<Progress>("tokenize", total);
    bar->update(done, fmt::format("{:.1f} MB/s", done / 1e6 / std::max(1e-9, seconds())));
  };
  const auto r = train::prepare_tokens(c.data, c.out, *tok, opt);
  if (bar) bar->finish();
  const double sec = seconds();
  const int64_t n = r.train_tokens + r.val_tokens;
  if (r.reused) {
    fmt::print("{} and {} are up to date ({} + {} tokens)\n", r.train, r.val, r.train_tokens,
               r.val_tokens);
  } else {
    fmt::print(
        "{} bytes -> {} tokens ({:.2f} bytes/token) in {:.2f} s ({:.1f} MB/s, {} threads)\n"
        "wrote {} ({} tokens) and {} ({} tokens)\n",
        r.bytes, n, static_cast<double>(r.bytes) / std::max<int64_t>(1, n), sec,
        r.bytes / 1e6 / std::max(1e-9, sec), c.threads > 0 ? c.threads : omp_get_max_threads(),
        r.train, r.train_tokens, r.val, r.val_tokens);
  }
  return 0;
}

}  // namespace

Runner add_tokenize_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "tokenize", "Tokenise text into train.bin / val.bin (uint16 ids), or show ids of a text");
  auto cfg = std::make_shared<TokenizeConfig>();
  auto table = std::make_shared<OptionTable>();
  table->add("--data", &cfg->data, "text file or folder of text files")
      .add("--out", &cfg->out, "folder for train.bin, val.bin and source.json")
      .add("--tokenizer", &cfg->tokenizer, "gpt2 (GPT-2's BPE, 50257 ids) or bytes")
      .add("--gpt2-dir", &cfg->gpt2_dir, "folder of GPT-2's encoder.json and vocab.bpe")
      .add("--threads", &cfg->threads, "threads (0: all cores)")
      .add("--text", &cfg->text, "print the ids of this text instead")
      .add("--decode", &cfg->decode, "print the text of these comma-separated ids instead");
  table->attach(cmd);
  return [cfg, table, cmd] { return cmd->parsed() ? run_tokenize(*cfg, *table) : -1; };
}

}  // namespace logattn::cli
