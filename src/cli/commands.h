// The logattn subcommands. Each registers its options (one OptionTable per command) and
// returns the function that runs it.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

namespace logattn::cli {

using Runner = std::function<int()>;

// What runs the products on this machine, for every `config:` line after the options:
// "sgemm=oneDNN 2.6.3 avx2 exp=avx2 threads=2", so that a slow machine is seen, not guessed.
std::string machine_config();

// `logattn --version`: the version, the commit built from, and the libraries built with.
std::string version_text(const std::string& version, const std::string& commit);

// A line with the rate of this machine's matrix products, measured in about 0.1 s (a
// 512^3 product), for the first lines of a training run: a slow machine is seen at once.
std::string matrix_product_rate();

Runner add_stream_command(CLI::App& app);
Runner add_train_command(CLI::App& app);
Runner add_eval_command(CLI::App& app);
Runner add_demo_command(CLI::App& app);
Runner add_generate_command(CLI::App& app);
Runner add_tokenize_command(CLI::App& app);
Runner add_quantize_command(CLI::App& app);
Runner add_serve_command(CLI::App& app);
Runner add_bench_attention_command(CLI::App& bench);
Runner add_bench_sgemm_command(CLI::App& bench);
Runner add_bench_train_command(CLI::App& bench);
Runner add_bench_generate_command(CLI::App& bench);
Runner add_bench_tokenize_command(CLI::App& bench);
Runner add_bench_allreduce_command(CLI::App& bench);

}  // namespace logattn::cli
