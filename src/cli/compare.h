// Side-by-side measurements of one benchmark under each matrix-product setting a user could
// choose (oneDNN, OpenBLAS as it chooses, OpenBLAS with each kernel this CPU runs), each
// in its own process, in alternating rounds: `bench sgemm` and `bench train --compare`.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "ops/matmul.h"

namespace logattn::cli {

struct GemmSetting {
  std::string label;  // what a user sets to get it: "LOGATTN_GEMM=openblas OPENBLAS_CORETYPE=..."
  std::vector<std::pair<std::string, std::string>> env;
  ops::GemmBackend backend;
  std::string kernel;         // as the measuring process names it
  std::vector<double> rates;  // one per round
};

// oneDNN, OpenBLAS as it chooses, then OpenBLAS with each of `cores`.
std::vector<GemmSetting> gemm_settings(const std::vector<std::string>& cores);

// Runs this executable with args_of(setting) (a bench command that prints one JSON record)
// under each setting's environment, `rounds` times in alternation; read(record) gives the
// kernel's name and the rate.
void measure_settings(
    std::vector<GemmSetting>& settings, int64_t rounds,
    const std::function<std::vector<std::string>(const GemmSetting&)>& args_of,
    const std::function<std::pair<std::string, double>(const nlohmann::json&)>& read);

// Medians per setting and their share of the best, as JSON (record plus "results", each with
// the median under `key`, and "default_of_best": the share of this process's setting) or as
// a table (the rate column headed `unit`) whose last line gives that share.
void report_settings(const std::vector<GemmSetting>& settings, const std::string& key,
                     const std::string& unit, int64_t rounds, bool json,
                     nlohmann::json record = nlohmann::json::object());

}  // namespace logattn::cli
